"""Regressions from a review of the proxy layer: each test failed before its fix.

Every test runs the proxy in this trio loop on 127.0.0.1 with OS-chosen ports, uses
only in-loop trio backends, and is bounded well under 5 s.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

import mosnpy
from mosnpy import MosnServer, ProxyBuilder
from mosnpy.protocol.http1 import HTTP1
from mosnpy.stream import FilterPhase, Stream, StreamFilterChain, StreamFilterStatus
from mosnpy.upstream.multiplex import MultiplexPool

LOCALHOST = "127.0.0.1"


@asynccontextmanager
async def backend(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """A trio TCP backend in this loop; yields its port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=LOCALHOST))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(builder: ProxyBuilder) -> AsyncIterator[tuple[MosnServer, int]]:
    server = builder.server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server, server.listener("l").port
        finally:
            nursery.cancel_scope.cancel()


async def silent(stream: trio.SocketStream) -> None:
    """Accept, read the request, never answer."""
    with trio.move_on_after(10):
        async for _ in stream:
            pass


async def never_reads(stream: trio.SocketStream) -> None:
    """Accept and never read: the sender's socket buffers fill up."""
    await trio.sleep(10)


async def read_all(stream: trio.SocketStream, timeout: float) -> bytes:
    data = b""
    with trio.move_on_after(timeout):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            data += chunk
    return data


@asynccontextmanager
async def registered(factory: type) -> AsyncIterator[str]:
    name = f"review-{factory.__name__.lower()}-{uuid.uuid4().hex[:8]}"
    mosnpy.STREAM_FILTERS.register(name, factory)
    try:
        yield name
    finally:
        mosnpy.STREAM_FILTERS.unregister(name)


# ------------------------------------------------------------------------- hangs / leaks


async def test_upload_to_stalled_upstream_is_released_after_client_leaves() -> None:
    async with backend(never_reads) as bport:
        builder = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:{bport}"], connect_timeout=1.0)
            .route(prefix="/", cluster="c", timeout=1.0)
            .listener("l", f"{LOCALHOST}:0", idle_timeout=0.5)
        )
        async with running(builder) as (server, port):
            cluster = server.clusters.get("c")
            client = await trio.open_tcp_stream(LOCALHOST, port)
            await client.send_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (256 << 20))
            with trio.move_on_after(0.8):  # until every buffer on the way is full
                try:
                    while True:
                        await client.send_all(b"x" * 65536)
                except trio.BrokenResourceError:
                    pass
            await client.aclose()  # the client gives up
            await trio.sleep(2.0)  # > route timeout + idle timeout
            pool = cluster.pool(cluster.hosts[0], HTTP1)
            assert isinstance(pool, MultiplexPool)
            in_flight = sum(len(c.listeners) for c in pool.connections)
            assert (cluster.active_requests, in_flight, cluster.hosts[0].active_requests) == (0, 0, 0)


async def test_drain_is_bounded_by_graceful_timeout() -> None:
    async with backend(silent) as bport:
        server = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:{bport}"], connect_timeout=1.0)
            .route(prefix="/", cluster="c", timeout=4.0)
            .listener("l", f"{LOCALHOST}:0")
            .server()
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            client = await trio.open_tcp_stream(LOCALHOST, server.listener("l").port)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(0.2)  # the request waits on the silent backend
            start = trio.current_time()
            server.shutdown()
            with trio.move_on_after(1.5):
                await server.wait_stopped()
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
            await client.aclose()
    assert took < 1.2, f"drain took {took:.2f}s with graceful_timeout 0.3s"


async def test_client_disconnect_while_waiting_releases_upstream() -> None:
    async with backend(silent) as bport:
        builder = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:{bport}"], connect_timeout=1.0)
            .route(prefix="/", cluster="c", timeout=4.0)
            .listener("l", f"{LOCALHOST}:0")
        )
        async with running(builder) as (server, port):
            cluster = server.clusters.get("c")
            client = await trio.open_tcp_stream(LOCALHOST, port)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(0.2)
            assert cluster.active_requests == 1
            await client.aclose()
            await trio.sleep(1.0)
            assert cluster.active_requests == 0


# ------------------------------------------------------------------------- wrong answers


async def test_local_reply_204_carries_no_body() -> None:
    builder = (
        ProxyBuilder(graceful_timeout=0.3)
        .route(prefix="/", direct_response=(204, "nothing"))
        .listener("l", f"{LOCALHOST}:0")
    )
    async with running(builder) as (_, port):
        client = await trio.open_tcp_stream(LOCALHOST, port)
        await client.send_all(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_all(client, 1.0)
        await client.aclose()
    responses = data.split(b"\r\n\r\n")
    assert data.count(b"HTTP/1.1 204") == 2
    assert b"nothing" not in data, responses


async def test_odd_timeout_header_still_gets_an_answer() -> None:
    builder = (
        ProxyBuilder(graceful_timeout=0.3)
        .cluster("c", [f"{LOCALHOST}:1"], connect_timeout=0.5)
        .route(prefix="/", cluster="c")
        .listener("l", f"{LOCALHOST}:0")
    )
    async with running(builder) as (_, port):
        client = await trio.open_tcp_stream(LOCALHOST, port)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nx-mosn-global-timeout: \xb2\r\n\r\n")
        data = await read_all(client, 1.5)
        await client.aclose()
    assert data.startswith(b"HTTP/1.1 "), data


# ------------------------------------------------------------------------- counters


class _SwitchCluster:
    """After choose-host, once: move the request to cluster ``c2`` and re-choose."""

    def __init__(self, config: Any) -> None:
        self.done = False

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(type(self)(None), FilterPhase.AFTER_CHOOSE_HOST)

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        if self.done:
            return StreamFilterStatus.CONTINUE
        self.done = True
        stream.cluster_name = "c2"
        return StreamFilterStatus.RECHOOSE_HOST


async def test_rechoose_into_another_cluster_keeps_request_counters() -> None:
    async with registered(_SwitchCluster) as name:
        builder = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:1"], connect_timeout=0.5)
            .cluster("c2", [f"{LOCALHOST}:1"], connect_timeout=0.5)
            .route(prefix="/", cluster="c")
            .listener("l", f"{LOCALHOST}:0", stream_filters=[(name, {})])
        )
        async with running(builder) as (server, port):
            client = await trio.open_tcp_stream(LOCALHOST, port)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await read_all(client, 2.0)
            await client.aclose()
            c, c2 = server.clusters.get("c"), server.clusters.get("c2")
            counts = (c.active_requests, c2.active_requests)
    assert data.startswith(b"HTTP/1.1 502")
    assert counts == (0, 0)


# ------------------------------------------------------------------------- HTTP/1.0, rematch


async def test_http10_request_without_host_is_valid_upstream() -> None:
    import h11

    problems: list[str] = []

    async def h11_backend(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                problems.append(str(exc))
                await stream.send_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                return
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.EndOfMessage):
                out = conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
                out += conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                return

    async with backend(h11_backend) as bport:
        builder = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:{bport}"], connect_timeout=1.0)
            .route(prefix="/", cluster="c")
            .listener("l", f"{LOCALHOST}:0")
        )
        async with running(builder) as (_, port):
            client = await trio.open_tcp_stream(LOCALHOST, port)
            await client.send_all(b"GET / HTTP/1.0\r\n\r\n")
            data = await read_all(client, 1.5)
            await client.aclose()
    assert data.startswith(b"HTTP/1.1 200"), (data[:40], problems)


class _RematchOnce:
    """After route, once: ask for the route to be matched again."""

    def __init__(self, config: Any) -> None:
        self.done = False

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(type(self)(None), FilterPhase.AFTER_ROUTE)

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        if self.done:
            return StreamFilterStatus.CONTINUE
        self.done = True
        return StreamFilterStatus.REMATCH_ROUTE


async def test_rematch_does_not_rewrite_the_path_twice() -> None:
    import attrs

    lines: list[bytes] = []

    async def capture(stream: trio.SocketStream) -> None:
        buf = b""
        with trio.move_on_after(2):
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buf += chunk
        lines.append(buf.split(b"\r\n", 1)[0])
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async with registered(_RematchOnce) as name, backend(capture) as bport:
        config = (
            ProxyBuilder(graceful_timeout=0.3)
            .cluster("c", [f"{LOCALHOST}:{bport}"], connect_timeout=1.0)
            .route(prefix="/", cluster="c")
            .listener("l", f"{LOCALHOST}:0", stream_filters=[(name, {})])
            .build()
        )
        server_cfg = config.servers[0]
        router = server_cfg.routers[0]
        vhost = router.virtual_hosts[0]
        rc = vhost.routers[0]
        rc = attrs.evolve(rc, route=attrs.evolve(rc.route, prefix_rewrite="/v2/"))
        vhost = attrs.evolve(vhost, routers=[rc])
        router = attrs.evolve(router, virtual_hosts=[vhost])
        config = attrs.evolve(config, servers=[attrs.evolve(server_cfg, routers=[router])])
        server = MosnServer(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            client = await trio.open_tcp_stream(LOCALHOST, server.listener("l").port)
            await client.send_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await read_all(client, 1.5)
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert lines == [b"GET /v2/x HTTP/1.1"]
