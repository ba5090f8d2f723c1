"""Every kind of config error is reported at the exact path of the offending key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from mosnpy.config import ConfigError, parse_config

Doc = dict[str, Any]

L0 = "servers[0].listeners[0]"
PROXY = f"{L0}.filter_chains[0].filters[0].config"
R0 = "servers[0].routers[0]"
ROUTE0 = f"{R0}.virtual_hosts[0].routers[0]"
ROUTE1 = f"{R0}.virtual_hosts[0].routers[1]"
C0 = "cluster_manager.clusters[0]"


def base() -> Doc:
    """A small valid config: one listener, one router config (two routes), two clusters."""
    return {
        "servers": [
            {
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "h",
                                "domains": ["*"],
                                "routers": [
                                    {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}},
                                    {
                                        "match": {
                                            "headers": [{"name": "service", "value": ".*", "regex": True}]
                                        },
                                        "route": {
                                            "weighted_clusters": [
                                                {"cluster": {"name": "a", "weight": 1}},
                                                {"cluster": {"name": "b", "weight": 1}},
                                            ],
                                            "request_headers_to_add": [
                                                {"header": {"key": "x", "value": "y"}, "append": False}
                                            ],
                                        },
                                    },
                                ],
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
                                        "config": {"downstream_protocol": "Http1", "router_config_name": "r"},
                                    }
                                ]
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {"name": "a", "hosts": [{"address": "127.0.0.1:8080"}]},
                {"name": "b", "hosts": [{"address": "127.0.0.1:8081"}]},
            ]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}},
    }


def listener(d: Doc) -> Doc:
    result: Doc = d["servers"][0]["listeners"][0]
    return result


def route(d: Doc, i: int = 0) -> Doc:
    result: Doc = d["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][i]
    return result


def proxy(d: Doc) -> Doc:
    result: Doc = listener(d)["filter_chains"][0]["filters"][0]["config"]
    return result


def cluster(d: Doc, i: int = 0) -> Doc:
    result: Doc = d["cluster_manager"]["clusters"][i]
    return result


def test_base_is_valid() -> None:
    parse_config(base())


CASES: list[tuple[str, Callable[[Doc], object], str]] = [
    # unknown keys (typos), with suggestions and hints
    (
        "typo in listener",
        lambda d: listener(d).update(adress="x"),
        f"{L0}.adress: unknown key 'adress' (did you mean 'address'?)",
    ),
    (
        "typo in proxy config",
        lambda d: proxy(d).update(downstream_protocl="Http1"),
        f"{PROXY}.downstream_protocl: unknown key 'downstream_protocl' (did you mean 'downstream_protocol'?)",
    ),
    (
        "typo far from anything",
        lambda d: d["admin"]["address"]["socket_address"].update(zzz=1),
        "admin.address.socket_address.zzz: unknown key 'zzz' (known: address, port_value)",
    ),
    (
        "routers at top level",
        lambda d: d.update(routers=[]),
        "routers: unknown key 'routers' (routers go under servers[].routers)",
    ),
    # types
    (
        "bool as string",
        lambda d: listener(d).update(bind_port="yes"),
        f"{L0}.bind_port: expected true or false, got the string 'yes'",
    ),
    (
        "string as number",
        lambda d: cluster(d).update(name=5),
        f"{C0}.name: expected a string, got the number 5",
    ),
    (
        "int as string",
        lambda d: route(d)["route"].update(retry_policy={"num_retries": "3"}),
        f"{ROUTE0}.route.retry_policy.num_retries: expected an integer, got the string '3'",
    ),
    (
        "int as fraction",
        lambda d: listener(d).update(max_connections=1.5),
        f"{L0}.max_connections: expected an integer, got the number 1.5",
    ),
    (
        "list as string",
        lambda d: d["servers"][0]["routers"][0]["virtual_hosts"][0].update(domains="*"),
        f"{R0}.virtual_hosts[0].domains: expected a list, got the string '*'",
    ),
    (
        "item of a list",
        lambda d: d["servers"][0]["routers"][0]["virtual_hosts"][0].update(domains=["*", 7]),
        f"{R0}.virtual_hosts[0].domains[1]: expected a string, got the number 7",
    ),
    (
        "mapping as list",
        lambda d: d.update(cluster_manager=[]),
        "cluster_manager: expected a mapping, got a list",
    ),
    (
        "filter config not a mapping",
        lambda d: listener(d).update(stream_filters=[{"type": "fault", "config": "abort"}]),
        f"{L0}.stream_filters[0].config: expected a mapping, got the string 'abort'",
    ),
    (
        "required value null",
        lambda d: cluster(d).update(name=None),
        f"{C0}.name: expected a string, got null",
    ),
    ("missing key", lambda d: cluster(d).pop("name"), f"{C0}: missing required key 'name'"),
    (
        "missing key in MOSN header form",
        lambda d: route(d, 1)["route"]["request_headers_to_add"][0]["header"].pop("key"),
        f"{ROUTE1}.route.request_headers_to_add[0].header: missing required key 'key'",
    ),
    # durations
    (
        "duration without unit",
        lambda d: route(d)["route"].update(timeout="3"),
        f"{ROUTE0}.route.timeout: invalid duration '3' (missing unit: write '3s', or the number 3 unquoted "
        "for seconds); expected Go duration syntax such as '2s', '500ms', '1m30s', '1.5s', '100us' or '0'",
    ),
    # addresses and ports
    (
        "listener address without port",
        lambda d: listener(d).update(address="0.0.0.0"),
        f"{L0}.address: expected 'host:port', got '0.0.0.0'",
    ),
    (
        "listener port out of range",
        lambda d: listener(d).update(address="0.0.0.0:70000"),
        f"{L0}.address: port must be 0..65535, got 70000",
    ),
    (
        "listener port not a number",
        lambda d: listener(d).update(address="0.0.0.0:http"),
        f"{L0}.address: port must be a number, got 'http' in '0.0.0.0:http'",
    ),
    (
        "ipv6 without brackets",
        lambda d: listener(d).update(address="::1:80"),
        f"{L0}.address: an IPv6 address needs brackets, as in '[::1]:80', got '::1:80'",
    ),
    (
        "unix listener without path",
        lambda d: listener(d).update(network="unix", address=""),
        f"{L0}.address: a unix listener needs a socket path",
    ),
    (
        "unknown network",
        lambda d: listener(d).update(network="udp"),
        f"{L0}.network: network 'udp' is not supported (supported: tcp, tcp4, tcp6, unix)",
    ),
    (
        "max_connections",
        lambda d: listener(d).update(max_connections=-1),
        f"{L0}.max_connections: must be >= 0, got -1",
    ),
    (
        "host without port",
        lambda d: cluster(d).update(hosts=[{"address": "backend"}]),
        f"{C0}.hosts[0].address: expected 'host:port', got 'backend'",
    ),
    (
        "host port 0",
        lambda d: cluster(d).update(hosts=[{"address": "backend:0"}]),
        f"{C0}.hosts[0].address: port must be 1..65535, got 0",
    ),
    (
        "host weight",
        lambda d: cluster(d).update(hosts=[{"address": "backend:80", "weight": 0}]),
        f"{C0}.hosts[0].weight: must be >= 1, got 0",
    ),
    (
        "admin port",
        lambda d: d["admin"]["address"]["socket_address"].update(port_value=70000),
        "admin.address.socket_address.port_value: port must be 0..65535, got 70000",
    ),
    (
        "flat admin address",
        lambda d: d.update(admin={"address": "localhost"}),
        "admin.address: expected 'host:port', got 'localhost'",
    ),
    # routes
    (
        "route and direct response",
        lambda d: route(d).update(direct_response={"status": 200}),
        f"{ROUTE0}: needs exactly one of 'route', 'direct_response', 'redirect' "
        "(found: 'route', 'direct_response')",
    ),
    (
        "no action",
        lambda d: route(d).pop("route"),
        f"{ROUTE0}: needs exactly one of 'route', 'direct_response', 'redirect' (found: none)",
    ),
    (
        "two path matchers",
        lambda d: route(d)["match"].update(path="/x"),
        f"{ROUTE0}.match: give at most one of 'prefix', 'path', 'regex' (found: prefix, path)",
    ),
    (
        "bad path regex",
        lambda d: route(d).update(match={"regex": "("}),
        f"{ROUTE0}.match.regex: invalid regex '(': missing ), unterminated subpattern at position 0",
    ),
    (
        "bad header regex",
        lambda d: route(d, 1)["match"]["headers"][0].update(value="[a-"),
        f"{ROUTE1}.match.headers[0].value: invalid regex '[a-': unterminated character set at position 0",
    ),
    (
        "no target",
        lambda d: route(d)["route"].pop("cluster_name"),
        f"{ROUTE0}.route: needs 'cluster_name' or 'weighted_clusters'",
    ),
    (
        "zero weight",
        lambda d: route(d, 1)["route"]["weighted_clusters"][1]["cluster"].update(weight=0),
        f"{ROUTE1}.route.weighted_clusters[1].cluster.weight: must be >= 1, got 0",
    ),
    (
        "retry status code",
        lambda d: route(d)["route"].update(retry_policy={"status_codes": [503, 99]}),
        f"{ROUTE0}.route.retry_policy.status_codes[1]: not an HTTP status: 99",
    ),
    (
        "direct response status",
        lambda d: route(d).update(route=None, direct_response={"status": 1000}),
        f"{ROUTE0}.direct_response.status: not an HTTP status: 1000",
    ),
    (
        "redirect code",
        lambda d: route(d).update(route=None, redirect={"response_code": 200}),
        f"{ROUTE0}.redirect.response_code: expected one of 301, 302, 303, 307, 308, got 200",
    ),
    # proxy filter
    (
        "legacy X without sub_protocol",
        lambda d: proxy(d).update(downstream_protocol="X"),
        f"{PROXY}.downstream_protocol: the legacy protocol 'X' needs a protocol name in "
        "extend_config.sub_protocol",
    ),
    (
        "empty protocol in list",
        lambda d: proxy(d).update(downstream_protocol="Http1,"),
        f"{PROXY}.downstream_protocol: empty protocol name in 'Http1,'",
    ),
    # references between sections
    (
        "unknown cluster",
        lambda d: route(d)["route"].update(cluster_name="c"),
        f"{ROUTE0}.route.cluster_name: unknown cluster 'c' (known: a, b)",
    ),
    (
        "unknown weighted cluster",
        lambda d: route(d, 1)["route"]["weighted_clusters"][1]["cluster"].update(name="c"),
        f"{ROUTE1}.route.weighted_clusters[1]: unknown cluster 'c' (known: a, b)",
    ),
    (
        "unknown router config",
        lambda d: proxy(d).update(router_config_name="nope"),
        f"{PROXY}.router_config_name: unknown router config 'nope' (known: r)",
    ),
    (
        "duplicate listener",
        lambda d: d["servers"][0]["listeners"].append(dict(listener(d))),
        "servers[0].listeners[1].name: duplicate listener name 'l' (first at servers[0].listeners[0].name)",
    ),
    (
        "duplicate cluster",
        lambda d: d["cluster_manager"]["clusters"].append({"name": "a"}),
        "cluster_manager.clusters[2].name: duplicate cluster name 'a' "
        "(first at cluster_manager.clusters[0].name)",
    ),
    (
        "duplicate router config",
        lambda d: d["servers"].append({"routers": [{"router_config_name": "r"}]}),
        "servers[1].routers[0].router_config_name: duplicate router config name 'r' "
        f"(first at {R0}.router_config_name)",
    ),
    (
        "duplicate domain",
        lambda d: d["servers"][0]["routers"][0]["virtual_hosts"].append(
            {"name": "h2", "domains": ["x", "*"]}
        ),
        f"{R0}.virtual_hosts[1].domains[1]: domain '*' is already used by virtual_hosts[0]",
    ),
    # misc
    (
        "log level",
        lambda d: d["servers"][0].update(default_log_level="LOUD"),
        "servers[0].default_log_level: unknown log level 'LOUD' "
        "(known: FATAL, ERROR, WARN, INFO, DEBUG, TRACE)",
    ),
    (
        "alias given twice",
        lambda d: cluster(d).update(lb_config={}, lbconfig={}),
        f"{C0}.lbconfig: same setting as 'lb_config' (an alias); give only one",
    ),
    (
        "huge integer",
        lambda d: listener(d).update(max_connections=-(10**5000)),
        f"{L0}.max_connections: integer out of range (64 bits at most), got a number of about 5001 digits",
    ),
    (
        "non-string key",
        lambda d: cast(dict[Any, Any], d).update({1: 2}),
        "<root>: keys must be strings, got the number 1",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_the_exact_path(mutate: Callable[[Doc], object], expected: str) -> None:
    doc = base()
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert str(info.value) == expected
    assert len(info.value.errors) == 1
    assert f"{info.value.path}: {info.value.problem}" == expected


def test_root_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config([])  # type: ignore[arg-type]
    assert str(info.value) == "<root>: expected a mapping, got a list"


def test_several_errors_are_collected() -> None:
    doc = base()
    listener(doc).update(adress="x", bind_port="yes")
    cluster(doc, 1).update(hosts=[{"address": "nope"}])
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    error = info.value
    assert [e.path for e in error.errors] == [
        f"{L0}.adress",
        f"{L0}.bind_port",
        "cluster_manager.clusters[1].hosts[0].address",
    ]
    assert str(error) == "\n".join(f"{e.path}: {e.problem}" for e in error.errors)
    assert (error.path, error.problem) == (error.errors[0].path, error.errors[0].problem)
    assert "+2 more" in repr(error)


def test_reference_errors_are_collected_together() -> None:
    doc = base()
    route(doc)["route"].update(cluster_name="c")
    proxy(doc).update(router_config_name="nope")
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert [e.path for e in info.value.errors] == [
        f"{ROUTE0}.route.cluster_name",
        f"{PROXY}.router_config_name",
    ]


def test_config_error_single_form() -> None:
    error = ConfigError("a.b[0]", "broken")
    assert (error.path, error.problem, str(error), error.errors) == (
        "a.b[0]",
        "broken",
        "a.b[0]: broken",
        (error,),
    )
    assert ConfigError.group([error]) is error
    with pytest.raises(ValueError):
        ConfigError.group([])
