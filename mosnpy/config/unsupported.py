"""MOSN config keys that mosnpy accepts but does not implement yet.

A MOSN user's ``config.json`` should load unchanged: a key listed here is skipped with
a warning that names its full path (``cluster_manager.clusters[0].health_check: not
supported by mosnpy yet; ignored``), while a key listed nowhere is an error, which
catches typos.  When mosnpy implements one of these, move it from this table into the
model in ``models.py``.

The table is keyed by the class the key belongs to; the comment on each line says
where that object sits in MOSN's layout.  Sources: MOSN ``pkg/config/v2`` (``config.go``,
``server.go``, ``route.go``, ``upstream.go``, ``proxy.go``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from mosnpy.config.models import (
    CircuitBreakerConfig,
    ClusterConfig,
    ClusterManagerConfig,
    FilterChainConfig,
    FilterConfig,
    HealthCheckConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    ProxyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    ServerConfig,
    TLSConfig,
    VirtualHostConfig,
    WeightedClusterConfig,
)
from mosnpy.config.wire import MosnAdmin, SocketAddress

__all__ = ["UNSUPPORTED_HINTS", "UNSUPPORTED_KEYS"]

# fmt: off
UNSUPPORTED_KEYS: Final[Mapping[type, frozenset[str]]] = {
    # the top level of config.json
    MosnConfig: frozenset({
        "pprof", "tracing", "metrics", "dynamic_resources", "static_resources", "node",
        "disable_upgrade", "inherit_old_mosnconfig", "close_graceful", "uds_dir", "pid",
        "plugin", "third_part_codec", "extends", "wasm_global_plugins", "service_registry",
    }),
    # admin
    MosnAdmin: frozenset(),
    # admin.address.socket_address
    SocketAddress: frozenset({"protocol", "ipv4_compat", "resolver_name", "named_port"}),
    # servers[]
    ServerConfig: frozenset({
        "mosn_server_name", "global_log_roller", "use_netpoll_mode", "processor",
        "optimize_local_write",
    }),
    # servers[].listeners[] (log_path, log_level, disable_conn_io: older MOSN versions)
    ListenerConfig: frozenset({
        "inspector", "default_read_buffer_size",
        "per_connection_buffer_limit_bytes", "tunnel_listener", "log_path", "log_level",
        "disable_conn_io",
    }),
    # servers[].listeners[].filter_chains[] (MOSN's own "match" string; Envoy's
    # filter_chain_match is implemented)
    FilterChainConfig: frozenset({"match"}),
    # any {type, config} filter entry
    FilterConfig: frozenset({"go_plugin_config"}),
    # the config of a filter_chains[].filters[] entry of type "proxy"
    ProxyConfig: frozenset({
        "name", "router_handler_name", "validate_clusters", "concurrency_num", "transparent_proxy",
    }),
    # servers[].routers[]
    RouterConfig: frozenset({"response_headers_to_add", "response_headers_to_remove", "router_configs"}),
    # servers[].routers[].virtual_hosts[]
    VirtualHostConfig: frozenset({
        "require_tls", "virtual_clusters", "response_headers_to_add", "response_headers_to_remove",
        "per_filter_config",
    }),
    # servers[].routers[].virtual_hosts[].routers[]
    RouteConfig: frozenset({"metadata", "per_filter_config", "request_mirror_policies"}),
    # ...routers[].match
    RouteMatchConfig: frozenset({"case_sensitive", "runtime", "variables", "dsl_expressions"}),
    # ...routers[].route
    RouteActionConfig: frozenset({
        "cluster_header", "cluster_variable", "metadata_match", "hash_policy", "regex_rewrite",
        "auto_host_rewrite", "auto_host_rewrite_header", "request_mirror_policies",
    }),
    # ...routers[].route.weighted_clusters[].cluster
    WeightedClusterConfig: frozenset({"metadata_match"}),
    # cluster_manager
    ClusterManagerConfig: frozenset({
        "tls_context", "clusters_configs", "auto_discovery", "registry_use_health_check",
    }),
    # cluster_manager.clusters[]
    ClusterConfig: frozenset({
        "lb_subset_config", "slow_start", "keepalive", "sub_type",
        "conn_buffer_limit_bytes", "spec", "original_dst_lb_config", "cluster_manager_tls",
        "dns_refresh_rate", "respect_dns_ttl", "dns_lookup_family", "dns_resolvers",
        "dns_resolver_file", "dns_resolver_port", "cluster_pool_enable",
    }),
    # cluster_manager.clusters[].health_check
    # (check_path: older MOSN versions' HTTP check path)
    HealthCheckConfig: frozenset({
        "service_name", "cluster_name", "event_log_path", "common_callbacks", "check_path",
    }),
    # cluster_manager.clusters[].hosts[]
    HostConfig: frozenset({"tls_disable"}),
    # cluster_manager.clusters[].circuit_breakers[]
    CircuitBreakerConfig: frozenset({"priority"}),
    # any tls_context (MOSN's TLSConfig)
    TLSConfig: frozenset({"type", "ecdh_curves", "ticket", "extend_verify", "sds_source"}),
}

#: What a user can do instead, appended to the warning about an unsupported key.
UNSUPPORTED_HINTS: Final[Mapping[type, Mapping[str, str]]] = {
    ListenerConfig: {
        "log_path": "mosnpy logs to servers[].default_log_path",
        "log_level": "mosnpy logs at servers[].default_log_level",
    },
    HealthCheckConfig: {
        "check_path": "with protocol Http1, give the path in check_config.http_check_config.path",
    },
}
# fmt: on
