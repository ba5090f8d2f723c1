"""Frozen attrs models of MOSN's v2 configuration layout.

These classes are the typed form of ``config.json``: the loader (``loader.py``) turns a
JSON/YAML document into them, checking every key with its path, and code that builds a
proxy without a file (``import mosnpy``) constructs them directly.  Durations are
``float`` seconds here; the loader accepts MOSN's ``"2s"`` / ``"500ms"`` strings.

Only what mosnpy implements is modelled.  Free-form plugin configs (a stream filter's
``config``, a proxy's ``extend_config``) stay ``Mapping[str, Any]`` and are checked by
the plugin's own factory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "AdminConfig",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "ClusterManagerConfig",
    "DirectResponseConfig",
    "FilterChainConfig",
    "FilterConfig",
    "HeaderMatcherConfig",
    "HeaderValueConfig",
    "HealthCheckConfig",
    "HostConfig",
    "ListenerConfig",
    "MosnConfig",
    "ProxyConfig",
    "RedirectConfig",
    "RetryPolicyConfig",
    "RouteActionConfig",
    "RouteConfig",
    "RouteMatchConfig",
    "RouterConfig",
    "ServerConfig",
    "VirtualHostConfig",
    "WeightedClusterConfig",
]


def _tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x)


def _mapping(x: Any) -> Mapping[str, Any]:
    return dict(x)


# -- listeners ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FilterConfig:
    """One ``{"type": ..., "config": {...}}`` entry of a filter list."""

    type: str
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)


@attrs.frozen(kw_only=True)
class FilterChainConfig:
    filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class ProxyConfig:
    """The config of the ``proxy`` network filter.

    ``downstream_protocol`` is one name, a comma-separated list, or ``"Auto"``; the
    legacy ``"X"`` with ``extend_config.sub_protocol`` is rewritten by the loader.
    """

    downstream_protocol: str = "Http1"
    upstream_protocol: str = "Auto"
    router_config_name: str = ""
    #: the longest a request head (an RPC frame) may take to arrive once its first
    #: byte has (Envoy's ``request_headers_timeout``): a slowloris client is answered
    #: 408 (HTTP/1) or dropped; 0 turns the bound off
    request_headers_timeout: float = 30.0
    fallback_for_unknown_protocol: bool = False
    extend_config: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)


@attrs.frozen(kw_only=True)
class ListenerConfig:
    """A listener: where to accept, and which filters each connection gets.

    ``address`` is ``"host:port"`` for TCP or a filesystem path when ``network`` is
    ``"unix"``.  ``max_connections`` (0 = unlimited) caps concurrent connections;
    ``connection_idle_timeout`` closes connections that moved no bytes for that long
    (``None`` = MOSN's 90 s default, 0 = never).
    """

    name: str
    address: str
    type: str = "ingress"
    bind_port: bool = True
    network: str = "tcp"
    listener_filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)
    filter_chains: tuple[FilterChainConfig, ...] = attrs.field(default=(), converter=_tuple)
    stream_filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)
    connection_idle_timeout: float | None = None
    max_connections: int = 0


# -- routers --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HeaderMatcherConfig:
    """Match one header: exact ``value`` or, with ``regex`` true, a full regex match."""

    name: str
    value: str
    regex: bool = False


@attrs.frozen(kw_only=True)
class HeaderValueConfig:
    """A header to add: ``{"header": {"key": k, "value": v}, "append": false}``."""

    key: str
    value: str
    append: bool = False


@attrs.frozen(kw_only=True)
class RouteMatchConfig:
    """At most one of ``prefix`` / ``path`` / ``regex``, plus header matchers."""

    prefix: str | None = None
    path: str | None = None
    regex: str | None = None
    headers: tuple[HeaderMatcherConfig, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class WeightedClusterConfig:
    name: str
    weight: int


@attrs.frozen(kw_only=True)
class RetryPolicyConfig:
    """``retry_on`` enables retries on 5xx-ish failures (or ``status_codes``)."""

    retry_on: bool = False
    retry_timeout: float = 0.0
    num_retries: int = 0
    status_codes: tuple[int, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class RouteActionConfig:
    """Where a matched request goes; ``timeout`` 0 means the 60 s default."""

    cluster_name: str = ""
    weighted_clusters: tuple[WeightedClusterConfig, ...] = attrs.field(default=(), converter=_tuple)
    timeout: float = 0.0
    retry_policy: RetryPolicyConfig | None = None
    upstream_protocol: str = ""
    prefix_rewrite: str = ""
    host_rewrite: str = ""
    request_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    response_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    response_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class DirectResponseConfig:
    status: int
    body: str = ""


@attrs.frozen(kw_only=True)
class RedirectConfig:
    response_code: int = 301
    path_redirect: str = ""
    host_redirect: str = ""
    scheme_redirect: str = ""


@attrs.frozen(kw_only=True)
class RouteConfig:
    """One route: a match plus exactly one of route / direct_response / redirect."""

    match: RouteMatchConfig
    route: RouteActionConfig | None = None
    direct_response: DirectResponseConfig | None = None
    redirect: RedirectConfig | None = None
    request_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class VirtualHostConfig:
    name: str
    domains: tuple[str, ...] = attrs.field(default=("*",), converter=_tuple)
    routers: tuple[RouteConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class RouterConfig:
    router_config_name: str
    virtual_hosts: tuple[VirtualHostConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


# -- clusters -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HostConfig:
    address: str
    hostname: str = ""
    weight: int = 1
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)


@attrs.frozen(kw_only=True)
class CircuitBreakerConfig:
    """0 means unlimited for every field."""

    max_connections: int = 0
    max_pending_requests: int = 0
    max_requests: int = 0
    max_retries: int = 0


@attrs.frozen(kw_only=True)
class HealthCheckConfig:
    """Active health checking of a cluster's hosts (MOSN's ``health_check``).

    ``protocol`` names the checker: ``"Http1"`` sends a request described by
    ``check_config.http_check_config`` ({port, path, method, codes}); anything else
    (MOSN's default) is a TCP connect.  A host turns unhealthy after
    ``unhealthy_threshold`` failed checks in a row and healthy again after
    ``healthy_threshold`` good ones.
    """

    protocol: str = ""
    timeout: float = 1.0
    interval: float = 15.0
    interval_jitter: float = 0.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    check_config: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)


@attrs.frozen(kw_only=True)
class ClusterConfig:
    name: str
    type: str = "SIMPLE"
    lb_type: str = "LB_ROUNDROBIN"
    hosts: tuple[HostConfig, ...] = attrs.field(default=(), converter=_tuple)
    connect_timeout: float = 10.0
    idle_timeout: float = 0.0
    max_request_per_conn: int = 0
    circuit_breakers: tuple[CircuitBreakerConfig, ...] = attrs.field(default=(), converter=_tuple)
    lb_config: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)
    health_check: HealthCheckConfig | None = None


@attrs.frozen(kw_only=True)
class ClusterManagerConfig:
    clusters: tuple[ClusterConfig, ...] = attrs.field(default=(), converter=_tuple)


# -- top level ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerConfig:
    default_log_path: str = "stdout"
    default_log_level: str = "INFO"
    graceful_timeout: float = 30.0
    listeners: tuple[ListenerConfig, ...] = attrs.field(default=(), converter=_tuple)
    routers: tuple[RouterConfig, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class AdminConfig:
    address: str


@attrs.frozen(kw_only=True)
class MosnConfig:
    servers: tuple[ServerConfig, ...] = attrs.field(default=(), converter=_tuple)
    cluster_manager: ClusterManagerConfig = attrs.field(factory=ClusterManagerConfig)
    admin: AdminConfig | None = None
