"""Checks of one config object at a time, run as soon as the object is built.

Each check looks only at its own object (a listener's address, a route having exactly
one action, a regex compiling) and yields a :class:`ConfigError` per problem, at the
path of the offending key.  Checks that need the whole config (does this cluster
exist?) are in :mod:`mosnpy.config.validate`.

Names of protocols, load balancers, cluster types and filters are *not* checked here:
they are checked by the runtime against its registries, which plugins extend.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping

from mosnpy.config.engine import Check
from mosnpy.config.errors import ConfigError, join_path
from mosnpy.config.models import (
    AdminConfig,
    CidrRangeConfig,
    CircuitBreakerConfig,
    ClusterConfig,
    DirectResponseConfig,
    FilterChainMatchConfig,
    HeaderMatcherConfig,
    HostConfig,
    ListenerConfig,
    RedirectConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    ServerConfig,
    WeightedClusterConfig,
    cidr_network,
)
from mosnpy.config.wire import SocketAddress

__all__ = ["CHECKS", "split_host_port"]

TCP_NETWORKS = ("tcp", "tcp4", "tcp6")
LOG_LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")
REDIRECT_CODES = (301, 302, 303, 307, 308)
#: ``filter_chain_match.transport_protocol`` values (Envoy's TLS inspector's names)
TRANSPORT_PROTOCOLS = ("tls", "raw_buffer")


def split_host_port(address: str, *, min_port: int = 0) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) split; ValueError with a readable message."""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected '[ipv6]:port', got {address!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise ValueError(f"expected 'host:port', got {address!r}")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets, as in '[::1]:80', got {address!r}")
    if any(c.isspace() for c in host):
        raise ValueError(f"host must not contain spaces, got {address!r}")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"port must be a number, got {port_text!r} in {address!r}")
    port = int(port_text)
    if not min_port <= port <= 65535:
        raise ValueError(f"port must be {min_port}..65535, got {port}")
    return host, port


def _address(address: str, path: str, *, min_port: int = 0) -> Iterator[ConfigError]:
    try:
        split_host_port(address, min_port=min_port)
    except ValueError as e:
        yield ConfigError(path, str(e))


def _regex(pattern: str, path: str) -> Iterator[ConfigError]:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        yield ConfigError(path, f"invalid regex {pattern!r}: {e}")


def _at_least(obj: object, path: str, minimum: int, *names: str) -> Iterator[ConfigError]:
    for name in names:
        value = getattr(obj, name)
        if value < minimum:
            yield ConfigError(join_path(path, name), f"must be >= {minimum}, got {value}")


def check_listener(obj: ListenerConfig, path: str) -> Iterator[ConfigError]:
    # ``type`` is free, as in MOSN: anything but 'ingress'/'egress' is a notice (notices.py).
    if obj.network == "unix":
        if not obj.address:
            yield ConfigError(join_path(path, "address"), "a unix listener needs a socket path")
    elif obj.network in TCP_NETWORKS:
        yield from _address(obj.address, join_path(path, "address"))
    else:
        supported = ", ".join((*TCP_NETWORKS, "unix"))
        yield ConfigError(
            join_path(path, "network"), f"network {obj.network!r} is not supported (supported: {supported})"
        )
    yield from _at_least(obj, path, 0, "max_connections")
    yield from _overlapping_chains(obj, path)


def _overlapping_chains(obj: ListenerConfig, path: str) -> Iterator[ConfigError]:
    """Once a chain has a ``filter_chain_match``, no two chains may match the same
    connection equally well (Envoy refuses such a listener too): the choice would be
    arbitrary.  Without any match the chains are one chain, as in MOSN."""
    if not any(chain.filter_chain_match is not None for chain in obj.filter_chains):
        return
    seen: list[set[tuple[object, ...]]] = []
    for i, chain in enumerate(obj.filter_chains):
        try:
            keys = _match_keys(chain.filter_chain_match or FilterChainMatchConfig())
        except ValueError:  # a bad range: reported by check_filter_chain_match
            keys = set()
        for j, earlier in enumerate(seen):
            if keys & earlier:
                where = join_path(path, "filter_chains", i)
                if chain.filter_chain_match is not None:
                    where = join_path(where, "filter_chain_match")
                yield ConfigError(
                    where,
                    f"matches the same connections as filter_chains[{j}] "
                    "(give each chain a filter_chain_match of its own)",
                )
                break
        seen.append(keys)


def _match_keys(match: FilterChainMatchConfig) -> set[tuple[object, ...]]:
    """Every combination of single criteria ``match`` accepts: two chains overlap when
    they share one."""

    def each(values: Iterable[object]) -> list[object]:
        return list(set(values)) or [None]  # an empty criterion: one "any" value

    return set(
        itertools.product(
            (match.destination_port,),
            each(cidr_network(r) for r in match.prefix_ranges),
            each(name.lower() for name in match.server_names),
            (match.transport_protocol,),
            each(match.application_protocols),
            each(cidr_network(r) for r in match.source_prefix_ranges),
            each(match.source_ports),
        )
    )


def _port(value: int, path: str) -> Iterator[ConfigError]:
    if not 1 <= value <= 65535:
        yield ConfigError(path, f"port must be 1..65535, got {value}")


def _ranges(ranges: tuple[str | CidrRangeConfig, ...], path: str) -> Iterator[ConfigError]:
    for i, value in enumerate(ranges):
        if isinstance(value, str):
            try:
                cidr_network(value)
            except ValueError as e:
                yield ConfigError(join_path(path, i), f"not an IP network like '10.0.0.0/8': {e}")


def check_cidr_range(obj: CidrRangeConfig, path: str) -> Iterator[ConfigError]:
    try:
        cidr_network(obj)
    except ValueError as e:
        yield ConfigError(path, f"not an IP network: {e}")


def check_filter_chain_match(obj: FilterChainMatchConfig, path: str) -> Iterator[ConfigError]:
    """Ports in range, ``tls`` / ``raw_buffer``, names exact or ``*.suffix``, CIDRs."""
    if obj.destination_port is not None:
        yield from _port(obj.destination_port, join_path(path, "destination_port"))
    for i, port in enumerate(obj.source_ports):
        yield from _port(port, join_path(path, "source_ports", i))
    if obj.transport_protocol and obj.transport_protocol not in TRANSPORT_PROTOCOLS:
        yield ConfigError(
            join_path(path, "transport_protocol"),
            f"expected one of {', '.join(map(repr, TRANSPORT_PROTOCOLS))}, got {obj.transport_protocol!r}",
        )
    for i, name in enumerate(obj.server_names):
        wild = name.startswith("*.")
        if not name or "*" in (name[2:] if wild else name) or (wild and len(name) == 2):
            yield ConfigError(
                join_path(path, "server_names", i),
                f"expected a host name or a wildcard like '*.example.com', got {name!r}",
            )
    for i, proto in enumerate(obj.application_protocols):
        if not proto:
            yield ConfigError(join_path(path, "application_protocols", i), "must not be empty")
    yield from _ranges(obj.prefix_ranges, join_path(path, "prefix_ranges"))
    yield from _ranges(obj.source_prefix_ranges, join_path(path, "source_prefix_ranges"))


def check_server(obj: ServerConfig, path: str) -> Iterator[ConfigError]:
    if obj.default_log_level.upper() not in LOG_LEVELS:
        yield ConfigError(
            join_path(path, "default_log_level"),
            f"unknown log level {obj.default_log_level!r} (known: {', '.join(LOG_LEVELS)})",
        )


def check_admin(obj: AdminConfig, path: str) -> Iterator[ConfigError]:
    yield from _address(obj.address, join_path(path, "address"))


def check_socket_address(obj: SocketAddress, path: str) -> Iterator[ConfigError]:
    if not 0 <= obj.port_value <= 65535:
        yield ConfigError(join_path(path, "port_value"), f"port must be 0..65535, got {obj.port_value}")


def check_router(obj: RouterConfig, path: str) -> Iterator[ConfigError]:
    if not obj.router_config_name:
        yield ConfigError(join_path(path, "router_config_name"), "must not be empty")


def check_route(obj: RouteConfig, path: str) -> Iterator[ConfigError]:
    """Exactly one of ``route`` / ``direct_response`` / ``redirect``."""
    given = [k for k in ("route", "direct_response", "redirect") if getattr(obj, k) is not None]
    if len(given) != 1:
        found = ", ".join(repr(k) for k in given) or "none"
        yield ConfigError(
            path, f"needs exactly one of 'route', 'direct_response', 'redirect' (found: {found})"
        )


def check_match(obj: RouteMatchConfig, path: str) -> Iterator[ConfigError]:
    """At most one of ``prefix`` / ``path`` / ``regex``; an empty string counts as unset.

    None of them is allowed: the route then matches on ``headers`` alone (MOSN's RPC
    routes, e.g. ``{"name": "service", "value": ".*"}``), or matches every request when
    there are no headers either.
    """
    given = [k for k in ("prefix", "path", "regex") if getattr(obj, k)]
    if len(given) > 1:
        yield ConfigError(path, f"give at most one of 'prefix', 'path', 'regex' (found: {', '.join(given)})")
    if obj.regex:
        yield from _regex(obj.regex, join_path(path, "regex"))


def check_header_matcher(obj: HeaderMatcherConfig, path: str) -> Iterator[ConfigError]:
    if not obj.name:
        yield ConfigError(join_path(path, "name"), "must not be empty")
    if obj.regex:
        yield from _regex(obj.value, join_path(path, "value"))


def check_route_action(obj: RouteActionConfig, path: str) -> Iterator[ConfigError]:
    """A target is needed; with both, ``weighted_clusters`` wins, as in MOSN."""
    if not obj.cluster_name and not obj.weighted_clusters:
        yield ConfigError(path, "needs 'cluster_name' or 'weighted_clusters'")


def check_weighted_cluster(obj: WeightedClusterConfig, path: str) -> Iterator[ConfigError]:
    if not obj.name:
        yield ConfigError(join_path(path, "name"), "must not be empty")
    yield from _at_least(obj, path, 1, "weight")


def check_retry_policy(obj: RetryPolicyConfig, path: str) -> Iterator[ConfigError]:
    yield from _at_least(obj, path, 0, "num_retries")
    for i, code in enumerate(obj.status_codes):
        if not 100 <= code <= 599:
            yield ConfigError(join_path(path, "status_codes", i), f"not an HTTP status: {code}")


def check_direct_response(obj: DirectResponseConfig, path: str) -> Iterator[ConfigError]:
    if not 100 <= obj.status <= 599:
        yield ConfigError(join_path(path, "status"), f"not an HTTP status: {obj.status}")


def check_redirect(obj: RedirectConfig, path: str) -> Iterator[ConfigError]:
    if obj.response_code not in REDIRECT_CODES:
        codes = ", ".join(map(str, REDIRECT_CODES))
        yield ConfigError(
            join_path(path, "response_code"), f"expected one of {codes}, got {obj.response_code}"
        )


def check_cluster(obj: ClusterConfig, path: str) -> Iterator[ConfigError]:
    if not obj.name:
        yield ConfigError(join_path(path, "name"), "must not be empty")
    yield from _at_least(obj, path, 0, "max_request_per_conn")


def check_host(obj: HostConfig, path: str) -> Iterator[ConfigError]:
    yield from _address(obj.address, join_path(path, "address"), min_port=1)
    yield from _at_least(obj, path, 1, "weight")


def check_circuit_breaker(obj: CircuitBreakerConfig, path: str) -> Iterator[ConfigError]:
    yield from _at_least(
        obj, path, 0, "max_connections", "max_pending_requests", "max_requests", "max_retries"
    )


CHECKS: Mapping[type, Check] = {
    AdminConfig: check_admin,
    CidrRangeConfig: check_cidr_range,
    CircuitBreakerConfig: check_circuit_breaker,
    ClusterConfig: check_cluster,
    DirectResponseConfig: check_direct_response,
    FilterChainMatchConfig: check_filter_chain_match,
    HeaderMatcherConfig: check_header_matcher,
    HostConfig: check_host,
    ListenerConfig: check_listener,
    RedirectConfig: check_redirect,
    RetryPolicyConfig: check_retry_policy,
    RouteActionConfig: check_route_action,
    RouteConfig: check_route,
    RouteMatchConfig: check_match,
    RouterConfig: check_router,
    ServerConfig: check_server,
    SocketAddress: check_socket_address,
    WeightedClusterConfig: check_weighted_cluster,
}
