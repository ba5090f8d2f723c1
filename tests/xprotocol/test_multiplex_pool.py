"""MultiplexPool bookkeeping over xprotocol stream connections: ids, stray responses,
resets, and cancellation anywhere."""

from __future__ import annotations

import trio
import trio.testing
from mosnpy_toy.codec import ToyCodec, ToyFrame

from mosnpy.protocol.xprotocol import XClientStreamConnection
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import MultiplexPool, UpstreamResetError
from tests.support import free_port
from tests.support.toy import ToyProvider, call, toy_pool


def request(body: bytes = b"x", method: str = "echo", **headers: str) -> ToyFrame:
    return ToyFrame(0, 0, {"method": method, **headers}, body)


def in_flight(pool: MultiplexPool) -> int:
    return sum(len(c.listeners) for c in pool.connections)


async def test_ids_are_per_connection_and_responses_find_their_caller() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        pool = toy_pool(Host(f"127.0.0.1:{provider.port}"), nursery, max_connections=2)
        answers: dict[int, bytes] = {}

        async def one(i: int) -> None:
            resp = await call(pool, request(f"r{i}".encode(), "slow", delay_ms=str(20 - i)))
            assert resp is not None
            answers[i] = resp.body

        async with trio.open_nursery() as calls:
            for i in range(20):
                calls.start_soon(one, i)
        assert answers == {i: f"r{i}".encode() for i in range(20)}
        assert len(pool.connections) == 2
        assert in_flight(pool) == 0
        # each connection counted its own ids from 1
        assert sorted(provider.seen_ids)[:2] == [1, 1]
        pool.close()
        provider.kill()


def test_id_counter_wraps_within_the_width_and_skips_zero_and_ids_in_use() -> None:
    sc = XClientStreamConnection(ToyCodec())
    sc._next = (1 << 32) - 2
    assert [sc.new_stream() for _ in range(3)] == [(1 << 32) - 1, 1, 2]
    sc._next = (1 << 32) - 1  # 1 and 2 are still waiting for their responses
    assert sc.new_stream() == 3


async def test_cancelled_at_every_point_leaves_no_slot() -> None:
    """Cancel a call after k scheduling points, for every k until it completes."""
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        pool = toy_pool(Host(f"127.0.0.1:{provider.port}"), nursery)
        completed = False
        k = 0
        while not completed and k < 3000:
            k += 1
            with trio.CancelScope() as scope:

                async def cancel_after(n: int, s: trio.CancelScope = scope) -> None:
                    for _ in range(n):
                        await trio.lowlevel.checkpoint()
                    s.cancel()

                async with trio.open_nursery() as inner:
                    inner.start_soon(cancel_after, k)
                    resp = await call(pool, request(b"ping"))
                    completed = resp is not None and resp.body == b"ping"
                    inner.cancel_scope.cancel()
            # whatever point the cancel hit, no call is left registered
            await trio.testing.wait_all_tasks_blocked()
            assert in_flight(pool) == 0, f"slot leaked after cancelling at point {k}"
            assert pool.connecting == 0
        assert completed, "the call never completed within 3000 scheduling points"
        assert k > 2, "the sweep should have cancelled the call at several points first"
        # the pool still works, and late answers to cancelled calls were dropped as strays
        resp = await call(pool, request(b"after"))
        assert resp is not None and resp.body == b"after"
        assert pool.host.active_requests == 0
        pool.close()
        provider.kill()


async def test_lost_connection_resets_every_waiting_call() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        pool = toy_pool(Host(f"127.0.0.1:{provider.port}"), nursery)
        errors: list[str] = []

        async def waiting() -> None:
            try:
                await call(pool, request(method="silent"))
            except UpstreamResetError as exc:
                errors.append(str(exc))

        with trio.fail_after(5):
            async with trio.open_nursery() as calls:
                for _ in range(5):
                    calls.start_soon(waiting)
                await trio.testing.wait_all_tasks_blocked()
                provider.kill()
        assert len(errors) == 5
        assert pool.connections == []  # the dead connection is forgotten


async def test_connect_failure_and_per_connection_cap() -> None:
    async with trio.open_nursery() as nursery:
        dead = toy_pool(Host(f"127.0.0.1:{free_port()}"), nursery, connect_timeout=1)
        try:
            await call(dead, request())
        except ConnectFailedError:
            pass
        else:
            raise AssertionError("expected ConnectFailedError")
        assert dead.connecting == 0

        provider = ToyProvider()
        await nursery.start(provider.serve)
        capped = toy_pool(Host(f"127.0.0.1:{provider.port}"), nursery, max_streams_per_connection=2)
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await call(capped, request(method="slow", delay_ms="200"))
                outcomes.append("ok")
            except OverflowError_:
                outcomes.append("overflow")

        async with trio.open_nursery() as calls:
            for _ in range(3):
                calls.start_soon(one)
                await trio.testing.wait_all_tasks_blocked()
        assert sorted(outcomes) == ["ok", "ok", "overflow"]
        capped.close()
        provider.kill()


async def test_keepalive_heartbeats_close_a_silent_connection() -> None:
    """A peer that never answers heartbeats is dropped after the configured misses."""
    received = 0

    async def mute(stream: trio.SocketStream) -> None:
        nonlocal received
        async for data in stream:
            received += len(data)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, mute, listeners)
        pool = toy_pool(
            Host(f"127.0.0.1:{port}"),
            nursery,
            keepalive_interval=0.05,
            keepalive_timeout=0.05,
            keepalive_failures=3,
        )
        mc = await pool.connection()
        with trio.fail_after(5):
            while not mc.closed:
                await trio.sleep(0.02)
        assert received >= 3 * 18  # three toy heartbeats went out (18 bytes each)
        assert isinstance(mc.sc, XClientStreamConnection)
        assert mc.sc.heartbeat_failures == 3
        nursery.cancel_scope.cancel()
