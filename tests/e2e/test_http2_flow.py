"""HTTP/2 flow control end to end: a slow reader slows the writer on the other side.

mosnpy runs as a subprocess (so its memory can be read from /proc) between a trio + h2
backend and client that can each stop reading.  64 MiB go through each way while one
side holds its window shut for a while; the proxy's resident memory must stay within a
few windows' worth, and every byte must arrive.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.h2server import H2Backend, H2Client, pattern, upload
from tests.support.procs import free_port, run_mosnpy

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20
SIZE = 64 * MiB
#: what mosnpy may grow by while one side stalls: a few stream windows (1 MiB each by
#: default) and socket buffers, far below the 64 MiB that unbounded buffering would take
GROWTH_BOUND = 24 * MiB


def _config(listen: int, backend: int) -> dict[str, Any]:
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
                                        "match": {"prefix": "/"},
                                        "route": {"cluster_name": "b", "timeout": "60s"},
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "h2",
                        "address": f"127.0.0.1:{listen}",
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {"downstream_protocol": "Http2", "router_config_name": "r"},
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
                {
                    "name": "b",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "hosts": [{"address": f"127.0.0.1:{backend}"}],
                }
            ]
        },
    }


def _rss(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


async def _with_proxy(test: Any) -> None:
    backend = H2Backend()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(backend.serve)
        listen = free_port()
        with run_mosnpy(_config(listen, port), ready_port=listen) as proc:
            await test(listen, proc.proc.pid)
        nursery.cancel_scope.cancel()


async def test_slow_client_holds_back_a_64mib_download() -> None:
    async def test(listen: int, pid: int) -> None:
        client = await H2Client.connect(listen)
        warm_status, _ = await client.get("/bytes/1024")
        assert warm_status == 200
        baseline = _rss(pid)
        grown: list[int] = []

        async def measure() -> None:
            await trio.sleep(1.5)  # the backend would have sent everything by now
            grown.append(_rss(pid) - baseline)

        status, body = await client.get(f"/bytes/{SIZE}", pause_after=MiB, pause=2.0, on_pause=measure)
        await client.aclose()
        assert status == 200
        assert len(body) == SIZE
        assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(SIZE)).digest()
        assert grown and grown[0] < GROWTH_BOUND, (
            f"mosnpy grew {grown[0] / MiB:.1f} MiB while the client stalled"
        )
        assert _rss(pid, "VmHWM") - baseline < GROWTH_BOUND

    await _with_proxy(test)


async def test_slow_backend_holds_back_a_64mib_upload() -> None:
    async def test(listen: int, pid: int) -> None:
        client = await H2Client.connect(listen)
        warm_status, _ = await client.get("/bytes/1024")
        assert warm_status == 200
        baseline = _rss(pid)
        body = pattern(SIZE)
        status, answer = await upload(client, "/upload?delay=2", body)
        await client.aclose()
        assert status == 200
        assert answer == f"{SIZE}:{hashlib.sha256(body).hexdigest()}".encode()
        assert _rss(pid, "VmHWM") - baseline < GROWTH_BOUND

    await _with_proxy(test)


async def test_drain_sends_goaway_and_lets_streams_in_flight_finish() -> None:
    """SIGTERM-style drain: the client gets GOAWAY naming its open stream, that stream
    is answered, and the connection closes after it."""
    import h2.events

    import mosnpy

    backend = H2Backend()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(backend.serve)
        server = (
            mosnpy.ProxyBuilder(graceful_timeout=5)
            .cluster("b", [f"127.0.0.1:{port}"])
            .route(prefix="/", cluster="b", timeout=10)
            .listener("h2", "127.0.0.1:0", protocol="Http2")
            .server()
        )
        await nursery.start(server.serve)
        client = await H2Client.connect(server.listener("h2").port)
        conn = client.conn
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/slow/0.5")],
            end_stream=True,
        )
        await client.flush()
        await trio.sleep(0.2)  # the request is upstream now
        server.shutdown()
        seen: list[object] = []
        body = b""
        with trio.fail_after(5):
            while True:
                data = await client.stream.receive_some(65536)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except Exception:  # h2 refuses frames after GOAWAY; we read on by hand
                    conn.state_machine.state = type(conn.state_machine.state).CLIENT_OPEN
                    continue
                for event in events:
                    seen.append(event)
                    if isinstance(event, h2.events.ConnectionTerminated):
                        conn.state_machine.state = type(conn.state_machine.state).CLIENT_OPEN
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
        goaways = [e for e in seen if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaways and goaways[0].error_code == 0 and goaways[0].last_stream_id == sid
        assert any(isinstance(e, h2.events.ResponseReceived) for e in seen)
        assert body == b"slow"
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in seen)
        assert seen.index(goaways[0]) < next(
            i for i, e in enumerate(seen) if isinstance(e, h2.events.DataReceived)
        )
        await server.wait_stopped()
        nursery.cancel_scope.cancel()


async def test_malformed_upstream_head_is_a_502_and_the_connections_go_on() -> None:
    """An upstream answer HTTP/2 forbids (an upper-case field name) resets that stream
    only (RFC 9113 §8.1.1): the client gets 502, and both connections keep serving."""
    import mosnpy

    backend = H2Backend()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(backend.serve)
        server = (
            mosnpy.ProxyBuilder(graceful_timeout=1)
            .cluster("b", [f"127.0.0.1:{port}"])
            .route(prefix="/", cluster="b", timeout=10)
            .listener("h2", "127.0.0.1:0", protocol="Http2", upstream_protocol="Http2")
            .server()
        )
        await nursery.start(server.serve)
        client = await H2Client.connect(server.listener("h2").port)
        with trio.fail_after(10):
            status, body = await client.get("/malformed")
            assert status == 502, body
            assert await client.get("/bytes/100") == (200, pattern(100))
            status, _ = await client.get("/malformed")
            assert status == 502
            assert await client.get("/bytes/5") == (200, pattern(5))
        assert backend.connections == 1  # a stream error: the upstream connection stayed
        await client.aclose()
        server.shutdown()
        await server.wait_stopped()
        nursery.cancel_scope.cancel()
