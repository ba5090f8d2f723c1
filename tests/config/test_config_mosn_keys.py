"""Keys read the way MOSN reads them, and no key accepted in silence.

* Keys match case-insensitively, as Go's ``encoding/json`` matches them (an exact
  match first): MOSN's own examples write ``"Name"`` in clusters.
* MOSN's legacy ``connection_manager`` filter declares a router config.
* A key mosnpy does not implement, or a value it accepts without effect, is logged
  once, by path; the walk at the end proves every field of every config model is
  either used by the runtime or has such a notice.
"""

from __future__ import annotations

import logging
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest

from mosnpy.cli import _names_checker
from mosnpy.config import (
    ConfigError,
    FilterConfig,
    HeaderValueConfig,
    MosnConfig,
    WeightedClusterConfig,
    parse_config,
    parse_proxy_config,
    structure,
)
from mosnpy.config import models as m
from mosnpy.runtime import MosnServer

IGNORED = "not supported by mosnpy yet; ignored"
L0 = "servers[0].listeners[0]"
PROXY = f"{L0}.filter_chains[0].filters[0].config"


def doc(
    *, listener: dict[str, Any] | None = None, proxy: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """One Http1 listener on port 0 routing to cluster ``c``; extra keys merged in."""
    return {
        "servers": [
            {
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "h",
                                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "l",
                        "address": "127.0.0.1:0",
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {"downstream_protocol": "Http1", "router_config_name": "r"}
                                        | (proxy or {}),
                                    }
                                ]
                            }
                        ],
                    }
                    | (listener or {}),
                ],
            }
        ],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]},
    } | top


def load(data: dict[str, Any]) -> tuple[MosnConfig, list[str]]:
    warnings: list[str] = []
    return parse_config(data, warnings=warnings), warnings


# -- keys match as in Go --------------------------------------------------------------


def test_keys_match_case_insensitively_as_in_go() -> None:
    data = doc()
    data["cluster_manager"]["clusters"] = [
        {
            "Name": "c",
            "TYPE": "SIMPLE",
            "Lb_Type": "LB_RANDOM",
            "Connect_Timeout": "2s",
            "Hosts": [{"Address": "127.0.0.1:1", "Weight": 3}],
            "Circuit_Breakers": [{"Max_Connections": 4}],
        }
    ]
    config, warnings = load(data)
    (cluster,) = config.cluster_manager.clusters
    assert (cluster.name, cluster.type, cluster.lb_type, cluster.connect_timeout) == (
        "c",
        "SIMPLE",
        "LB_RANDOM",
        2.0,
    )
    assert (cluster.hosts[0].address, cluster.hosts[0].weight) == ("127.0.0.1:1", 3)
    assert cluster.circuit_breakers[0].max_connections == 4
    assert warnings == []


def test_go_does_not_drop_underscores_and_neither_do_we() -> None:
    data = doc()
    data["cluster_manager"]["clusters"][0]["LbType"] = "LB_RANDOM"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert (
        str(info.value)
        == "cluster_manager.clusters[0].LbType: unknown key 'LbType' (did you mean 'lb_type'?)"
    )


def test_one_setting_given_twice_in_two_cases_is_an_error() -> None:
    data = doc()
    data["cluster_manager"]["clusters"][0]["NAME"] = "d"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == (
        "cluster_manager.clusters[0].NAME: same setting as 'name' (keys match case-insensitively); give only one"
    )


def test_unsupported_keys_match_case_insensitively_and_keep_the_spelling_given() -> None:
    data = doc()
    data["cluster_manager"]["clusters"][0]["Slow_Start"] = {}
    data["Tracing"] = {"enable": True}
    _, warnings = load(data)
    assert warnings == ["cluster_manager.clusters[0].Slow_Start: " + IGNORED, "Tracing: " + IGNORED]


def test_mosn_nested_forms_match_case_insensitively() -> None:
    assert structure(HeaderValueConfig, {"Header": {"Key": "x", "Value": "y"}, "Append": True}) == (
        HeaderValueConfig(key="x", value="y", append=True)
    )
    assert structure(WeightedClusterConfig, {"Cluster": {"Name": "v", "Weight": 2}}) == (
        WeightedClusterConfig(name="v", weight=2)
    )
    config, _ = load(doc(admin={"Address": {"Socket_Address": {"Address": "127.0.0.1", "Port_Value": 9}}}))
    assert config.admin is not None and config.admin.address == "127.0.0.1:9"


def test_legacy_x_sub_protocol_key_matches_case_insensitively() -> None:
    proxy = parse_proxy_config({"Downstream_Protocol": "X", "Extend_Config": {"Sub_Protocol": "dubbo"}})
    assert proxy.downstream_protocol == "dubbo"


def test_proxy_filter_config_is_kept_with_model_spellings_and_without_unsupported_keys() -> None:
    data = doc()
    proxy = {
        "Downstream_Protocol": "Http1",
        "name": "proxy_config",
        "Router_Config_Name": "r",
        "Concurrency_Num": 2,
    }
    data["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"] = proxy
    config, warnings = load(data)
    flt = config.servers[0].listeners[0].filter_chains[0].filters[0]
    assert flt == FilterConfig(
        type="proxy", config={"downstream_protocol": "Http1", "router_config_name": "r"}
    )
    assert warnings == [f"{PROXY}.name: {IGNORED}", f"{PROXY}.Concurrency_Num: {IGNORED}"]


# -- MOSN's shapes ----------------------------------------------------------------------


def connection_manager(name: str, cluster: str) -> dict[str, Any]:
    return {
        "type": "connection_manager",
        "config": {
            "router_config_name": name,
            "virtual_hosts": [
                {
                    "name": "h",
                    "domains": ["*"],
                    "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}],
                }
            ],
        },
    }


def test_connection_manager_filter_declares_a_router() -> None:
    data = doc(proxy={"router_config_name": "cm"})
    data["servers"][0]["listeners"][0]["filter_chains"][0]["filters"].append(connection_manager("cm", "c"))
    config, warnings = load(data)
    server = config.servers[0]
    assert [r.router_config_name for r in server.routers] == ["r", "cm"]
    assert [f.type for f in server.listeners[0].filter_chains[0].filters] == ["proxy"]
    assert warnings == []


def test_connection_manager_errors_point_into_the_filter() -> None:
    data = doc()
    filters = data["servers"][0]["listeners"][0]["filter_chains"][0]["filters"]
    filters.append(connection_manager("r", "nowhere"))
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    cm = f"{L0}.filter_chains[0].filters[1].config"
    assert [f"{e.path}: {e.problem}" for e in info.value.errors] == [
        f"{cm}.router_config_name: duplicate router config name 'r' (first at servers[0].routers[0].router_config_name)",
        f"{cm}.virtual_hosts[0].routers[0].route.cluster_name: unknown cluster 'nowhere' (known: c)",
    ]


def test_listener_without_name_is_named_after_its_address() -> None:
    data = doc()
    del data["servers"][0]["listeners"][0]["name"]
    config, _ = load(data)
    assert config.servers[0].listeners[0].name == "127.0.0.1:0"


def test_route_without_match_and_virtual_host_without_name() -> None:
    data = doc()
    data["servers"][0]["routers"][0]["virtual_hosts"] = [{"routers": [{"route": {"cluster_name": "c"}}]}]
    config, _ = load(data)
    vhost = config.servers[0].routers[0].virtual_hosts[0]
    assert vhost.name == ""
    assert vhost.routers[0].match == m.RouteMatchConfig()


# -- values without effect are named --------------------------------------------------


def test_listener_type_is_a_label() -> None:
    for label in ("ingress", "egress"):
        assert load(doc(listener={"type": label}))[1] == []
    _, warnings = load(doc(listener={"type": "sideways"}))
    assert warnings == [
        f"{L0}.type: listener type 'sideways' is {IGNORED} (mosnpy knows 'ingress' and 'egress', as labels)"
    ]


def test_notices_name_each_value_without_effect() -> None:
    data = doc(listener={"bind_port": False}, proxy={"fallback_for_unknown_protocol": True})
    data["servers"].append({"default_log_path": "/tmp/other.log", "default_log_level": "INFO"})
    cluster = data["cluster_manager"]["clusters"][0]
    cluster["hosts"] = [{"address": "127.0.0.1:1", "hostname": "h1", "metadata": {"filter_metadata": {}}}]
    cluster["circuit_breakers"] = [{"max_connections": 1}, {"priority": "HIGH", "max_connections": 9}]
    route = data["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["route"]
    route["weighted_clusters"] = [{"cluster": {"name": "c", "weight": 1}}]
    _, warnings = load(data)
    c0 = "cluster_manager.clusters[0]"
    assert [w.partition(": ")[0] for w in warnings] == [
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name",
        f"{PROXY}.fallback_for_unknown_protocol",
        f"{c0}.hosts[0].hostname",
        f"{c0}.hosts[0].metadata",
        f"{c0}.circuit_breakers[1].priority",
        f"{c0}.circuit_breakers[1]",
        f"{L0}.bind_port",
        "servers[1].default_log_path",
    ]
    never = [w for w in warnings if "it will never serve a connection" in w]
    assert [w.partition(": ")[0] for w in never] == [f"{L0}.bind_port"]
    assert all(IGNORED in w or ": ignored: " in w for w in warnings if w not in never), warnings


def test_access_logs_without_a_proxy_filter_are_named() -> None:
    access_logs = [{"log_path": "stdout"}]
    assert load(doc(listener={"access_logs": access_logs}))[1] == []
    tcp = {"type": "tcp_proxy", "config": {"cluster": "c"}}
    _, warnings = load(doc(listener={"access_logs": access_logs, "filter_chains": [{"filters": [tcp]}]}))
    assert warnings == [
        f"{L0}.access_logs: {IGNORED} on a listener without a 'proxy' filter (only the proxy writes access logs)"
    ]


def test_bind_port_false_is_quiet_when_a_listener_hands_connections_over() -> None:
    data = doc(listener={"bind_port": False})
    outbound = dict(data["servers"][0]["listeners"][0], name="out", bind_port=True, use_original_dst=True)
    data["servers"][0]["listeners"].append(outbound)
    assert load(data)[1] == []


def test_each_warning_is_logged_once_through_load_and_build(caplog: pytest.LogCaptureFixture) -> None:
    data = doc(proxy={"fallback_for_unknown_protocol": True, "name": "p", "Validate_Clusters": True})
    with caplog.at_level(logging.WARNING):
        config, warnings = load(data)
        MosnServer(config)  # the proxy filter's factory parses its config again
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert logged == warnings
    assert [w.partition(": ")[0] for w in warnings] == [
        f"{PROXY}.name",
        f"{PROXY}.Validate_Clusters",
        f"{PROXY}.fallback_for_unknown_protocol",
    ]


# -- no silent keys: every field of every model -----------------------------------------

#: Fields whose value takes effect: class → {field: the module (under mosnpy/) that
#: uses it}.  A field not listed here must have a notice (NOTICED) or be PENDING.
EFFECT: dict[type, dict[str, str]] = {
    m.MosnConfig: {
        "servers": "runtime/builder.py",
        "cluster_manager": "runtime/builder.py",
        "admin": "runtime/server.py",
    },
    m.ServerConfig: {
        "default_log_path": "cli.py",  # servers[0]'s; others: notice
        "default_log_level": "cli.py",  # servers[0]'s; others: notice
        "graceful_timeout": "runtime/server.py",
        "listeners": "runtime/builder.py",
        "routers": "runtime/builder.py",
    },
    m.ListenerConfig: {
        "name": "runtime/builder.py",
        "address": "runtime/builder.py",
        "network": "runtime/builder.py",
        "listener_filters": "runtime/builder.py",
        "filter_chains": "runtime/builder.py",
        "stream_filters": "runtime/builder.py",
        "connection_idle_timeout": "runtime/builder.py",
        "max_connections": "runtime/builder.py",
        "bind_port": "runtime/builder.py",
        "use_original_dst": "runtime/builder.py",
        "access_logs": "runtime/builder.py",  # with a proxy filter; without: notice
    },
    m.AccessLogConfig: {"log_path": "runtime/builder.py", "log_format": "runtime/builder.py"},
    m.FilterConfig: {"type": "runtime/builder.py", "config": "runtime/builder.py"},
    m.FilterChainConfig: {
        "filters": "runtime/builder.py",
        "tls_context": "runtime/builder.py",
        "tls_context_set": "runtime/builder.py",
        "filter_chain_match": "runtime/builder.py",
    },
    m.FilterChainMatchConfig: {
        "destination_port": "net/filterchain.py",
        "prefix_ranges": "net/filterchain.py",
        "server_names": "net/filterchain.py",
        "transport_protocol": "net/filterchain.py",
        "application_protocols": "net/filterchain.py",
        "source_prefix_ranges": "net/filterchain.py",
        "source_ports": "net/filterchain.py",
    },
    m.CidrRangeConfig: {"address_prefix": "config/models.py", "prefix_len": "config/models.py"},
    m.TLSConfig: {
        "status": "runtime/builder.py",
        "server_name": "net/tls.py",
        "ca_cert": "net/tls.py",
        "cert_chain": "net/tls.py",
        "private_key": "net/tls.py",
        "verify_client": "net/tls.py",
        "require_client_cert": "net/tls.py",
        "insecure_skip": "net/tls.py",
        "cipher_suites": "net/tls.py",
        "min_version": "net/tls.py",
        "max_version": "net/tls.py",
        "alpn": "net/tls.py",
        "fall_back": "runtime/builder.py",
    },
    m.ProxyConfig: {
        "downstream_protocol": "proxy/factory.py",
        "upstream_protocol": "proxy/factory.py",
        "router_config_name": "proxy/factory.py",
        "request_headers_timeout": "proxy/stream_server.py",
        "stream_idle_timeout": "proxy/stream_downstream.py",
        "extend_config": "proxy/factory.py",
    },
    m.RouterConfig: {
        "router_config_name": "router/table.py",
        "virtual_hosts": "router/table.py",
        "request_headers_to_add": "router/table.py",
        "request_headers_to_remove": "router/table.py",
    },
    m.VirtualHostConfig: {
        "name": "router/table.py",
        "domains": "router/table.py",
        "routers": "router/table.py",
        "request_headers_to_add": "router/route.py",
        "request_headers_to_remove": "router/route.py",
    },
    m.RouteConfig: {
        "match": "router/route.py",
        "route": "router/route.py",
        "direct_response": "router/route.py",
        "redirect": "router/route.py",
        "request_headers_to_add": "router/route.py",
        "request_headers_to_remove": "router/route.py",
    },
    m.RouteMatchConfig: {
        "prefix": "router/matchers.py",
        "path": "router/matchers.py",
        "regex": "router/matchers.py",
        "headers": "router/route.py",
    },
    m.HeaderMatcherConfig: {
        "name": "router/matchers.py",
        "value": "router/matchers.py",
        "regex": "router/matchers.py",
    },
    m.RouteActionConfig: {
        "cluster_name": "router/route.py",  # unless weighted_clusters is given: notice
        "weighted_clusters": "router/route.py",
        "timeout": "router/route.py",
        "retry_policy": "router/route.py",
        "upstream_protocol": "router/route.py",
        "prefix_rewrite": "router/route.py",
        "host_rewrite": "router/route.py",
        "request_headers_to_add": "router/route.py",
        "request_headers_to_remove": "router/route.py",
        "response_headers_to_add": "router/route.py",
        "response_headers_to_remove": "router/route.py",
    },
    m.WeightedClusterConfig: {"name": "router/route.py", "weight": "router/route.py"},
    m.RetryPolicyConfig: {
        "retry_on": "proxy/downstream.py",
        "retry_timeout": "proxy/downstream.py",
        "num_retries": "proxy/downstream.py",
        "status_codes": "proxy/downstream.py",
    },
    m.HeaderValueConfig: {
        "key": "router/mutation.py",
        "value": "router/mutation.py",
        "append": "router/mutation.py",
    },
    m.DirectResponseConfig: {"status": "proxy/downstream.py", "body": "proxy/downstream.py"},
    m.RedirectConfig: {
        "response_code": "proxy/replies.py",
        "path_redirect": "proxy/replies.py",
        "host_redirect": "proxy/replies.py",
        "scheme_redirect": "proxy/replies.py",
    },
    m.ClusterManagerConfig: {"clusters": "runtime/builder.py"},
    m.ClusterConfig: {
        "name": "upstream/cluster.py",
        "type": "upstream/cluster.py",
        "lb_type": "upstream/cluster.py",
        "hosts": "upstream/cluster.py",
        "connect_timeout": "upstream/cluster.py",
        "idle_timeout": "upstream/cluster.py",
        "max_request_per_conn": "upstream/cluster.py",
        "circuit_breakers": "upstream/cluster.py",  # the first entry; others: notice
        "lb_config": "upstream/cluster.py",
        "health_check": "upstream/cluster.py",
        "outlier_detection": "upstream/cluster.py",
        "tls_context": "upstream/cluster.py",
    },
    m.HostConfig: {"address": "upstream/host.py", "weight": "upstream/host.py"},
    m.CircuitBreakerConfig: {
        "max_connections": "upstream/cluster.py",
        "max_pending_requests": "upstream/cluster.py",
        "max_requests": "upstream/cluster.py",
        "max_retries": "upstream/cluster.py",
    },
    m.HealthCheckConfig: {
        "protocol": "upstream/health.py",
        "timeout": "upstream/health.py",
        "interval": "upstream/health.py",
        "interval_jitter": "upstream/health.py",
        "healthy_threshold": "upstream/health.py",
        "unhealthy_threshold": "upstream/health.py",
        "check_config": "upstream/health.py",
    },
    m.OutlierDetectionConfig: {
        "consecutive_5xx": "upstream/outlier.py",
        "consecutive_gateway_failure": "upstream/outlier.py",
        "consecutive_local_origin_failure": "upstream/outlier.py",
        "split_external_local_origin_errors": "upstream/outlier.py",
        "enforcing_consecutive_5xx": "upstream/outlier.py:enforcing_",
        "enforcing_consecutive_gateway_failure": "upstream/outlier.py:enforcing_",
        "enforcing_consecutive_local_origin_failure": "upstream/outlier.py:enforcing_",
        "interval": "upstream/outlier.py",
        "base_ejection_time": "upstream/outlier.py",
        "max_ejection_time": "upstream/outlier.py",
        "max_ejection_time_jitter": "upstream/outlier.py",
        "max_ejection_percent": "upstream/outlier.py",
        "always_eject_one_host": "upstream/outlier.py",
        "successful_active_health_check_uneject_host": "upstream/outlier.py",
    },
    m.AdminConfig: {"address": "runtime/server.py"},
}

#: Fields without effect (or with effect in some places only): each has a notice,
#: triggered by test_notices_name_each_value_without_effect / test_listener_type_is_a_label.
NOTICED: dict[type, set[str]] = {
    m.ListenerConfig: {"type", "bind_port"},
    m.ProxyConfig: {"fallback_for_unknown_protocol"},
    m.HostConfig: {"hostname", "metadata"},
}

MOSNPY = Path(__file__).resolve().parents[2] / "mosnpy"


def model_classes() -> list[type]:
    """Every attrs class reachable from MosnConfig's fields, plus ProxyConfig."""
    found: list[type] = []

    def walk(cls: type) -> None:
        if cls in found:
            return
        found.append(cls)
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            stack = [hints[field.name]]
            while stack:
                tp = stack.pop()
                if attrs.has(tp):
                    walk(tp)
                stack.extend(typing.get_args(tp))

    walk(m.MosnConfig)
    walk(m.ProxyConfig)
    return found


@pytest.mark.parametrize("cls", model_classes(), ids=lambda c: c.__name__)
def test_every_field_has_its_effect_or_a_notice(cls: type) -> None:
    fields = {f.name for f in attrs.fields(cls)}
    effect = EFFECT.get(cls, {})
    noticed = NOTICED.get(cls, set())
    unclassified = fields - set(effect) - noticed
    assert not unclassified, (
        f"{cls.__name__}: {sorted(unclassified)} neither take effect nor warn: give each its effect, "
        "or a notice in mosnpy/config/notices.py (or a key in unsupported.py), then list it here"
    )
    assert not (set(effect) | noticed) - fields, f"{cls.__name__}: stale entries"
    for name, where in effect.items():
        module, _, token = where.partition(":")
        assert (token or name) in (MOSNPY / module).read_text(), (
            f"{cls.__name__}.{name} is not used in {module}"
        )


# -- every problem in one run -----------------------------------------------------------


def test_every_problem_of_a_file_in_one_run() -> None:
    """Key errors come first (no model without them); then references and names, together:
    what ``mosnpy -c`` does with its check that builds the proxy."""
    data = doc(proxy={"downstream_protocol": "Htp1"})
    data["servers"][0]["routers"].append(data["servers"][0]["routers"][0])
    clusters = data["cluster_manager"]["clusters"]
    clusters[0]["lb_type"] = "LB_NOPE"
    clusters.append({"name": "c", "hosts": [{"address": "127.0.0.1:1"}]})
    with pytest.raises(ConfigError) as info:
        parse_config(data, check=_names_checker(reuse_port=False))
    assert [f"{e.path}: {e.problem.partition(' (')[0]}" for e in info.value.errors] == [
        "cluster_manager.clusters[1].name: duplicate cluster name 'c'",
        "servers[0].routers[1].router_config_name: duplicate router config name 'r'",
        "cluster_manager.clusters[0].lb_type: unknown load balancer 'LB_NOPE'",
        f"{PROXY}.downstream_protocol: unknown protocol 'Htp1'",
    ]
