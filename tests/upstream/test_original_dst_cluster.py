"""The ORIGINAL_DST cluster type and LB_ORIGINAL_DST, alone and behind real listeners.

The servers here run in the test's trio loop on 127.0.0.1; a stand-in listener filter
plays the iptables redirect (it records an original destination as the ``original_dst``
filter would).  The real redirect runs in tests/e2e/test_sidecar.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import pytest
import trio

import mosnpy
from mosnpy.config import parse_config
from mosnpy.config.models import ClusterConfig, HostConfig
from mosnpy.net import AcceptedSocket, FilterStatus
from mosnpy.net.original_dst import ORIGINAL_DST, current_original_dst
from mosnpy.net.registry import LISTENER_FILTERS
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import NoHealthyHostError
from mosnpy.upstream.lb import LbContext
from mosnpy.upstream.original_dst import OriginalDst
from mosnpy.upstream.registry import CLUSTER_TYPES, LOAD_BALANCERS
from tests.support import start_py_backend

pytestmark = pytest.mark.timeout(30)

LOCALHOST = "127.0.0.1"


def passthrough(**extra: Any) -> ClusterConfig:
    return ClusterConfig(name="passthrough", type="ORIGINAL_DST", lb_type="LB_ORIGINAL_DST", **extra)


# --------------------------------------------------------------------------- the balancer


def test_the_host_is_the_original_destination() -> None:
    cluster = Cluster(passthrough())
    assert isinstance(cluster.lb, OriginalDst) and cluster.hosts == []
    a = cluster.choose_host(LbContext(original_destination="10.0.0.1:80"))
    assert a.address == "10.0.0.1:80"
    assert cluster.choose_host(LbContext(original_destination="10.0.0.1:80")) is a  # one host per destination
    b = cluster.choose_host(LbContext(original_destination="[fd00::2]:443"))
    assert b.address == "[fd00::2]:443" and b is not a
    assert cluster.lb.destinations == [a, b]
    assert tuple(cluster.lb.hosts) == ()  # nothing to pick instead (a retry goes to the same place)


def test_no_original_destination_is_no_host() -> None:
    cluster = Cluster(passthrough())
    for context in (None, LbContext(), LbContext(original_destination="not an address")):
        with pytest.raises(NoHealthyHostError, match="passthrough"):
            cluster.choose_host(context)


def test_the_connection_task_s_destination_serves_callers_without_one() -> None:
    lb = OriginalDst()
    token = current_original_dst.set("127.0.0.1:9000")
    try:
        host = lb.choose(LbContext(downstream_address="127.0.0.1:5555"))
        assert host is not None and host.address == "127.0.0.1:9000"
        assert lb.choose() is host
        explicit = lb.choose(LbContext(original_destination="127.0.0.1:9001"))
        assert explicit is not None and explicit.address == "127.0.0.1:9001"  # the context wins
    finally:
        current_original_dst.reset(token)
    assert lb.choose() is None


def test_idle_destinations_beyond_the_bound_are_forgotten() -> None:
    lb = OriginalDst()
    lb.max_hosts = 3
    busy = lb.choose(LbContext(original_destination="10.0.0.1:1"))
    assert busy is not None
    busy.active_requests = 1
    for i in range(2, 7):
        lb.choose(LbContext(original_destination=f"10.0.0.{i}:1"))
    assert [h.address for h in lb.destinations] == ["10.0.0.1:1", "10.0.0.5:1", "10.0.0.6:1"]


def test_config_mistakes_are_errors() -> None:
    with pytest.raises(ValueError, match="takes no hosts"):
        Cluster(passthrough(hosts=(HostConfig(address="127.0.0.1:1"),)))
    with pytest.raises(ValueError, match="needs lb_type LB_ORIGINAL_DST"):
        Cluster(ClusterConfig(name="c", type="ORIGINAL_DST"))
    doc = {"cluster_manager": {"clusters": [{"name": "c", "type": "ORIGINAL_DST", "lb_type": "LB_RANDOM"}]}}
    with pytest.raises(mosnpy.ConfigError) as info:
        mosnpy.MosnServer(parse_config(doc))
    assert info.value.path == "cluster_manager.clusters[0]"
    assert "LB_ORIGINAL_DST" in str(info.value)


def test_registered_through_entry_points() -> None:
    assert CLUSTER_TYPES.origin("ORIGINAL_DST") == "mosnpy"
    assert LOAD_BALANCERS.get("LB_ORIGINAL_DST") is OriginalDst


# --------------------------------------------------------------------------- behind listeners


class Redirected:
    """Listener filter ``test_redirect``: every connection was going to ``config["dst"]``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.dst = str(config["dst"])

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        accepted.values[ORIGINAL_DST] = self.dst
        accepted.local_address = self.dst
        return FilterStatus.CONTINUE


@pytest.fixture
def redirect_filter() -> Iterator[None]:
    LISTENER_FILTERS.register("test_redirect", Redirected)
    try:
        yield
    finally:
        LISTENER_FILTERS.unregister("test_redirect")


def sidecar(dst: str, virtual_address: str) -> dict[str, Any]:
    """``outbound`` (use_original_dst; its connections "were going to" ``dst``)
    tcp-proxies to ORIGINAL_DST; ``http_virtual`` (no socket, at ``virtual_address``)
    proxies HTTP/1 to ORIGINAL_DST and adds ``x-via``."""
    return {
        "servers": [
            {
                "default_log_level": "WARN",
                "graceful_timeout": "1s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [
                                    {"match": {"prefix": "/"}, "route": {"cluster_name": "passthrough"}}
                                ],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "outbound",
                        "address": f"{LOCALHOST}:0",
                        "use_original_dst": True,
                        "listener_filters": [{"type": "test_redirect", "config": {"dst": dst}}],
                        "filter_chains": [
                            {"filters": [{"type": "tcp_proxy", "config": {"cluster": "passthrough"}}]}
                        ],
                    },
                    {
                        "name": "http_virtual",
                        "address": virtual_address,
                        "bind_port": False,
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
                        "stream_filters": [
                            {
                                "type": "header_mutation",
                                "config": {
                                    "request_headers_to_add": [
                                        {"header": {"key": "x-via", "value": "mosnpy"}}
                                    ]
                                },
                            }
                        ],
                    },
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "passthrough",
                    "type": "ORIGINAL_DST",
                    "lb_type": "LB_ORIGINAL_DST",
                    "connect_timeout": "1s",
                }
            ]
        },
    }


async def exchange(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` to 127.0.0.1:port and read until the server closes."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            await stream.send_all(data)
            if half_close:
                await stream.send_eof()
            out = bytearray()
            while chunk := await stream.receive_some(65536):
                out += chunk
            return bytes(out)


async def echo_handler(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


async def test_tcp_proxy_connects_to_the_original_destination(redirect_filter: None) -> None:
    async with trio.open_nursery() as nursery:
        (echo,) = await nursery.start(partial(trio.serve_tcp, echo_handler, 0, host=LOCALHOST))
        echo_port = echo.socket.getsockname()[1]
        server = mosnpy.MosnServer(parse_config(sidecar(f"{LOCALHOST}:{echo_port}", "0.0.0.0:1")))
        await nursery.start(server.serve)
        outbound = server.listener("outbound")
        assert await exchange(outbound.port, b"hello through tcp_proxy", half_close=True) == (
            b"hello through tcp_proxy"
        )
        cluster = server.clusters.get("passthrough")
        assert [h.address for h in cluster.lb.destinations] == [f"{LOCALHOST}:{echo_port}"]  # type: ignore[attr-defined]
        assert cluster.counters.requests == 1
        assert server.listener("http_virtual").connections_total == 0
        server.shutdown()
        await server.wait_stopped()
        nursery.cancel_scope.cancel()


async def test_http_on_the_virtual_listener_goes_to_the_original_destination(redirect_filter: None) -> None:
    with start_py_backend("original") as backend:
        dst = f"{LOCALHOST}:{backend.port}"
        server = mosnpy.MosnServer(parse_config(sidecar(dst, f"0.0.0.0:{backend.port}")))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            request = b"GET /echo HTTP/1.1\r\nHost: anything\r\nConnection: close\r\n\r\n"
            response = (await exchange(server.listener("outbound").port, request)).decode()
            assert response.startswith("HTTP/1.1 200"), response
            assert "x-backend: original" in response.lower()
            assert "x-echo-x-via: mosnpy" in response.lower()  # the HTTP proxy of the virtual listener
            virtual = server.listener("http_virtual")
            assert (virtual.connections_total, server.listener("outbound").connections_total) == (1, 1)
            assert server.clusters.get("passthrough").counters.requests == 1
            server.shutdown()
