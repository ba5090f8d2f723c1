"""``config_dump``: the models back to MOSN's JSON, and the exact round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mosnpy.config import MosnConfig, load_config, parse_config
from mosnpy.config.dump import dump_config, dump_section

DATA = Path(__file__).with_name("data")


def rich_config() -> dict[str, Any]:
    """A MOSN config using most of what the models hold, in MOSN's spellings."""
    return {
        "servers": [
            {
                "default_log_path": "stdout",
                "default_log_level": "WARN",
                "graceful_timeout": "1m30s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "request_headers_to_add": [{"header": {"key": "x-r", "value": "1"}, "append": True}],
                        "virtual_hosts": [
                            {
                                "name": "h",
                                "domains": ["example.com", "*.example.org"],
                                "routers": [
                                    {
                                        "match": {"path": "/health"},
                                        "direct_response": {"status": 200, "body": "ok"},
                                    },
                                    {
                                        "match": {"prefix": "/old"},
                                        "redirect": {"response_code": 302, "path_redirect": "/new"},
                                    },
                                    {
                                        "match": {
                                            "prefix": "/api",
                                            "headers": [{"name": "x-v", "value": "^2.*", "regex": True}],
                                        },
                                        "route": {
                                            "weighted_clusters": [
                                                {"cluster": {"name": "a", "weight": 30}},
                                                {"cluster": {"name": "b", "weight": 70}},
                                            ],
                                            "timeout": "2.5s",
                                            "retry_policy": {
                                                "retry_on": True,
                                                "retry_timeout": "500ms",
                                                "num_retries": 2,
                                                "status_codes": [502, 503],
                                            },
                                            "response_headers_to_add": [
                                                {"header": {"key": "x-out", "value": "y"}, "append": False}
                                            ],
                                        },
                                    },
                                    {
                                        "match": {"prefix": "/"},
                                        "route": {"cluster_name": "a", "prefix_rewrite": "/v1/"},
                                    },
                                ],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "http",
                        "address": "127.0.0.1:2045",
                        "bind_port": True,
                        "connection_idle_timeout": "45s",
                        "max_connections": 100,
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {
                                            "downstream_protocol": "Http1",
                                            "router_config_name": "r",
                                            "extend_config": {"Http1": {"max_header_size": 16384}},
                                        },
                                    }
                                ]
                            }
                        ],
                        "stream_filters": [
                            {"type": "fault", "config": {"abort": {"status": 503, "percentage": 0}}}
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "a",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "connect_timeout": "250ms",
                    "idle_timeout": "1m",
                    "circuit_breakers": [{"max_connections": 10, "max_requests": 50, "max_retries": 3}],
                    "health_check": {
                        "protocol": "Http1",
                        "timeout": "1s",
                        "interval": "2s",
                        "check_config": {"http_check_config": {"port": 8080, "path": "/health"}},
                    },
                    "hosts": [{"address": "127.0.0.1:8080", "weight": 2, "metadata": {"zone": "z1"}}],
                },
                {
                    "name": "b",
                    "lb_type": "LB_RANDOM",
                    "hosts": [{"address": "127.0.0.1:8081", "hostname": "b1"}],
                },
            ]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}},
    }


def round_trip(config: MosnConfig) -> MosnConfig:
    """Dump, through JSON text as the admin API serves it, and load again."""
    return parse_config(json.loads(json.dumps(dump_config(config))))


def test_a_rich_config_round_trips_exactly() -> None:
    config = parse_config(rich_config())
    assert round_trip(config) == config


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.name)
def test_the_example_configs_round_trip(path: Path) -> None:
    config = load_config(path)
    assert round_trip(config) == config


def test_the_dump_is_in_mosn_spellings() -> None:
    dump = dump_config(parse_config(rich_config()))
    server = dump["servers"][0]
    assert server["graceful_timeout"] == "1m30s"
    assert dump["admin"] == {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}}
    route = server["routers"][0]["virtual_hosts"][0]["routers"][2]["route"]
    assert route["weighted_clusters"] == [
        {"cluster": {"name": "a", "weight": 30}},
        {"cluster": {"name": "b", "weight": 70}},
    ]
    assert route["timeout"] == "2.5s"
    assert route["retry_policy"]["retry_timeout"] == "500ms"
    assert route["response_headers_to_add"] == [{"header": {"key": "x-out", "value": "y"}, "append": False}]
    listener = server["listeners"][0]
    assert listener["connection_idle_timeout"] == "45s"
    # plugin configs are the mappings the file had
    assert listener["filter_chains"][0]["filters"][0]["config"]["extend_config"] == {
        "Http1": {"max_header_size": 16384}
    }
    cluster = dump["cluster_manager"]["clusters"][0]
    assert cluster["connect_timeout"] == "250ms"
    assert cluster["idle_timeout"] == "1m0s"
    assert cluster["health_check"]["interval"] == "2s"
    assert "redirect" not in server["routers"][0]["virtual_hosts"][0]["routers"][0]  # unset: left out


def test_an_ipv6_admin_address_round_trips() -> None:
    config = parse_config({"admin": {"address": {"socket_address": {"address": "::1", "port_value": 9}}}})
    assert dump_config(config)["admin"]["address"]["socket_address"] == {"address": "::1", "port_value": 9}
    assert round_trip(config) == config


def test_sections_by_mosn_query() -> None:
    config = parse_config(rich_config())
    assert sorted(dump_section(config, "allclusters") or {}) == ["a", "b"]
    assert sorted(dump_section(config, "alllisteners") or {}) == ["http"]
    assert sorted(dump_section(config, "allrouters") or {}) == ["r"]
    cluster = dump_section(config, "cluster=b")
    assert cluster is not None and cluster["lb_type"] == "LB_RANDOM"
    assert dump_section(config, "cluster=nope") is None
    base = dump_section(config, "mosnconfig")
    assert base is not None and "cluster_manager" not in base
    assert "listeners" not in base["servers"][0] and base["servers"][0]["graceful_timeout"] == "1m30s"
    assert dump_section(config, "bogus") is None
