"""An edge proxy bounds what a slow or odd client can hold: heads that never finish
(slowloris), HTTP/0.9 request lines, RPC frames that never complete.

mosnpy runs as a subprocess with ``request_headers_timeout: 1s`` on its listeners;
its HTTP routes are direct responses, so no backend takes part.
"""

from __future__ import annotations

import functools
import socket
import time
from typing import Any

import pytest
import trio

from tests.support.procs import free_port, run_mosnpy

pytestmark = pytest.mark.timeout(60)

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


def _listener(name: str, port: int, protocol: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": f"127.0.0.1:{port}",
        "filter_chains": [
            {
                "filters": [
                    {
                        "type": "proxy",
                        "config": {
                            "downstream_protocol": protocol,
                            "router_config_name": "r",
                            "request_headers_timeout": f"{HEAD_TIMEOUT:g}s",
                            "stream_idle_timeout": f"{BODY_TIMEOUT:g}s",
                        },
                    }
                ]
            }
        ],
    }


def _config(http: int, toy: int, sink: int = 1) -> dict[str, Any]:
    return {
        "servers": [
            {
                "default_log_level": "WARN",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [
                                    {
                                        "match": {"prefix": "/upload"},
                                        "route": {"cluster_name": "sink", "timeout": "20s"},
                                    },
                                    {
                                        "match": {"prefix": "/"},
                                        "direct_response": {"status": 200, "body": "ok\n"},
                                    },
                                ],
                            }
                        ],
                    }
                ],
                "listeners": [_listener("http", http, "Http1"), _listener("toy", toy, "toy")],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "sink",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "hosts": [{"address": f"127.0.0.1:{sink}"}],
                }
            ]
        },
    }


async def _closed_within(stream: trio.SocketStream, limit: float) -> tuple[float, bytes]:
    """Read until the proxy closes; (seconds it took, what it said)."""
    start = trio.current_time()
    said = b""
    with trio.fail_after(limit):
        while True:
            try:
                data = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            said += data
    return trio.current_time() - start, said


SLOW_HEAD = b"GET /slow HTTP/1.1\r\nX-Slow: " + b"a" * 200


async def _dribble(port: int, prefix: bytes, results: list[tuple[float, bytes]]) -> None:
    """Send ``prefix`` (the start of :data:`SLOW_HEAD`) at once, then the rest of the
    head one byte every 0.2 s until the proxy closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    start = trio.current_time()
    async with stream:
        await stream.send_all(prefix)
        said = b""
        with trio.fail_after(HEAD_TIMEOUT + 5):
            for byte in SLOW_HEAD[len(prefix) :]:
                try:
                    await stream.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                with trio.move_on_after(0.2):
                    try:
                        data = await stream.receive_some(4096)
                    except trio.BrokenResourceError:
                        break
                    if not data:
                        break
                    said += data
        results.append((trio.current_time() - start, said))


async def _normal_get(port: int) -> float:
    start = time.monotonic()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        reply = b""
        with trio.fail_after(5):
            while b"ok\n" not in reply:
                data = await stream.receive_some(4096)
                assert data, reply
                reply += data
    assert reply.startswith(b"HTTP/1.1 200 ")
    return time.monotonic() - start


async def test_slow_heads_are_cut_at_the_bound_while_normal_clients_are_served() -> None:
    http, toy = free_port(), free_port()
    with run_mosnpy(_config(http, toy), ready_port=http):
        results: list[tuple[float, bytes]] = []
        latencies: list[float] = []
        async with trio.open_nursery() as nursery:
            for i in range(200):
                # Half dribble from the first byte, half after a whole request line.
                prefix = SLOW_HEAD[:1] if i % 2 else SLOW_HEAD[: SLOW_HEAD.index(b"\n") + 1]
                nursery.start_soon(_dribble, http, prefix, results)
            await trio.sleep(0.3)
            for _ in range(20):
                latencies.append(await _normal_get(http))
                await trio.sleep(0.05)
        assert len(results) == 200
        slowest = max(t for t, _ in results)
        assert slowest < HEAD_TIMEOUT + 2.0, f"a slow head was held {slowest:.1f}s"
        assert all(t >= HEAD_TIMEOUT * 0.8 for t, _ in results), "closed before the bound"
        answered = [said for _, said in results if said]
        assert answered and all(s.startswith(b"HTTP/1.1 408 ") for s in answered)
        assert max(latencies) < 1.0, latencies


async def test_http09_request_line_is_answered_at_once() -> None:
    http, toy = free_port(), free_port()
    with run_mosnpy(_config(http, toy), ready_port=http):
        stream = await trio.open_tcp_stream("127.0.0.1", http)
        async with stream:
            await stream.send_all(b"GET /\r\n")
            took, said = await _closed_within(stream, HEAD_TIMEOUT + 5)
        assert said.startswith(b"HTTP/1.1 505 ")
        assert b"HTTP/0.9" in said
        assert took < HEAD_TIMEOUT / 2  # not the head timeout: at once


async def test_an_rpc_frame_that_never_completes_is_dropped_at_the_bound() -> None:
    http, toy = free_port(), free_port()
    with run_mosnpy(_config(http, toy), ready_port=toy):
        with socket.create_connection(("127.0.0.1", toy), timeout=10) as sock:
            sock.sendall(b"TY\x00")  # the start of a toy frame, never the rest
            start = time.monotonic()
            sock.settimeout(HEAD_TIMEOUT + 5)
            assert sock.recv(100) == b""
            took = time.monotonic() - start
        assert HEAD_TIMEOUT * 0.8 <= took < HEAD_TIMEOUT + 2.0


async def test_a_request_body_that_stalls_is_answered_408_at_the_bound() -> None:
    """The head and part of the body go upstream; then the client stops sending.  A
    body that keeps moving, however slowly, is not cut."""
    received: list[bytes] = []

    async def sink(stream: trio.SocketStream) -> None:  # reads whatever comes, never answers
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    received.append(data)
            except trio.BrokenResourceError:
                pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, sink, 0, host="127.0.0.1"))
        sink_port = listeners[0].socket.getsockname()[1]
        http, toy = free_port(), free_port()
        with run_mosnpy(_config(http, toy, sink_port), ready_port=http):
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
            stalled = await trio.open_tcp_stream("127.0.0.1", http)
            slow = await trio.open_tcp_stream("127.0.0.1", http)
            async with stalled, slow:
                await stalled.send_all(head + b"x" * 10)
                await slow.send_all(head + b"y" * 10)
                start = trio.current_time()
                with trio.move_on_after(BODY_TIMEOUT * 2.5):
                    while True:  # the slow one sends a byte every 0.3 s meanwhile
                        await trio.sleep(0.3)
                        await slow.send_all(b"y")
                took, said = await _closed_within(stalled, 1)
                took = trio.current_time() - start
                assert said.startswith(b"HTTP/1.1 408 "), said
                assert BODY_TIMEOUT * 0.8 <= took < BODY_TIMEOUT * 2.5 + 1
                await slow.send_all(b"y")  # still open: not cut while it moves
        nursery.cancel_scope.cancel()
    assert b"".join(received).count(b"POST /upload") == 2
