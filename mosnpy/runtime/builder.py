"""Config → listeners: look every name up in its registry, with the key's path on error.

The loader has already checked the document's shape; here names meet registries
(protocols, network and stream filters, load balancers), so an unknown name is reported
as ``servers[0].listeners[0].stream_filters[1].type: unknown stream filter 'falut'
(known: fault, header_mutation)``.

A listener's filter chains: without any ``filter_chain_match`` they make one chain
(every chain's network filters, the first TLS-enabled chain's ``tls_context``), as in
MOSN; once a chain has a ``filter_chain_match`` each stays a chain of its own — its own
filters and TLS, chosen per connection (:mod:`mosnpy.net.filterchain`).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from mosnpy.config.errors import ConfigError
from mosnpy.config.models import FilterChainConfig, ListenerConfig, MosnConfig, RouterConfig
from mosnpy.net.filter import NetworkFilterFactory
from mosnpy.net.filterchain import FilterChain, FilterChainMatch, FilterChains
from mosnpy.net.listener import Listener
from mosnpy.net.registry import LISTENER_FILTERS, NETWORK_FILTERS
from mosnpy.net.tls import server_context
from mosnpy.proxy.accesslog import AccessLog, FormatError
from mosnpy.proxy.factory import ProxyFilterFactory
from mosnpy.registry import Registry, UnknownNameError
from mosnpy.router import Routers, RouteTable
from mosnpy.stream.filter import StreamFilterFactory
from mosnpy.stream.registry import STREAM_FILTERS
from mosnpy.upstream.cluster import Cluster, ClusterManager

__all__ = ["build", "build_clusters", "build_listeners"]

T = TypeVar("T")

#: MOSN's default connection idle timeout.
DEFAULT_IDLE_TIMEOUT = 90.0


@attrs.frozen
class _BuildContext:
    routers: Routers
    clusters: ClusterManager
    stream_filters: Sequence[StreamFilterFactory]
    listener_name: str
    path: str
    access_logs: Sequence[AccessLog] = ()


def build(config: MosnConfig, *, reuse_port: bool = False) -> tuple[ClusterManager, list[Listener]]:
    """Every cluster and every listener (not yet bound), or one ConfigError carrying
    every problem of both (a listener is still built when a cluster is not)."""
    clusters, errors = _build_clusters(config)
    listeners, more = _build_listeners(config, clusters, reuse_port)
    if errors or more:
        raise ConfigError.group([*errors, *more])
    return clusters, listeners


def build_clusters(config: MosnConfig) -> ClusterManager:
    """Every cluster, or one ConfigError carrying every cluster's problems."""
    manager, errors = _build_clusters(config)
    if errors:
        raise ConfigError.group(errors)
    return manager


def _build_clusters(config: MosnConfig) -> tuple[ClusterManager, list[ConfigError]]:
    manager = ClusterManager()
    errors: list[ConfigError] = []
    for i, cc in enumerate(config.cluster_manager.clusters):
        try:
            manager.add(Cluster(cc))
        except UnknownNameError as exc:
            key = "type" if exc.kind == "cluster type" else "lb_type"
            errors.append(ConfigError(f"cluster_manager.clusters[{i}].{key}", str(exc)))
        except ValueError as exc:
            errors.append(ConfigError(f"cluster_manager.clusters[{i}]", str(exc)))
    return manager, errors


def build_listeners(
    config: MosnConfig, clusters: ClusterManager, *, reuse_port: bool = False
) -> list[Listener]:
    """Build every listener of every server (not yet bound), or raise one ConfigError
    carrying every listener's problems.

    ``reuse_port`` binds with SO_REUSEPORT, so several worker processes share a port.
    """
    listeners, errors = _build_listeners(config, clusters, reuse_port)
    if errors:
        raise ConfigError.group(errors)
    return listeners


def _build_listeners(
    config: MosnConfig, clusters: ClusterManager, reuse_port: bool
) -> tuple[list[Listener], list[ConfigError]]:
    listeners: list[Listener] = []
    errors: list[ConfigError] = []
    for si, server in enumerate(config.servers):
        try:
            routers = Routers.from_configs(server.routers)
        except ValueError as exc:
            errors.append(ConfigError(f"servers[{si}].routers", str(exc)))
            routers = _usable_routers(server.routers)  # the listeners are still checked
        for li, lc in enumerate(server.listeners):
            try:
                lst = _build_listener(lc, f"servers[{si}].listeners[{li}]", routers, clusters)
            except ConfigError as exc:
                errors.append(exc)
                continue
            lst.reuse_port = reuse_port
            listeners.append(lst)
    return listeners, errors


def _usable_routers(configs: Sequence[RouterConfig]) -> Routers:
    """The router configs that compile, the first of each name only."""
    tables: dict[str, RouteTable] = {}
    for cfg in configs:
        if cfg.router_config_name not in tables:
            with contextlib.suppress(ValueError):
                tables[cfg.router_config_name] = RouteTable.from_config(cfg)
    return Routers(tables.values())


def _build_listener(lc: ListenerConfig, path: str, routers: Routers, clusters: ClusterManager) -> Listener:
    """One listener, or one ConfigError carrying the problems of all its filters."""
    errors: list[ConfigError] = []
    stream_filters: list[StreamFilterFactory] = []
    for i, sf in enumerate(lc.stream_filters):
        fpath = f"{path}.stream_filters[{i}]"
        try:
            factory_cls = _lookup(STREAM_FILTERS, sf.type, fpath)
            stream_filters.append(_call_factory(factory_cls, f"{fpath}.config", sf.config))
        except ConfigError as exc:
            errors.append(exc)
    access_logs: list[AccessLog] = []
    for i, alc in enumerate(lc.access_logs):
        try:
            access_logs.append(AccessLog(alc.log_path, alc.log_format))
        except FormatError as exc:
            errors.append(ConfigError(f"{path}.access_logs[{i}].log_format", str(exc)))
    network: list[NetworkFilterFactory] = []
    per_chain: list[list[NetworkFilterFactory]] = []
    selective = any(chain.filter_chain_match is not None for chain in lc.filter_chains)
    for ci, chain in enumerate(lc.filter_chains):
        own: list[NetworkFilterFactory] = []
        for fi, nf in enumerate(chain.filters):
            fpath = f"{path}.filter_chains[{ci}].filters[{fi}]"
            try:
                make = _lookup(NETWORK_FILTERS, nf.type, fpath)
                build = _BuildContext(
                    routers, clusters, tuple(stream_filters), lc.name, fpath, tuple(access_logs)
                )
                own.append(_call_factory(make, f"{fpath}.config", nf.config, build))
            except ConfigError as exc:
                errors.append(exc)
        if selective and not chain.filters:
            errors.append(
                ConfigError(f"{path}.filter_chains[{ci}].filters", "a filter chain needs a network filter")
            )
        per_chain.append(own)
        network.extend(own)
    if not network and not errors:
        errors.append(ConfigError(f"{path}.filter_chains", "a listener needs at least one network filter"))
    listener_filters = []
    if lc.use_original_dst and not any(lf.type == "original_dst" for lf in lc.listener_filters):
        # MOSN runs the original_dst filter on such a listener without being asked
        try:
            listener_filters.append(_lookup(LISTENER_FILTERS, "original_dst", f"{path}.use_original_dst")({}))
        except ConfigError as exc:
            errors.append(exc)
    for i, lf in enumerate(lc.listener_filters):
        fpath = f"{path}.listener_filters[{i}]"
        try:
            make_lf = _lookup(LISTENER_FILTERS, lf.type, fpath)
            listener_filters.append(_call_factory(make_lf, f"{fpath}.config", lf.config))
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigError.group(errors)
    chains = _filter_chains(lc, path, per_chain) if selective else None
    tls, tls_fallback = (None, False) if chains is not None else _listener_tls(lc, path)
    address = lc.address if lc.network != "unix" or lc.address.startswith("/") else f"unix:{lc.address}"
    idle = DEFAULT_IDLE_TIMEOUT if lc.connection_idle_timeout is None else lc.connection_idle_timeout
    return Listener(
        lc.name,
        address,
        network,
        listener_filters=listener_filters,
        max_connections=lc.max_connections,
        idle_timeout=idle,
        tls=tls,
        tls_fallback=tls_fallback,
        bind_port=lc.bind_port,
        use_original_dst=lc.use_original_dst,
        filter_chains=chains,
    )


def _listener_tls(lc: ListenerConfig, path: str) -> tuple[ssl.SSLContext | None, bool]:
    """The listener's server TLS context from its filter chains' ``tls_context`` /
    ``tls_context_set`` (MOSN's ``status: true`` turns one on), and ``fall_back``.

    One context per listener when no chain has a ``filter_chain_match``: the first
    chain with TLS gives it (its certificates chosen by SNI).
    """
    for ci, chain in enumerate(lc.filter_chains):
        tls = _chain_tls(chain, f"{path}.filter_chains[{ci}]")
        if tls[0] is not None:
            return tls
    return None, False


def _chain_tls(chain: FilterChainConfig, path: str) -> tuple[ssl.SSLContext | None, bool]:
    """One chain's server TLS context (None: no TLS ends there) and its ``fall_back``."""
    configs = [c for c in (chain.tls_context, *chain.tls_context_set) if c is not None and c.status]
    if not configs:
        return None, False
    key = "tls_context" if chain.tls_context is not None and chain.tls_context.status else "tls_context_set"
    try:
        return server_context(configs), any(c.fall_back for c in configs)
    except (ValueError, OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{path}.{key}", str(exc)) from None


def _filter_chains(
    lc: ListenerConfig, path: str, factories: Sequence[Sequence[NetworkFilterFactory]]
) -> FilterChains:
    """Each chain on its own (some chain has a ``filter_chain_match``): its match, its
    TLS, its network filters; or one ConfigError carrying every chain's problems.

    The chains' ``proxy`` filters share one set of downstream counters, so the
    listener's stats count every chain's requests.
    """
    chains: list[FilterChain] = []
    errors: list[ConfigError] = []
    for ci, (chain, own) in enumerate(zip(lc.filter_chains, factories, strict=True)):
        cpath = f"{path}.filter_chains[{ci}]"
        try:
            match = FilterChainMatch.from_config(chain.filter_chain_match)
        except ValueError as exc:
            errors.append(ConfigError(f"{cpath}.filter_chain_match", str(exc)))
            continue
        try:
            tls, fallback = _chain_tls(chain, cpath)
        except ConfigError as exc:
            errors.append(exc)
            continue
        chains.append(FilterChain(tuple(own), match, tls, fallback, f"filter_chains[{ci}]"))
    if errors:
        raise ConfigError.group(errors)
    proxies = [f for chain in chains for f in chain.factories if isinstance(f, ProxyFilterFactory)]
    for proxy in proxies[1:]:
        proxy.ctx.stats = proxies[0].ctx.stats
    return FilterChains(chains)


def _lookup(registry: Registry[T], name: str, path: str) -> T:
    """``registry.get(name)``; an unknown name is a ConfigError at ``{path}.type``."""
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{path}.type", str(exc)) from None


def _call_factory(factory: Callable[..., T], path: str, config: Mapping[str, Any], *args: object) -> T:
    """Call a plugin factory; its errors come back as ConfigErrors at ``path``.

    A factory that parses its config with :func:`mosnpy.config.structure` and the path
    ``"config"`` reports relative paths; they are re-rooted at ``path`` here.
    """
    try:
        return factory(config, *args)
    except ConfigError as exc:
        raise ConfigError.group(ConfigError(_reroot(e.path, path), e.problem) for e in exc.errors) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, str(exc)) from None


def _reroot(sub: str, path: str) -> str:
    if sub == "config" or sub.startswith(("config.", "config[")):
        return path + sub[len("config") :]
    return sub
