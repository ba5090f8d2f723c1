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

import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs

from mosnpy.config.engine import DURATION_METADATA

__all__ = [
    "AccessLogConfig",
    "AdminConfig",
    "CidrRangeConfig",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "ClusterManagerConfig",
    "DirectResponseConfig",
    "FilterChainConfig",
    "FilterChainMatchConfig",
    "FilterConfig",
    "HeaderMatcherConfig",
    "HeaderValueConfig",
    "HealthCheckConfig",
    "HostConfig",
    "ListenerConfig",
    "MosnConfig",
    "OutlierDetectionConfig",
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
    "cidr_network",
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
class TLSConfig:
    """MOSN's ``tls_context`` (on a filter chain: the listener's side; on a cluster:
    the upstream side).  Certificates and keys are file paths or inline PEM; versions
    are ``TLS_AUTO``, ``TLSv1_0`` .. ``TLSv1_3``; ``alpn`` is comma-separated."""

    status: bool = False
    server_name: str = ""
    ca_cert: str = ""
    cert_chain: str = ""
    private_key: str = ""
    verify_client: bool = False
    require_client_cert: bool = False
    insecure_skip: bool = False
    cipher_suites: str = ""
    min_version: str = ""
    max_version: str = ""
    alpn: str = ""
    #: the listener also serves plaintext on the same port (sniffed by the first byte)
    fall_back: bool = False


@attrs.frozen(kw_only=True)
class CidrRangeConfig:
    """Envoy's ``CidrRange``: ``{"address_prefix": "10.0.0.0", "prefix_len": 8}``.

    As in Envoy an unset ``prefix_len`` is 0 (every address of that family), and host
    bits of ``address_prefix`` are ignored (``10.1.2.3``/8 is ``10.0.0.0/8``).
    """

    address_prefix: str
    prefix_len: int = 0


def cidr_network(value: str | CidrRangeConfig) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A ``filter_chain_match`` range as a network: ``"10.0.0.0/8"``, a bare address
    (that one address) or a :class:`CidrRangeConfig`.

    Raises:
        ValueError: not an IP address or network, or a prefix length out of range.
    """
    if isinstance(value, CidrRangeConfig):
        value = f"{value.address_prefix}/{value.prefix_len}"
    return ipaddress.ip_network(value.strip(), strict=False)


@attrs.frozen(kw_only=True)
class FilterChainMatchConfig:
    """Envoy's ``filter_chain_match``: which connections a filter chain serves, when a
    listener has several chains (see :mod:`mosnpy.net.filterchain` for the choice).

    A criterion left empty matches every connection.  ``server_names`` are exact names
    or ``*.example.com`` wildcards (the SNI of the TLS ClientHello);
    ``application_protocols`` are ALPN names the ClientHello offers;
    ``destination_port`` is the port the client connected to (its original
    destination, when ``original_dst`` found one); ``transport_protocol`` is ``"tls"``
    or ``"raw_buffer"`` (plaintext); ``prefix_ranges`` match the destination address and
    ``source_prefix_ranges`` / ``source_ports`` the client's, each range a CIDR string
    (``"10.0.0.0/8"``) or Envoy's ``{"address_prefix", "prefix_len"}``.
    """

    destination_port: int | None = None
    prefix_ranges: tuple[str | CidrRangeConfig, ...] = attrs.field(default=(), converter=_tuple)
    server_names: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    source_prefix_ranges: tuple[str | CidrRangeConfig, ...] = attrs.field(default=(), converter=_tuple)
    source_ports: tuple[int, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class FilterChainConfig:
    """One of a listener's filter chains: network filters, and the TLS that ends on it.

    With one chain (or none of a listener's chains having a ``filter_chain_match``)
    every connection gets all the chains' filters and the first chain's TLS, as in
    MOSN; once a chain has a ``filter_chain_match``, each connection gets the one chain
    that matches it best, with that chain's own filters and TLS (Envoy's way).
    """

    filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)
    tls_context: TLSConfig | None = None
    #: several certificates chosen by SNI (each entry's ``server_name``)
    tls_context_set: tuple[TLSConfig, ...] = attrs.field(default=(), converter=_tuple)
    #: which connections this chain serves (None: any, unless a sibling matches better)
    filter_chain_match: FilterChainMatchConfig | None = None


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
    #: the longest a request body may stall (no piece arriving) before anything was
    #: answered (Envoy's ``stream_idle_timeout``, for that phase): 408 (HTTP/1) or the
    #: protocol's error reply; 0 turns the bound off
    stream_idle_timeout: float = 60.0
    fallback_for_unknown_protocol: bool = False
    extend_config: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)


@attrs.frozen(kw_only=True)
class AccessLogConfig:
    """One of a listener's ``access_logs``: MOSN's ``{"log_path", "log_format"}``.

    ``log_path`` is a file (appended to, its directory created), ``"stdout"`` or
    ``"stderr"`` (``""``: stdout, as MOSN's logger takes it).  ``log_format`` is text
    with ``%variable%`` fields (MOSN's names: ``%start_time%``, ``%response_code%``,
    ``%request_header_X%`` ...); ``""`` is MOSN's default format.  A line is written
    when each request ends (:mod:`mosnpy.proxy.accesslog`).
    """

    log_path: str = ""
    log_format: str = ""


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
    #: false: open no socket; serve only connections a ``use_original_dst`` listener
    #: hands over (MOSN's virtual listeners)
    bind_port: bool = True
    #: hand each connection to the listener that owns its original destination (found
    #: by the ``original_dst`` listener filter), if any
    use_original_dst: bool = False
    network: str = "tcp"
    listener_filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)
    filter_chains: tuple[FilterChainConfig, ...] = attrs.field(default=(), converter=_tuple)
    stream_filters: tuple[FilterConfig, ...] = attrs.field(default=(), converter=_tuple)
    connection_idle_timeout: float | None = None
    max_connections: int = 0
    #: a line per request to each (written by the ``proxy`` filter)
    access_logs: tuple[AccessLogConfig, ...] = attrs.field(default=(), converter=_tuple)


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
    """One route: a match plus exactly one of route / direct_response / redirect.

    Without a ``match`` the route matches every request, as in MOSN.
    """

    match: RouteMatchConfig = attrs.field(factory=RouteMatchConfig)
    route: RouteActionConfig | None = None
    direct_response: DirectResponseConfig | None = None
    redirect: RedirectConfig | None = None
    request_headers_to_add: tuple[HeaderValueConfig, ...] = attrs.field(default=(), converter=_tuple)
    request_headers_to_remove: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class VirtualHostConfig:
    name: str = ""
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


_PERCENT = attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(100))
_COUNT = attrs.validators.ge(0)
_DURATION = {DURATION_METADATA: True}


@attrs.frozen(kw_only=True)
class OutlierDetectionConfig:
    """Passive health checking: eject hosts whose requests fail in a row.

    MOSN has no outlier detection, so this is Envoy's ``outlier_detection`` with its
    snake_case names, defaults and meaning (consecutive-failure detection only).  A
    host that answers ``consecutive_5xx`` 5xx in a row, ``consecutive_gateway_failure``
    502/503/504 in a row, or (with ``split_external_local_origin_errors``)
    ``consecutive_local_origin_failure`` connect failures, resets and timeouts in a
    row is ejected, with probability ``enforcing_*`` percent, for ``base_ejection_time``
    times the number of times it was ejected in a row (at most ``max_ejection_time``,
    plus up to ``max_ejection_time_jitter``), unless that would eject more than
    ``max_ejection_percent`` of the cluster's hosts (``always_eject_one_host``: one may
    always go).  Without the split, connect failures and resets count as 503 and
    timeouts as 504.  Every ``interval`` a host that stayed in service lowers its
    ejection multiplier by one.  A count of 0 turns that detection off;
    ``max_ejection_time`` defaults to the larger of 300 s and ``base_ejection_time``.
    """

    consecutive_5xx: int = attrs.field(default=5, validator=_COUNT)
    consecutive_gateway_failure: int = attrs.field(default=5, validator=_COUNT)
    consecutive_local_origin_failure: int = attrs.field(default=5, validator=_COUNT)
    split_external_local_origin_errors: bool = False
    enforcing_consecutive_5xx: int = attrs.field(default=100, validator=_PERCENT)
    enforcing_consecutive_gateway_failure: int = attrs.field(default=0, validator=_PERCENT)
    enforcing_consecutive_local_origin_failure: int = attrs.field(default=100, validator=_PERCENT)
    interval: float = attrs.field(default=10.0, validator=attrs.validators.gt(0), metadata=_DURATION)
    base_ejection_time: float = attrs.field(
        default=30.0, validator=attrs.validators.gt(0), metadata=_DURATION
    )
    max_ejection_time: float | None = attrs.field(default=None, metadata=_DURATION)
    max_ejection_time_jitter: float = attrs.field(
        default=0.0, validator=attrs.validators.ge(0.0), metadata=_DURATION
    )
    max_ejection_percent: int = attrs.field(default=10, validator=_PERCENT)
    always_eject_one_host: bool = False
    successful_active_health_check_uneject_host: bool = True

    def __attrs_post_init__(self) -> None:
        if self.max_ejection_time is not None and self.max_ejection_time < self.base_ejection_time:
            raise ValueError(
                f"max_ejection_time ({self.max_ejection_time:g}s) must not be less than "
                f"base_ejection_time ({self.base_ejection_time:g}s)"
            )

    @property
    def ejection_time_cap(self) -> float:
        """``max_ejection_time``, or its default: the larger of 300 s and the base."""
        if self.max_ejection_time is not None:
            return self.max_ejection_time
        return max(300.0, self.base_ejection_time)


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
    outlier_detection: OutlierDetectionConfig | None = None
    tls_context: TLSConfig | None = None


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
