"""The ``tcp_proxy`` filter's config: MOSN's spellings, route matching, errors by path,
and read filters placed before it."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel

from mosnpy import MosnServer
from mosnpy.config import ConfigError, parse_config
from mosnpy.net.connection import Connection
from mosnpy.net.filter import FilterStatus
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.registry import NETWORK_FILTERS
from mosnpy.proxy.tcp_proxy import TcpProxyFilterFactory, TcpRoute, create_tcp_proxy_factory
from mosnpy.upstream.cluster import ClusterManager

pytestmark = pytest.mark.timeout(30)

FILTER = "servers[0].listeners[0].filter_chains[0].filters[0].config"


class _Build:
    """The slice of the runtime's build context the filter reads."""

    def __init__(self, *names: str) -> None:
        self.clusters = ClusterManager.from_configs(parse_config(_doc({}, names)).cluster_manager.clusters)


def _doc(tcp: Mapping[str, Any], clusters: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {
        "servers": [
            {
                "graceful_timeout": "1s",
                "listeners": [
                    {
                        "name": "tcp",
                        "address": "127.0.0.1:0",
                        "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": dict(tcp)}]}],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [{"name": n, "hosts": [{"address": "127.0.0.1:1"}]} for n in clusters]
        },
    }


def factory(config: Mapping[str, Any]) -> TcpProxyFilterFactory:
    return create_tcp_proxy_factory(config, _Build("a", "b"))  # type: ignore[arg-type]


def errors_of(tcp: Mapping[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        MosnServer(parse_config(_doc(tcp)))
    return [f"{e.path}: {e.problem}" for e in info.value.errors]


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# --------------------------------------------------------------------------- parsing


def test_mosn_v16_spelling() -> None:
    f = factory(
        {
            "stat_prefix": "tcp_proxy",
            "cluster": "a",
            "max_connect_attempts": 3,
            "idle_timeout": "1m30s",
            "routes": [
                {
                    "Cluster": "b",
                    "SourceAddrs": [{"address": "10.1.2.3", "length": 8}],
                    "DestinationAddrs": [{"Address": "::1", "Length": 128}],
                    "SourcePort": "8080",
                    "DestinationPort": "80,443,9000-9100",
                }
            ],
        }
    )
    assert f.max_connect_attempts == 3 and f.idle_timeout == 90.0
    (route,) = f.routes
    assert route.cluster == "b"
    assert route.source_addrs.entries == ((net("10.0.0.0/8"), None),)
    assert route.destination_addrs.entries == ((net("::1/128"), None),)
    assert route.source_ports == ((8080, 8080),)
    assert route.destination_ports == ((80, 80), (443, 443), (9000, 9100))


def test_string_addresses_and_defaults() -> None:
    f = factory(
        {
            "routes": [
                {
                    "cluster": "a",
                    "source_addrs": ["10.0.0.0/8", "192.168.1.7", "127.0.0.1:8080", "[::1]:80"],
                    "destination_port": 3306,
                }
            ]
        }
    )
    assert f.max_connect_attempts == 1 and f.idle_timeout is None and f.config.cluster == ""
    (route,) = f.routes
    assert route.source_addrs.entries == (
        (net("10.0.0.0/8"), None),
        (net("192.168.1.7/32"), None),
        (net("127.0.0.1/32"), (8080, 8080)),
        (net("::1/128"), (80, 80)),
    )
    assert route.destination_ports == ((3306, 3306),)


def test_numbers_are_seconds() -> None:
    assert factory({"cluster": "a", "idle_timeout": 2.5}).idle_timeout == 2.5


@pytest.mark.parametrize(
    ("tcp", "expected"),
    [
        ({}, [f"{FILTER}: tcp_proxy needs a cluster or routes"]),
        ({"cluster": "nope"}, [f"{FILTER}.cluster: unknown cluster 'nope' (known: a, b)"]),
        (
            {"routes": [{"cluster": "a", "source_addrs": ["10.0.0.300/8"]}]},
            [
                f"{FILTER}.routes[0].source_addrs[0]: '10.0.0.300/8' does not appear to be an IPv4 or IPv6 network"
            ],
        ),
        (
            {"routes": [{"cluster": "a", "SourceAddrs": ["example.com"]}]},
            [
                f"{FILTER}.routes[0].source_addrs[0]: 'example.com' is not an IP address, a CIDR range or ip:port"
            ],
        ),
        (
            {"routes": [{"cluster": "a", "DestinationPort": "80-70"}]},
            [
                f"{FILTER}.routes[0].destination_port: bad port range '80-70': ports go from 1 to 65535, low to high"
            ],
        ),
        (
            {"routes": [{"cluster": "a", "source_port": "http"}]},
            [f"{FILTER}.routes[0].source_port: bad port 'http': want a port or a range like 8000-8100"],
        ),
        (
            {"routes": [{"cluster": ""}, {"cluster": "c"}]},
            [
                f"{FILTER}.routes[0].cluster: a route needs a cluster",
                f"{FILTER}.routes[1].cluster: unknown cluster 'c' (known: a, b)",
            ],
        ),
        (
            {"routes": [{"cluster": "a", "SourceAddrs": [], "source_addrs": []}]},
            [f"{FILTER}.routes[0].source_addrs: same setting as 'SourceAddrs'; give only one"],
        ),
        (
            {"cluster": "a", "max_connect_attempts": -1},
            [f"{FILTER}.max_connect_attempts: must not be negative"],
        ),
        ({"cluster": "a", "idle_timeout": "soon"}, [f"{FILTER}.idle_timeout: "]),
        (
            {"cluster": "a", "clusterr": "b"},
            [f"{FILTER}.clusterr: unknown key 'clusterr' (did you mean 'cluster'?)"],
        ),
    ],
)
def test_errors_name_their_path(tcp: Mapping[str, Any], expected: list[str]) -> None:
    got = errors_of(tcp)
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(want), line


# --------------------------------------------------------------------------- matching


def test_routes_in_order_then_the_default() -> None:
    f = factory(
        {
            "cluster": "a",
            "routes": [
                {"cluster": "b", "source_addrs": ["10.0.0.0/8"], "destination_port": "443"},
                {"cluster": "a", "destination_addrs": ["127.0.0.1:9000"]},
                {"cluster": "b", "source_port": "50000-50010"},
            ],
        }
    )
    assert f.cluster_for("10.9.9.9:1234", "127.0.0.1:443") == "b"
    assert f.cluster_for("10.9.9.9:1234", "127.0.0.1:444") == "a"  # the default
    assert f.cluster_for("11.0.0.1:1234", "127.0.0.1:443") == "a"
    assert f.cluster_for("11.0.0.1:50005", "127.0.0.1:9000") == "a"  # second route first
    assert f.cluster_for("11.0.0.1:50005", "127.0.0.1:9001") == "b"
    # IPv4-mapped IPv6 peers (a dual-stack listener) match IPv4 ranges
    assert f.cluster_for("[::ffff:10.1.1.1]:1234", "[::ffff:127.0.0.1]:443") == "b"
    # a unix socket has no address: only criterion-free routes match it
    assert f.cluster_for("", "/tmp/sock") == "a"


def test_no_default_means_no_cluster() -> None:
    f = factory({"routes": [{"cluster": "b", "source_addrs": ["10.0.0.0/8"]}]})
    assert f.cluster_for("127.0.0.1:1", "127.0.0.1:2") == ""


def test_a_route_without_criteria_matches_everything() -> None:
    route = TcpRoute.parse(factory({"routes": [{"cluster": "a"}]}).config.routes[0], "r")
    assert route.matches(None, None)


# --------------------------------------------------------------------------- filters before it


class Rot13Filter:
    """A read filter that rewrites the bytes in place and counts what it saw."""

    seen = 0

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        Rot13Filter.seen += len(buffer)
        buffer[:] = bytes(buffer).translate(_ROT13)
        return FilterStatus.CONTINUE


_ROT13 = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"nopqrstuvwxyzabcdefghijklm")


class Rot13Factory:
    def __init__(self, config: Mapping[str, Any], build: object) -> None:
        pass

    def create_filter_chain(self, manager: FilterManager) -> None:
        manager.add_read_filter(Rot13Filter())


@pytest.fixture
def rot13() -> Iterator[None]:
    NETWORK_FILTERS.register("test_rot13", Rot13Factory)
    Rot13Filter.seen = 0
    try:
        yield
    finally:
        NETWORK_FILTERS.unregister("test_rot13")


@asynccontextmanager
async def echo_backend(accepted: list[int]) -> AsyncIterator[int]:
    async def echo(stream: trio.SocketStream) -> None:
        accepted.append(1)
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
            await stream.send_eof()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        try:
            yield int(listeners[0].socket.getsockname()[1])
        finally:
            nursery.cancel_scope.cancel()


async def test_filters_before_it_see_every_chunk(rot13: None) -> None:
    accepted: list[int] = []
    async with echo_backend(accepted) as port:
        doc = _doc({"cluster": "a"}, ("a",))
        doc["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{port}"}]
        chain = doc["servers"][0]["listeners"][0]["filter_chains"][0]["filters"]
        chain.insert(0, {"type": "test_rot13", "config": {}})
        server = MosnServer(parse_config(doc))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            client = await trio.open_tcp_stream("127.0.0.1", server.listener("tcp").port)
            async with client:
                # behind another filter it connects when bytes first reach it
                await trio.sleep(0.2)
                assert accepted == []
                text = b"hello tcp proxy " * 20_000
                got = bytearray()

                async def send() -> None:
                    for i in range(0, len(text), 30_000):
                        await client.send_all(text[i : i + 30_000])
                        await trio.lowlevel.checkpoint()
                    await client.send_eof()

                nursery.start_soon(send)
                with trio.fail_after(10):
                    while data := await client.receive_some(65536):
                        got += data
            assert bytes(got) == text.translate(_ROT13)
            assert Rot13Filter.seen == len(text)
            assert accepted == [1]
            server.shutdown()
