"""Values the config accepts but that have no effect in mosnpy: each is logged once by
its path, as keys mosnpy does not implement are (:mod:`mosnpy.config.unsupported`).

A MOSN config should load unchanged, so these are warnings, never errors; but a user
must not believe a setting works when it does not.  Each notice looks at one freshly
built object and yields ``(path, message)`` pairs.  When mosnpy gives one of these
values its effect, remove its notice (``tests/config/test_config_mosn_keys.py`` walks
every model field and wants each one either used or noticed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mosnpy.config.engine import Notice
from mosnpy.config.errors import join_path
from mosnpy.config.models import (
    ClusterConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    ProxyConfig,
    RouteActionConfig,
)

__all__ = ["LISTENER_TYPES", "NOTICES", "proxy_notices"]

#: MOSN's listener types; mosnpy takes them as labels only.
LISTENER_TYPES = ("ingress", "egress")

_IGNORED = "not supported by mosnpy yet; ignored"


def listener_notices(obj: ListenerConfig, path: str) -> Iterator[tuple[str, str]]:
    if obj.type not in LISTENER_TYPES:
        yield (
            join_path(path, "type"),
            f"listener type {obj.type!r} is {_IGNORED} (mosnpy knows 'ingress' and 'egress', as labels)",
        )
    if obj.access_logs and not any(f.type == "proxy" for c in obj.filter_chains for f in c.filters):
        yield (
            join_path(path, "access_logs"),
            f"{_IGNORED} on a listener without a 'proxy' filter (only the proxy writes access logs)",
        )


def host_notices(obj: HostConfig, path: str) -> Iterator[tuple[str, str]]:
    if obj.hostname:
        yield join_path(path, "hostname"), _IGNORED
    if obj.metadata:
        yield (
            join_path(path, "metadata"),
            f"{_IGNORED} (it selects hosts for lb_subset_config and metadata_match, which mosnpy lacks)",
        )


def route_action_notices(obj: RouteActionConfig, path: str) -> Iterator[tuple[str, str]]:
    if obj.cluster_name and obj.weighted_clusters:
        yield (
            join_path(path, "cluster_name"),
            "ignored: weighted_clusters is given too, and takes precedence (as in MOSN)",
        )


def cluster_notices(obj: ClusterConfig, path: str) -> Iterator[tuple[str, str]]:
    for i in range(1, len(obj.circuit_breakers)):
        yield (
            join_path(path, "circuit_breakers", i),
            f"{_IGNORED} (mosnpy applies circuit_breakers[0] only; it has no priorities)",
        )


def config_notices(obj: MosnConfig, path: str) -> Iterator[tuple[str, str]]:
    if not obj.servers:
        return
    listeners = [(si, li, lc) for si, s in enumerate(obj.servers) for li, lc in enumerate(s.listeners)]
    if not any(lc.use_original_dst and lc.bind_port for _, _, lc in listeners):
        for si, li, lc in listeners:
            if not lc.bind_port:
                yield (
                    join_path(path, "servers", si, "listeners", li, "bind_port"),
                    "false: this listener opens no socket and only serves connections that a "
                    "listener with use_original_dst hands over, and no listener has "
                    "use_original_dst: it will never serve a connection",
                )
    first = obj.servers[0]
    for i, server in enumerate(obj.servers[1:], start=1):
        for key in ("default_log_path", "default_log_level"):
            if getattr(server, key) != getattr(first, key):
                yield (
                    join_path(path, "servers", i, key),
                    f"{_IGNORED} (logging is set once per process, by servers[0].{key})",
                )


def proxy_notices(obj: ProxyConfig, path: str) -> Iterator[tuple[str, str]]:
    """The ``proxy`` filter's (run by the loader once per filter, not by every parse)."""
    if obj.fallback_for_unknown_protocol:
        yield (
            join_path(path, "fallback_for_unknown_protocol"),
            f"true is {_IGNORED} (a connection that no protocol matches is closed, not handed "
            "to the next network filter)",
        )


NOTICES: Mapping[type, Notice] = {
    ClusterConfig: cluster_notices,
    HostConfig: host_notices,
    ListenerConfig: listener_notices,
    MosnConfig: config_notices,
    RouteActionConfig: route_action_notices,
}
