"""MOSN's spellings, ignored-but-known keys, and ``structure`` for plugin configs."""

from __future__ import annotations

import enum
from typing import Literal

import attrs
import pytest

from mosnpy.config import (
    DURATION_METADATA,
    UNSUPPORTED_KEYS,
    AdminConfig,
    ConfigError,
    HeaderValueConfig,
    ProxyConfig,
    RouteActionConfig,
    WeightedClusterConfig,
    parse_config,
    parse_proxy_config,
    structure,
)

IGNORED = "not supported by mosnpy yet; ignored"


@pytest.mark.parametrize(
    ("data", "address"),
    [
        ({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}}, "127.0.0.1:34901"),
        ({"address": {"socket_address": {"address": "::1", "port_value": 80}}}, "[::1]:80"),
        ({"address": "0.0.0.0:9"}, "0.0.0.0:9"),
    ],
)
def test_admin_address_forms(data: dict[str, object], address: str) -> None:
    assert parse_config({"admin": data}).admin == AdminConfig(address=address)


@pytest.mark.parametrize(
    "data",
    [
        {"header": {"key": "x", "value": "y"}, "append": True},
        {"key": "x", "value": "y", "append": True},
    ],
)
def test_header_value_forms(data: dict[str, object]) -> None:
    assert structure(HeaderValueConfig, data) == HeaderValueConfig(key="x", value="y", append=True)


def test_header_value_append_defaults_to_false() -> None:
    assert structure(HeaderValueConfig, {"header": {"key": "x", "value": "y"}}).append is False


@pytest.mark.parametrize("data", [{"cluster": {"name": "v2", "weight": 10}}, {"name": "v2", "weight": 10}])
def test_weighted_cluster_forms(data: dict[str, object]) -> None:
    assert structure(WeightedClusterConfig, data) == WeightedClusterConfig(name="v2", weight=10)


def test_route_action_with_mosn_forms() -> None:
    action = structure(
        RouteActionConfig,
        {
            "weighted_clusters": [{"cluster": {"name": "a", "weight": 1}}],
            "response_headers_to_add": [{"header": {"key": "k", "value": "v"}}],
            "timeout": "1.5s",
            "retry_policy": {"retry_on": True, "retry_timeout": "100ms"},
        },
    )
    assert action.timeout == 1.5
    assert action.retry_policy is not None and action.retry_policy.retry_timeout == 0.1
    assert action.response_headers_to_add == (HeaderValueConfig(key="k", value="v"),)


def test_lbconfig_is_mosns_name_for_lb_config() -> None:
    config = parse_config({"cluster_manager": {"clusters": [{"name": "c", "lbconfig": {"choice_count": 3}}]}})
    assert config.cluster_manager.clusters[0].lb_config == {"choice_count": 3}


def test_null_means_default() -> None:
    config = parse_config(
        {"servers": [{"listeners": None, "graceful_timeout": None}], "cluster_manager": {"clusters": None}}
    )
    assert config.servers[0].listeners == ()
    assert config.servers[0].graceful_timeout == 30.0
    assert config.cluster_manager.clusters == ()


def test_integral_float_is_an_int() -> None:
    config = parse_config(
        {"servers": [{"listeners": [{"name": "l", "address": ":1", "max_connections": 10.0}]}]}
    )
    assert config.servers[0].listeners[0].max_connections == 10


def test_unsupported_keys_warn_with_full_paths() -> None:
    doc = {
        "tracing": {"enable": True},
        "disable_upgrade": True,
        "servers": [
            {
                "processor": 4,
                "listeners": [
                    {
                        "name": "l",
                        "address": "127.0.0.1:0",
                        "inspector": True,
                        "filter_chains": [
                            {
                                "tls_context": {},
                                "filters": [{"type": "proxy", "config": {"concurrency_num": 2}}],
                            }
                        ],
                    }
                ],
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "h",
                                "routers": [
                                    {
                                        "match": {"prefix": "/", "variables": []},
                                        "route": {"cluster_name": "c", "hash_policy": []},
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "tls_context": {},
            "clusters": [{"name": "c", "slow_start": {}, "hosts": [{"address": "h:1", "tls_disable": True}]}],
        },
    }
    warnings: list[str] = []
    parse_config(doc, warnings=warnings)
    vhost_route = "servers[0].routers[0].virtual_hosts[0].routers[0]"
    assert warnings == [
        f"tracing: {IGNORED}",
        f"disable_upgrade: {IGNORED}",
        f"servers[0].processor: {IGNORED}",
        f"servers[0].listeners[0].inspector: {IGNORED}",
        f"servers[0].listeners[0].filter_chains[0].filters[0].config.concurrency_num: {IGNORED}",
        f"{vhost_route}.match.variables: {IGNORED}",
        f"{vhost_route}.route.hash_policy: {IGNORED}",
        f"cluster_manager.tls_context: {IGNORED}",
        f"cluster_manager.clusters[0].slow_start: {IGNORED}",
        f"cluster_manager.clusters[0].hosts[0].tls_disable: {IGNORED}",
    ]


def test_warnings_are_returned_even_when_loading_fails() -> None:
    warnings: list[str] = []
    with pytest.raises(ConfigError):
        parse_config({"pprof": {}, "oops": 1}, warnings=warnings)
    assert warnings == [f"pprof: {IGNORED}"]


@pytest.mark.parametrize("cls", [pytest.param(cls, id=cls.__name__) for cls in UNSUPPORTED_KEYS])
def test_unsupported_keys_are_not_model_fields(cls: type) -> None:
    """A key that mosnpy implements must leave the table (or it would never warn)."""
    assert not UNSUPPORTED_KEYS[cls] & {f.name for f in attrs.fields(cls)}


# -- the proxy filter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "downstream", "upstream"),
    [
        ({"downstream_protocol": "X", "extend_config": {"sub_protocol": "dubbo"}}, "dubbo", "Auto"),
        (
            {
                "downstream_protocol": "Http1,X",
                "upstream_protocol": "X",
                "extend_config": {"sub_protocol": "bolt"},
            },
            "Http1,bolt",
            "bolt",
        ),
        ({"downstream_protocol": "Auto"}, "Auto", "Auto"),
        ({}, "Http1", "Auto"),
    ],
)
def test_parse_proxy_config(given: dict[str, object], downstream: str, upstream: str) -> None:
    parsed = parse_proxy_config(given, "p")
    assert (parsed.downstream_protocol, parsed.upstream_protocol) == (downstream, upstream)
    assert parsed.extend_config == given.get("extend_config", {})


def test_parse_proxy_config_errors_and_warnings() -> None:
    warnings: list[str] = []
    parsed = parse_proxy_config({"name": "p", "router_config_name": "r"}, "x.config", warnings=warnings)
    assert parsed == ProxyConfig(router_config_name="r")
    assert warnings == [f"x.config.name: {IGNORED}"]
    with pytest.raises(ConfigError) as info:
        parse_proxy_config({"fallback_for_unknown_protocol": "yes"}, "x.config")
    assert (
        str(info.value)
        == "x.config.fallback_for_unknown_protocol: expected true or false, got the string 'yes'"
    )


def test_proxy_config_is_checked_only_for_proxy_filters() -> None:
    doc = {
        "servers": [
            {
                "listeners": [
                    {
                        "name": "l",
                        "address": ":1",
                        "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"anything": 1}}]}],
                    }
                ]
            }
        ]
    }
    parse_config(doc)


# -- structure() for plugins' own config classes --------------------------------------


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@attrs.frozen(kw_only=True)
class Abort:
    status: int
    percentage: int = 100


@attrs.frozen(kw_only=True)
class FaultConfig:
    """What a fault-injection filter's factory might parse its ``config`` into."""

    delay: float = attrs.field(default=0.0, metadata={DURATION_METADATA: True})
    delay_percent: float = 0.0
    abort: Abort | None = None
    mode: Mode = Mode.FAST
    kind: Literal["http", "rpc"] = "http"
    tags: dict[str, int] = attrs.field(factory=dict)
    hosts: list[str] = attrs.field(factory=list)
    pair: tuple[str, int] = ("a", 1)
    percent: int = attrs.field(default=0, validator=attrs.validators.le(100))


FAULT_PATH = "servers[0].listeners[0].stream_filters[2].config"


def test_structure_plugin_config() -> None:
    fault = structure(
        FaultConfig,
        {
            "delay": "250ms",
            "delay_percent": 5,
            "abort": {"status": 503},
            "mode": "slow",
            "kind": "rpc",
            "tags": {"a": 1},
            "hosts": ["x"],
            "pair": ["b", 2],
        },
        FAULT_PATH,
    )
    assert fault == FaultConfig(
        delay=0.25,
        delay_percent=5.0,
        abort=Abort(status=503),
        mode=Mode.SLOW,
        kind="rpc",
        tags={"a": 1},
        hosts=["x"],
        pair=("b", 2),
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"delay": "soon"}, "delay: invalid duration 'soon'"),
        ({"delay_percent": "5"}, "delay_percent: expected a number, got the string '5'"),
        ({"delay_percent": "5s"}, "delay_percent: expected a number, got the string '5s'"),
        ({"abort": {}}, "abort: missing required key 'status'"),
        ({"abort": {"status": 503, "pct": 1}}, "abort.pct: unknown key 'pct' (known: percentage, status)"),
        ({"mode": "medium"}, "mode: expected one of 'fast', 'slow', got the string 'medium'"),
        ({"kind": "grpc"}, "kind: expected one of 'http', 'rpc', got the string 'grpc'"),
        ({"tags": {"a": "1"}}, "tags.a: expected an integer, got the string '1'"),
        ({"tags": []}, "tags: expected a mapping, got a list"),
        ({"hosts": "x"}, "hosts: expected a list, got the string 'x'"),
        ({"pair": ["b"]}, "pair: expected a list of 2 items, got 1"),
        ({"percent": 101}, ": 'percent' must be <= 100: 101"),
    ],
)
def test_structure_plugin_config_errors(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure(FaultConfig, data, FAULT_PATH)
    assert str(info.value).startswith(FAULT_PATH + ("" if expected.startswith(":") else ".") + expected)


def test_structure_without_path_uses_bare_keys() -> None:
    with pytest.raises(ConfigError) as info:
        structure(Abort, {"status": "x"})
    assert str(info.value) == "status: expected an integer, got the string 'x'"
