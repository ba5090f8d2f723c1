"""The pending queue of a one-stream-at-a-time pool (HTTP/1) at ``max_connections``:
requests wait their turn first come first served, up to ``max_pending_requests``,
then overflow at once; a cancelled waiter gives its turn on; against a real trio
server on 127.0.0.1 that answers only when told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from mosnpy.config.models import CircuitBreakerConfig, ClusterConfig, HostConfig
from mosnpy.protocol.api import RequestHeaders, ResponseReceived, StreamEvent, StreamReset
from mosnpy.protocol.http1 import HTTP1, Http1ClientStreamConnection
from mosnpy.stream.io import flush_touched
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import MultiplexConnection, MultiplexPool, PendingQueue

LOCALHOST = "127.0.0.1"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class GatedServer:
    """Answers each request with a small 200, but only after :meth:`answer_one`."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self.received = 0
        self._send, self._go = trio.open_memory_channel[None](100)

    def answer_one(self) -> None:
        self._send.send_nowait(None)

    async def handler(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        buf = b""
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    self.received += 1
                    await self._go.receive()
                    await stream.send_all(RESPONSE)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


@asynccontextmanager
async def gated_pool(
    max_connections: int = 1, pending: int | None = 1
) -> AsyncIterator[tuple[GatedServer, MultiplexPool, list[int]]]:
    server = GatedServer()
    overflows: list[int] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handler, 0, host=LOCALHOST))
        server.port = listeners[0].socket.getsockname()[1]
        pool = MultiplexPool(
            Host(f"{LOCALHOST}:{server.port}"),
            Http1ClientStreamConnection,
            nursery,
            max_connections=max_connections,
            max_streams_per_connection=1,
            spread=False,
            connect_timeout=2.0,
            pending=PendingQueue(pending) if pending is not None else None,
            on_overflow=lambda: overflows.append(1),
        )
        try:
            yield server, pool, overflows
        finally:
            pool.close()
            nursery.cancel_scope.cancel()


class Listener:
    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.done = trio.Event()

    def on_upstream_event(self, event: StreamEvent) -> None:
        self.events.append(event)
        if isinstance(event, (ResponseReceived, StreamReset)):
            self.done.set()


def start_request(mc: MultiplexConnection) -> tuple[int, Listener]:
    listener = Listener()
    sid = mc.open_stream(listener)
    mc.sc.send_headers(sid, RequestHeaders([("host", "upstream")], method="GET", target="/"), end_stream=True)
    mc.touch()
    flush_touched()
    return sid, listener


async def finish(mc: MultiplexConnection, sid: int, listener: Listener) -> None:
    with trio.fail_after(2):
        await listener.done.wait()
    mc.close_stream(sid)
    first = listener.events[0]
    assert isinstance(first, ResponseReceived) and first.status == 200, listener.events


async def test_the_second_request_waits_and_the_third_overflows_at_once() -> None:
    with trio.fail_after(5):
        async with gated_pool() as (server, pool, overflows):
            mc = await pool.connection()
            sid, listener = start_request(mc)
            got: list[MultiplexConnection] = []

            async def second() -> None:
                got.append(await pool.connection())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                assert len(pool.waiters) == 1 and pool.pending is not None and pool.pending.waiting == 1
                assert "waiting=1" in repr(pool)
                with pytest.raises(OverflowError_, match="max_pending_requests 1 already waiting"):
                    pool.ready()
                with pytest.raises(OverflowError_, match="max_pending_requests 1"):
                    await pool.connection()
                assert len(overflows) == 2
                server.answer_one()
                await finish(mc, sid, listener)
            assert got == [mc]  # handed over, not dialed again
            assert pool.pending.waiting == 0 and not pool.waiters
            assert not pool.idle  # it went to the waiter, not to the idle list
            sid, listener = start_request(mc)
            server.answer_one()
            await finish(mc, sid, listener)
            assert server.accepted == 1


async def test_without_a_queue_a_full_pool_overflows_at_once() -> None:
    with trio.fail_after(5):
        async with gated_pool(pending=None) as (_, pool, overflows):
            mc = await pool.connection()
            start_request(mc)
            with pytest.raises(OverflowError_, match="streams in flight"):
                pool.ready()
            with pytest.raises(OverflowError_, match="streams in flight"):
                await pool.connection()
            assert len(overflows) == 2


async def test_waiters_are_served_first_come_first_served() -> None:
    with trio.fail_after(5):
        async with gated_pool(max_connections=1, pending=0) as (server, pool, overflows):
            mc = await pool.connection()
            sid, listener = start_request(mc)
            order: list[int] = []

            async def waiter(i: int) -> None:
                got = await pool.connection()
                order.append(i)
                s, ln = start_request(got)
                server.answer_one()
                await finish(got, s, ln)

            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(waiter, i)
                    await trio.testing.wait_all_tasks_blocked()
                assert pool.pending is not None and pool.pending.waiting == 5
                # A newcomer queues behind them (pool.ready says: await connection()).
                assert pool.ready() is None
                server.answer_one()
                await finish(mc, sid, listener)
            assert order == [0, 1, 2, 3, 4]
            assert server.accepted == 1 and overflows == []
            assert pool.pending.waiting == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    with trio.fail_after(5):
        async with gated_pool(pending=2) as (server, pool, _):
            mc = await pool.connection()
            sid, listener = start_request(mc)
            got: list[MultiplexConnection] = []

            async def second() -> None:
                got.append(await pool.connection())

            first_scope = trio.CancelScope()

            async def first() -> None:
                with first_scope:
                    await pool.connection()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                assert pool.pending is not None and pool.pending.waiting == 2
                first_scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert pool.pending.waiting == 1
                server.answer_one()
                await finish(mc, sid, listener)
            assert got == [mc]
            assert pool.pending.waiting == 0


async def test_a_connection_given_back_unused_goes_to_the_next_waiter() -> None:
    """What the proxy does when its client left while it waited: give it back."""
    with trio.fail_after(5):
        async with gated_pool(pending=2) as (server, pool, _):
            mc = await pool.connection()
            sid, listener = start_request(mc)
            got: list[MultiplexConnection] = []

            async def first() -> None:
                pool.released(await pool.connection())

            async def second() -> None:
                got.append(await pool.connection())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                server.answer_one()
                await finish(mc, sid, listener)
            assert got == [mc]
            assert pool.pending is not None and pool.pending.waiting == 0


async def test_a_closed_connection_lets_the_first_waiter_dial() -> None:
    with trio.fail_after(5):
        async with gated_pool() as (server, pool, _):
            mc = await pool.connection()
            start_request(mc)
            got: list[MultiplexConnection] = []

            async def second() -> None:
                got.append(await pool.connection())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                mc.close("test")
            assert len(got) == 1 and got[0] is not mc and not got[0].closed
            while server.accepted < 2:
                await trio.sleep(0.01)


async def test_closing_the_pool_fails_its_waiters() -> None:
    with trio.fail_after(5):
        async with gated_pool() as (_, pool, _):
            mc = await pool.connection()
            start_request(mc)
            errors: list[Exception] = []

            async def second() -> None:
                try:
                    await pool.connection()
                except ConnectFailedError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                pool.close()
            assert len(errors) == 1 and "closed" in str(errors[0])
            assert pool.pending is not None and pool.pending.waiting == 0


async def test_the_cluster_shares_one_budget_between_its_pools() -> None:
    servers = [GatedServer(), GatedServer()]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for s in servers:
                listeners = await nursery.start(partial(trio.serve_tcp, s.handler, 0, host=LOCALHOST))
                s.port = listeners[0].socket.getsockname()[1]
            cluster = Cluster(
                ClusterConfig(
                    name="c",
                    hosts=[HostConfig(address=f"{LOCALHOST}:{s.port}") for s in servers],
                    circuit_breakers=[CircuitBreakerConfig(max_connections=1, max_pending_requests=1)],
                )
            )
            cluster.nursery = nursery
            a, b = (cluster.pool(h, HTTP1) for h in cluster.hosts)
            assert a.pending is b.pending is cluster.pending
            start_request(await a.connection())
            start_request(await b.connection())

            async def wait_on_a() -> None:
                with pytest.raises(ConnectFailedError):
                    await a.connection()

            nursery.start_soon(wait_on_a)
            await trio.testing.wait_all_tasks_blocked()
            assert cluster.stats()["pending_requests"] == 1
            with pytest.raises(OverflowError_, match="max_pending_requests 1"):
                b.ready()
            assert cluster.counters.overflows == 1
            cluster.close()
            nursery.cancel_scope.cancel()
