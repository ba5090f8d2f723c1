"""``filter_chain_match`` in the config: its keys, its checks, its dump, and what the
builder makes of a listener with several matched chains."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from mosnpy.config import CidrRangeConfig, ConfigError, FilterChainMatchConfig, parse_config
from mosnpy.config.dump import dump_config
from mosnpy.net.filterchain import FilterChainMatch
from mosnpy.proxy.factory import ProxyFilterFactory
from mosnpy.runtime.builder import build

pytestmark = pytest.mark.timeout(30)

L0 = "servers[0].listeners[0]"
IGNORED = "not supported by mosnpy yet; ignored"


def proxy(router: str = "r") -> dict[str, Any]:
    return {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": router}}


def doc(*chains: dict[str, Any]) -> dict[str, Any]:
    """One listener with ``chains`` (each gets a proxy filter unless it has filters)."""
    routers = [
        {
            "router_config_name": name,
            "virtual_hosts": [
                {"name": "h", "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": name}}]}
            ],
        }
        for name in ("r", "s")
    ]
    return {
        "servers": [
            {
                "routers": routers,
                "listeners": [
                    {
                        "name": "l",
                        "address": "127.0.0.1:0",
                        "filter_chains": [{"filters": [proxy()]} | chain for chain in chains],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {"name": "r", "hosts": [{"address": "127.0.0.1:1"}]},
                {"name": "s", "hosts": [{"address": "127.0.0.1:2"}]},
            ]
        },
    }


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return [f"{e.path}: {e.problem}" for e in info.value.errors]


def test_every_key_loads_in_mosn_and_envoy_spellings() -> None:
    match = {
        "destination_port": 443,
        "prefix_ranges": ["10.0.0.0/8", {"address_prefix": "fd00::", "prefix_len": 8}],
        "Server_Names": ["a.test", "*.example.com"],
        "transport_protocol": "tls",
        "application_protocols": ["h2", "http/1.1"],
        "source_prefix_ranges": [{"address_prefix": "192.168.0.0", "prefix_len": 16}],
        "source_ports": [5000],
    }
    warnings: list[str] = []
    config = parse_config(doc({"filter_chain_match": match}), warnings=warnings)
    assert warnings == []
    got = config.servers[0].listeners[0].filter_chains[0].filter_chain_match
    assert got == FilterChainMatchConfig(
        destination_port=443,
        prefix_ranges=["10.0.0.0/8", CidrRangeConfig(address_prefix="fd00::", prefix_len=8)],
        server_names=["a.test", "*.example.com"],
        transport_protocol="tls",
        application_protocols=["h2", "http/1.1"],
        source_prefix_ranges=[CidrRangeConfig(address_prefix="192.168.0.0", prefix_len=16)],
        source_ports=[5000],
    )


def test_the_dump_round_trips_filter_chain_match() -> None:
    data = doc(
        {"filter_chain_match": {"server_names": ["a.test"], "prefix_ranges": ["10.0.0.0/8"]}},
        {"filter_chain_match": {"source_prefix_ranges": [{"address_prefix": "10.0.0.0"}]}},
        {},
    )
    config = parse_config(data)
    dumped = dump_config(config)
    chains = dumped["servers"][0]["listeners"][0]["filter_chains"]
    assert chains[0]["filter_chain_match"]["server_names"] == ["a.test"]
    assert chains[1]["filter_chain_match"]["source_prefix_ranges"] == [
        {"address_prefix": "10.0.0.0", "prefix_len": 0}
    ]
    assert "filter_chain_match" not in chains[2]
    assert parse_config(json.loads(json.dumps(dumped))) == config


@pytest.mark.parametrize(
    ("match", "want"),
    [
        (
            {"server_name": ["a.test"]},
            "filter_chain_match.server_name: unknown key 'server_name' (did you mean 'server_names'?)",
        ),
        (
            {"sni": "a.test"},
            "filter_chain_match.sni: unknown key 'sni' (known: application_protocols, destination_port, "
            "prefix_ranges, server_names, source_ports, source_prefix_ranges, transport_protocol)",
        ),
        (
            {"source_type": "EXTERNAL"},
            "filter_chain_match.source_type: unknown key 'source_type' "
            "(not supported by mosnpy: a filter chain cannot match on it)",
        ),
        (
            {"prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_length": 8}]},
            "filter_chain_match.prefix_ranges[0].prefix_length: unknown key 'prefix_length' "
            "(did you mean 'prefix_len'?)",
        ),
        (
            {"server_names": "a.test"},
            "filter_chain_match.server_names: expected a list, got the string 'a.test'",
        ),
        (
            {"destination_port": "443"},
            "filter_chain_match.destination_port: expected an integer, got the string '443'",
        ),
        (
            {"destination_port": 70000},
            "filter_chain_match.destination_port: port must be 1..65535, got 70000",
        ),
        ({"source_ports": [0]}, "filter_chain_match.source_ports[0]: port must be 1..65535, got 0"),
        (
            {"transport_protocol": "TLS"},
            "filter_chain_match.transport_protocol: expected one of 'tls', 'raw_buffer', got 'TLS'",
        ),
        (
            {"server_names": ["a.*.test"]},
            "filter_chain_match.server_names[0]: expected a host name or a wildcard like '*.example.com', got 'a.*.test'",
        ),
        ({"application_protocols": [""]}, "filter_chain_match.application_protocols[0]: must not be empty"),
        (
            {"source_prefix_ranges": ["10.0.0.0/33"]},
            "filter_chain_match.source_prefix_ranges[0]: not an IP network like '10.0.0.0/8': "
            "'10.0.0.0/33' does not appear to be an IPv4 or IPv6 network",
        ),
        (
            {"prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 40}]},
            "filter_chain_match.prefix_ranges[0]: not an IP network: "
            "'10.0.0.0/40' does not appear to be an IPv4 or IPv6 network",
        ),
    ],
)
def test_bad_filter_chain_match_is_an_error_with_its_path(match: dict[str, Any], want: str) -> None:
    assert errors_of(doc({"filter_chain_match": match})) == [f"{L0}.filter_chains[0].{want}"]


def test_chains_matching_the_same_connections_are_refused() -> None:
    data = doc(
        {"filter_chain_match": {"server_names": ["a.test", "b.test"]}},
        {"filter_chain_match": {"server_names": ["B.TEST"]}},  # overlaps on b.test
        {"filter_chain_match": {"server_names": ["b.test"], "transport_protocol": "tls"}},  # more specific
        {},
        {"filter_chain_match": {}},  # a second catch-all
    )
    assert errors_of(data) == [
        f"{L0}.filter_chains[1].filter_chain_match: matches the same connections as filter_chains[0] "
        "(give each chain a filter_chain_match of its own)",
        f"{L0}.filter_chains[4].filter_chain_match: matches the same connections as filter_chains[3] "
        "(give each chain a filter_chain_match of its own)",
    ]


def test_several_chains_without_any_match_stay_one_chain_as_in_mosn() -> None:
    config = parse_config(doc({}, {"filters": [proxy("s")]}))
    _, (listener,) = build(config)
    assert listener.filter_chains is None
    assert len(listener.filter_factories) == 2


def test_mosns_own_match_string_is_still_only_warned_about() -> None:
    warnings: list[str] = []
    parse_config(doc({"match": "anything"}), warnings=warnings)
    assert warnings == [f"{L0}.filter_chains[0].match: {IGNORED}"]


def test_the_builder_keeps_each_matched_chain_apart() -> None:
    data = doc(
        {"filter_chain_match": {"server_names": ["a.test"]}},
        {"filter_chain_match": {"transport_protocol": "raw_buffer"}, "filters": [proxy("s")]},
    )
    _, (listener,) = build(parse_config(data))
    chains = listener.filter_chains
    assert chains is not None and len(chains) == 2
    first, second = chains
    assert first.match == FilterChainMatch(server_names=frozenset({"a.test"}))
    assert (first.name, second.name) == ("filter_chains[0]", "filter_chains[1]")
    assert chains.needs_client_hello and not chains.needs_destination
    proxies = [f for c in chains for f in c.factories]
    assert all(isinstance(f, ProxyFilterFactory) for f in proxies)
    a, b = proxies
    assert isinstance(a, ProxyFilterFactory) and isinstance(b, ProxyFilterFactory)
    assert a.ctx.routes is not None and b.ctx.routes is not None
    assert (a.ctx.routes.name, b.ctx.routes.name) == ("r", "s")  # each chain its own routes
    assert a.ctx.stats is b.ctx.stats  # the listener's counters count both chains
    assert listener.filter_factories == [a, b]


def test_a_matched_chain_needs_a_filter_and_each_chain_reports_its_own_tls_problem() -> None:
    data = doc(
        {"filter_chain_match": {"server_names": ["a.test"]}, "filters": []},
        {"filter_chain_match": {"server_names": ["b.test"]}, "tls_context": {"status": True}},
    )
    with pytest.raises(ConfigError) as info:
        build(parse_config(data))
    assert [f"{e.path}: {e.problem}" for e in info.value.errors] == [
        f"{L0}.filter_chains[0].filters: a filter chain needs a network filter"
    ]
    fixed = copy.deepcopy(data)
    fixed["servers"][0]["listeners"][0]["filter_chains"][0]["filters"] = [proxy()]
    with pytest.raises(ConfigError) as info:
        build(parse_config(fixed))
    assert [e.path for e in info.value.errors] == [f"{L0}.filter_chains[1].tls_context"]
