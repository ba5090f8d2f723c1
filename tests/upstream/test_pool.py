"""PingPongPool against a real trio server, its cancellation safety, and Cluster limits."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

import mosnpy.upstream.dial as dial_module
import mosnpy.upstream.pool as pool_module
from mosnpy.config.models import CircuitBreakerConfig, ClusterConfig, HostConfig
from mosnpy.net.connection import Connection
from mosnpy.protocol.http1 import HTTP1
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.pool import PingPongPool

LOCALHOST = "127.0.0.1"


class Server:
    """A trio TCP server on 127.0.0.1 that keeps every accepted stream."""

    def __init__(self) -> None:
        self.accepted: list[trio.SocketStream] = []
        self.port = 0

    async def handler(self, stream: trio.SocketStream) -> None:
        self.accepted.append(stream)
        await trio.sleep_forever()

    async def wait_accepted(self, n: int) -> None:
        with trio.fail_after(2):
            while len(self.accepted) < n:
                await trio.sleep(0.005)


@asynccontextmanager
async def tcp_server() -> AsyncIterator[Server]:
    server = Server()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handler, 0, host=LOCALHOST))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def make_pool(port: int, **kw: float) -> PingPongPool:
    return PingPongPool(Host(f"{LOCALHOST}:{port}"), connect_timeout=2.0, **kw)  # type: ignore[arg-type]


def assert_settled(pool: PingPongPool) -> None:
    assert (pool.connecting, pool.lent) == (0, 0), repr(pool)


# --------------------------------------------------------------------------- real server


async def test_acquire_connects_and_release_reusable_is_reused() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port)
        conn, reused = await pool.acquire()
        assert not reused
        assert (pool.lent, pool.connecting, len(pool.idle)) == (1, 0, 0)
        await server.wait_accepted(1)
        assert conn.remote_address == f"{LOCALHOST}:{server.port}"
        pool.release(conn, reusable=True)
        assert (pool.lent, len(pool.idle)) == (0, 1)
        again, reused = await pool.acquire()
        assert again is conn
        assert reused
        assert pool.lent == 1 and not pool.idle
        pool.release(again, reusable=False)
        assert conn.closed
        assert_settled(pool)
        assert not pool.idle
        assert len(server.accepted) == 1


async def test_connection_closed_by_server_while_idle_is_not_reused() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port)
        conn, _ = await pool.acquire()
        pool.release(conn, reusable=True)
        await server.wait_accepted(1)
        await server.accepted[0].aclose()
        with trio.fail_after(2):
            while not conn.peer_closed_while_idle():
                await trio.sleep(0.005)
        # Only a connection idle for longer than PEEK_AFTER_IDLE is probed: age this one.
        conn.last_active -= pool_module.PEEK_AFTER_IDLE + 0.1
        fresh, reused = await pool.acquire()
        assert fresh is not conn
        assert not reused
        assert conn.closed
        await server.wait_accepted(2)
        pool.release(fresh, reusable=True)
        assert pool.idle == [fresh]
        pool.close()
        assert fresh.closed and not pool.idle
        assert_settled(pool)


async def test_recently_idle_connection_is_lent_without_a_probe() -> None:
    """Below PEEK_AFTER_IDLE no MSG_PEEK is spent: a dead fresh connection is lent (reused)."""
    async with tcp_server() as server:
        pool = make_pool(server.port)
        conn, _ = await pool.acquire()
        pool.release(conn, reusable=True)
        await server.wait_accepted(1)
        await server.accepted[0].aclose()
        with trio.fail_after(2):
            while not conn.peer_closed_while_idle():
                await trio.sleep(0.005)
        conn.last_active = trio.current_time()
        again, reused = await pool.acquire()
        assert again is conn and reused
        pool.release(again, reusable=False)
        assert_settled(pool)


async def test_idle_connection_past_idle_timeout_is_dropped(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    pairs: list[tuple[socket.socket, socket.socket]] = []

    async def fake_connect(address: str, *, timeout: float) -> Connection:
        await trio.lowlevel.checkpoint()
        pairs.append(socket.socketpair())
        return Connection(pairs[-1][0], server_side=False)

    monkeypatch.setattr(dial_module, "connect", fake_connect)
    pool = PingPongPool(Host("10.0.0.1:80"), idle_timeout=5.0)
    first, _ = await pool.acquire()
    pool.release(first, reusable=True)
    await trio.sleep(4.0)
    again, reused = await pool.acquire()  # still within idle_timeout
    assert again is first and reused
    pool.release(again, reusable=True)
    await trio.sleep(6.0)
    second, reused = await pool.acquire()
    assert not reused and second is not first and first.closed
    pool.release(second, reusable=False)
    assert_settled(pool)
    assert len(pairs) == 2
    for a, b in pairs:
        a.close()
        b.close()


async def test_max_connections_overflow() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port, max_connections=1)
        conn, _ = await pool.acquire()
        with pytest.raises(OverflowError_, match="max_connections 1"):
            await pool.acquire()
        assert (pool.lent, pool.connecting) == (1, 0)
        pool.release(conn, reusable=True)
        again, reused = await pool.acquire()
        assert again is conn and reused
        pool.release(again, reusable=False)
        assert_settled(pool)


async def test_connect_to_closed_port_raises_connect_failed(free_port: int) -> None:
    pool = make_pool(free_port)
    with pytest.raises(ConnectFailedError, match=f"{LOCALHOST}:{free_port}"):
        await pool.acquire()
    assert_settled(pool)
    assert not pool.idle


async def test_released_closed_connection_is_not_kept() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port)
        conn, _ = await pool.acquire()
        conn.close()
        pool.release(conn, reusable=True)
        assert not pool.idle
        assert_settled(pool)


async def test_release_after_pool_close_closes_the_connection() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port)
        conn, _ = await pool.acquire()
        pool.close()
        pool.release(conn, reusable=True)
        assert conn.closed and not pool.idle
        assert_settled(pool)


# --------------------------------------------------------------------------- cancellation


async def test_cancel_during_connect_leaves_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    started = trio.Event()

    async def hanging_connect(address: str, *, timeout: float) -> Connection:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(dial_module, "connect", hanging_connect)
    pool = PingPongPool(Host("10.0.0.1:80"), max_connections=1)
    async with trio.open_nursery() as nursery:
        cancelled: list[bool] = []

        async def acquire() -> None:
            with trio.move_on_after(5) as scope:
                await pool.acquire()
            cancelled.append(scope.cancelled_caught)

        nursery.start_soon(acquire)
        with trio.fail_after(2):
            await started.wait()
        assert pool.connecting == 1
        assert "connecting=1" in repr(pool)
        # The dial counts against max_connections.
        with pytest.raises(OverflowError_):
            await pool.acquire()
        nursery.cancel_scope.cancel()
    assert_settled(pool)
    assert "lent=0 idle=0 connecting=0" in repr(pool)


async def test_cancel_at_every_deadline_settles_counts(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancel before, during and after a multi-checkpoint connect: counts always return to 0."""
    pairs: list[tuple[socket.socket, socket.socket]] = []

    async def stepping_connect(address: str, *, timeout: float) -> Connection:
        for _ in range(4):
            await trio.sleep(0.01)
            await trio.lowlevel.checkpoint()
        a, b = socket.socketpair()
        pairs.append((a, b))
        return Connection(a, server_side=False)

    monkeypatch.setattr(dial_module, "connect", stepping_connect)
    pool = PingPongPool(Host("10.0.0.1:80"))
    outcomes = {"cancelled": 0, "acquired": 0}
    for step in range(12):
        with trio.move_on_after(step * 0.005) as scope:
            conn, reused = await pool.acquire()
            assert not reused
            assert pool.lent == 1
            pool.release(conn, reusable=False)
            assert conn.closed
        outcomes["cancelled" if scope.cancelled_caught else "acquired"] += 1
        assert_settled(pool)
        assert not pool.idle
    assert outcomes["cancelled"] >= 8 and outcomes["acquired"] >= 2, outcomes
    for a, b in pairs:
        a.close()
        b.close()


async def test_cancel_right_after_successful_connect_settles_after_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connect finished, then the caller is cancelled at its next checkpoint."""
    pairs: list[tuple[socket.socket, socket.socket]] = []

    async def quick_connect(address: str, *, timeout: float) -> Connection:
        await trio.lowlevel.checkpoint()
        a, b = socket.socketpair()
        pairs.append((a, b))
        return Connection(a, server_side=False)

    monkeypatch.setattr(dial_module, "connect", quick_connect)
    pool = PingPongPool(Host("10.0.0.1:80"))
    got: list[Connection] = []
    with trio.CancelScope() as scope:
        try:
            conn, _ = await pool.acquire()
            got.append(conn)
            scope.cancel()
            await trio.lowlevel.checkpoint()  # the caller's next await is cancelled
        finally:
            # What a caller must do: release whatever it was lent.
            for c in got:
                pool.release(c, reusable=False)
    assert scope.cancelled_caught
    assert got and got[0].closed
    assert_settled(pool)
    for a, b in pairs:
        a.close()
        b.close()


async def test_cancelled_before_acquire_on_connect_path_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def counting_connect(address: str, *, timeout: float) -> Connection:
        calls.append(address)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(dial_module, "connect", counting_connect)
    pool = PingPongPool(Host("10.0.0.1:80"))
    with trio.CancelScope() as scope:
        scope.cancel()
        await pool.acquire()
    assert scope.cancelled_caught
    assert_settled(pool)


async def test_cancelled_acquire_on_reuse_path_leaks_nothing() -> None:
    async with tcp_server() as server:
        pool = make_pool(server.port, max_connections=1)
        conn, _ = await pool.acquire()
        pool.release(conn, reusable=True)
        with trio.CancelScope() as scope:
            scope.cancel()
            await pool.acquire()
        assert scope.cancelled_caught
        assert pool.lent == 0, repr(pool)
        assert pool.idle == [conn] or conn.closed


# --------------------------------------------------------------------------- cluster


def make_cluster(**limits: int) -> Cluster:
    return Cluster(
        ClusterConfig(
            name="c",
            hosts=[HostConfig(address=f"{LOCALHOST}:1"), HostConfig(address=f"{LOCALHOST}:2")],
            circuit_breakers=[CircuitBreakerConfig(**limits)] if limits else [],
        )
    )


def test_cluster_start_request_over_max_requests_overflows() -> None:
    cluster = make_cluster(max_requests=2)
    cluster.start_request()
    cluster.start_request()
    with pytest.raises(OverflowError_, match="max_requests 2"):
        cluster.start_request()
    assert cluster.active_requests == 2
    cluster.end_request()
    cluster.start_request()
    assert cluster.active_requests == 2
    assert "active=2" in repr(cluster)


def test_cluster_without_limits_is_unbounded() -> None:
    cluster = make_cluster()
    for _ in range(1000):
        cluster.start_request()
        assert cluster.try_start_retry()
    assert cluster.active_requests == 1000 and cluster.active_retries == 1000


def test_cluster_try_start_retry_respects_max_retries() -> None:
    cluster = make_cluster(max_retries=2)
    assert cluster.try_start_retry()
    assert cluster.try_start_retry()
    assert not cluster.try_start_retry()
    assert cluster.active_retries == 2
    cluster.end_retry()
    assert cluster.try_start_retry()
    assert not cluster.try_start_retry()


def test_cluster_pool_per_host_carries_limits() -> None:
    cluster = make_cluster(max_connections=3)
    h1, h2 = cluster.hosts
    p1 = cluster.pool(h1, HTTP1)
    assert cluster.pool(h1, HTTP1) is p1
    assert cluster.pool(h2, HTTP1) is not p1
    assert p1.max_connections == 3
    assert p1.host is h1
    assert repr(p1) == f"<PingPongPool {LOCALHOST}:1 lent=0 idle=0 connecting=0>"
    cluster.close()
    assert p1.closed


def test_cluster_choose_host_round_robins() -> None:
    cluster = make_cluster()
    picks = [cluster.choose_host().address for _ in range(4)]
    assert sorted(set(picks)) == [f"{LOCALHOST}:1", f"{LOCALHOST}:2"]
