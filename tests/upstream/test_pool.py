"""HTTP/1 upstream pooling: MultiplexPool in ping-pong mode (one stream per connection)
against a real trio server, its cancellation safety, and Cluster limits."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

import mosnpy.upstream.dial as dial_module
from mosnpy.config.models import CircuitBreakerConfig, ClusterConfig, HostConfig
from mosnpy.net.connection import Connection
from mosnpy.protocol.api import (
    DataReceived,
    RequestHeaders,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.http1 import HTTP1, Http1ClientStreamConnection
from mosnpy.stream.io import flush_touched
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import PEEK_AFTER_IDLE, MultiplexConnection, MultiplexPool

LOCALHOST = "127.0.0.1"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def answer_requests(stream: trio.SocketStream, *, delay: float = 0.0) -> None:
    """Answer every request head on ``stream`` with a small 200 until the peer leaves."""
    buf = b""
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, _, buf = buf.partition(b"\r\n\r\n")
                if delay:
                    await trio.sleep(delay)
                await stream.send_all(RESPONSE)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass


class Server:
    """A trio TCP server on 127.0.0.1 that keeps every accepted stream and answers
    each request with a small 200."""

    def __init__(self) -> None:
        self.accepted: list[trio.SocketStream] = []
        self.port = 0

    async def handler(self, stream: trio.SocketStream) -> None:
        self.accepted.append(stream)
        await answer_requests(stream)

    async def wait_accepted(self, n: int) -> None:
        with trio.fail_after(2):
            while len(self.accepted) < n:
                await trio.sleep(0.005)

    def close_accepted(self, i: int) -> None:
        """The server closes connection ``i`` now, without a checkpoint (so the pool's
        reader task has not seen the close yet)."""
        self.accepted[i].socket.close()


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


def make_pool(address: str, nursery: trio.Nursery, **kw: float) -> MultiplexPool:
    """A ping-pong pool for HTTP/1, shaped as ``Cluster.pool`` shapes one."""
    return MultiplexPool(
        Host(address),
        Http1ClientStreamConnection,
        nursery,
        max_connections=int(kw.pop("max_connections", 0)),
        max_streams_per_connection=1,
        spread=False,
        connect_timeout=float(kw.pop("connect_timeout", 2.0)),
        **kw,
    )


@asynccontextmanager
async def running_pool(address: str, **kw: float) -> AsyncIterator[MultiplexPool]:
    """A pool whose connection tasks run in a nursery of its own, closed on exit."""
    async with trio.open_nursery() as nursery:
        pool = make_pool(address, nursery, **kw)
        try:
            yield pool
        finally:
            pool.close()
            nursery.cancel_scope.cancel()


def assert_settled(pool: MultiplexPool) -> None:
    """No dial in progress, no stream registered, no request counted on the host."""
    listeners = sum(len(mc.listeners) for mc in pool.connections)
    assert (pool.connecting, listeners, pool.host.active_requests) == (0, 0, 0), repr(pool)


class Listener:
    """Receives one upstream stream's events."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.done = trio.Event()

    def on_upstream_event(self, event: StreamEvent) -> None:
        self.events.append(event)
        if isinstance(event, (ResponseReceived, DataReceived)):
            if event.end_stream:
                self.done.set()
        elif isinstance(event, (TrailersReceived, StreamReset)):
            self.done.set()


def send_request(mc: MultiplexConnection, sid: int) -> None:
    mc.sc.send_headers(sid, RequestHeaders([("host", "upstream")], method="GET", target="/"), end_stream=True)
    mc.touch()
    flush_touched()


async def exchange(mc: MultiplexConnection) -> Listener:
    """One GET on ``mc``: open a stream, send, wait for its end, close the stream."""
    listener = Listener()
    sid = mc.open_stream(listener)
    try:
        send_request(mc, sid)
        with trio.fail_after(2):
            await listener.done.wait()
    finally:
        mc.close_stream(sid)
    return listener


def assert_ok(listener: Listener) -> None:
    first = listener.events[0]
    assert isinstance(first, ResponseReceived) and first.status == 200, listener.events
    assert not any(isinstance(e, StreamReset) for e in listener.events)


def wait_peer_closed_sync(conn: Connection) -> None:
    """Block (no checkpoint) until the peer's close is visible to ``MSG_PEEK``."""
    deadline = time.monotonic() + 2
    while not conn.peer_closed_while_idle():
        assert time.monotonic() < deadline, "the server's close never arrived"
        time.sleep(0.001)


class SocketPairs:
    """A stand-in for ``connect``: a socketpair per dial, the far end answered in
    ``nursery`` (when ``answer``) after ``delay``."""

    def __init__(self, *, steps: int = 1, answer: bool = True, delay: float = 0.0) -> None:
        self.steps = steps
        self.answer = answer
        self.delay = delay
        self.nursery: trio.Nursery | None = None
        self.pairs: list[tuple[socket.socket, socket.socket]] = []

    async def connect(self, address: str, *, timeout: float) -> Connection:
        for _ in range(self.steps):
            await trio.sleep(0.01)
            await trio.lowlevel.checkpoint()
        a, b = socket.socketpair()
        self.pairs.append((a, b))
        if self.answer:
            assert self.nursery is not None
            far = trio.SocketStream(trio.socket.from_stdlib_socket(b))
            self.nursery.start_soon(partial(answer_requests, far, delay=self.delay))
        return Connection(a, server_side=False)

    def close(self) -> None:
        for a, b in self.pairs:
            a.close()
            b.close()


# --------------------------------------------------------------------------- real server


async def test_connection_connects_and_released_connection_is_reused() -> None:
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            assert pool.ready() is None  # nothing to lend: dial
            mc = await pool.connection()
            assert (len(pool.connections), pool.connecting, len(pool.idle)) == (1, 0, 0)
            await server.wait_accepted(1)
            assert mc.conn.remote_address == f"{LOCALHOST}:{server.port}"
            assert_ok(await exchange(mc))
            # The stream ended normally: the connection is lent again.
            assert pool.idle == [mc]
            assert_settled(pool)
            again = await pool.connection()
            assert again is mc and not pool.idle
            sc = mc.sc
            assert isinstance(sc, Http1ClientStreamConnection)
            assert sc.exchanges == 1
            assert_ok(await exchange(again))
            assert sc.exchanges == 2
            assert pool.ready(probe=True) is mc  # a live connection passes the probe
            assert not pool.idle
            assert_ok(await exchange(mc))
            assert pool.idle == [mc]
            assert pool.ready() is mc
            # A stream abandoned midway closes the HTTP/1 connection.
            sid = mc.open_stream(Listener())
            assert pool.host.active_requests == 1
            mc.close_stream(sid)
            assert mc.closed and mc.conn.closed
            assert not pool.idle and not pool.connections
            assert_settled(pool)
            assert len(server.accepted) == 1


async def test_connection_closed_by_server_while_idle_is_not_reused() -> None:
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            assert_ok(await exchange(mc))
            assert pool.idle == [mc]
            server.close_accepted(0)
            wait_peer_closed_sync(mc.conn)
            assert (mc.closed, pool.idle) == (False, [mc])  # the reader has not run yet
            # Only a connection idle for longer than PEEK_AFTER_IDLE is probed: age this one.
            mc.conn.last_active -= PEEK_AFTER_IDLE + 0.1
            assert pool.ready() is None
            assert mc.closed and not pool.idle and mc not in pool.connections
            fresh = await pool.connection()
            assert fresh is not mc
            await server.wait_accepted(2)
            assert_ok(await exchange(fresh))
            assert pool.idle == [fresh]
            pool.close()
            assert fresh.closed and not pool.idle and not pool.connections
            assert_settled(pool)


async def test_probe_true_always_probes_an_idle_connection() -> None:
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            assert_ok(await exchange(mc))
            server.close_accepted(0)
            wait_peer_closed_sync(mc.conn)
            mc.conn.last_active = trio.current_time()  # fresh: only probe=True probes
            assert pool.ready(probe=True) is None
            assert mc.closed and not pool.idle and not pool.connections
            assert_settled(pool)


async def test_recently_idle_connection_is_lent_without_a_probe() -> None:
    """Below PEEK_AFTER_IDLE no MSG_PEEK is spent: a dead fresh connection is lent, and
    its stream is reset as unprocessed (safe to resend)."""
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            assert_ok(await exchange(mc))
            server.close_accepted(0)
            wait_peer_closed_sync(mc.conn)
            mc.conn.last_active = trio.current_time()
            assert (pool.ready(), mc.closed) == (mc, False)
            listener = await exchange(mc)
            [reset] = listener.events
            assert isinstance(reset, StreamReset), listener.events
            assert reset.reason is ResetReason.CONNECTION_TERMINATION
            assert reset.unprocessed
            assert mc.closed and not pool.idle and not pool.connections
            assert_settled(pool)


async def test_connection_closed_by_server_while_idle_is_caught_on_reuse() -> None:
    """Idle one-stream connections have no reader armed (no epoll registration per
    exchange): a server's close is noticed when the connection is next wanted."""
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            assert_ok(await exchange(mc))
            await server.accepted[0].aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert pool.idle == [mc] and not mc.closed  # nobody watched it
            assert pool.ready(probe=True) is None  # the probe finds it dead
            assert mc.closed and not pool.idle and not pool.connections
            assert_settled(pool)


async def test_idle_connection_past_idle_timeout_is_dropped(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    dialer = SocketPairs()
    monkeypatch.setattr(dial_module, "connect", dialer.connect)
    try:
        async with running_pool("10.0.0.1:80", idle_timeout=5.0) as pool:
            dialer.nursery = pool.nursery
            first = await pool.connection()
            assert_ok(await exchange(first))
            assert pool.idle == [first]
            await trio.sleep(4.0)
            again = await pool.connection()  # still within idle_timeout (probed: alive)
            assert again is first
            assert_ok(await exchange(again))
            assert pool.idle == [first]
            await trio.sleep(6.0)
            second = await pool.connection()
            assert second is not first and first.closed
            assert pool.connections == [second]
            assert_ok(await exchange(second))
            assert_settled(pool)
            assert len(dialer.pairs) == 2
    finally:
        dialer.close()


async def test_max_connections_overflow() -> None:
    with trio.fail_after(5):
        async with (
            tcp_server() as server,
            running_pool(f"{LOCALHOST}:{server.port}", max_connections=1) as pool,
        ):
            mc = await pool.connection()
            listener = Listener()
            sid = mc.open_stream(listener)
            with pytest.raises(OverflowError_, match=f"{LOCALHOST}:{server.port}"):
                pool.ready()
            with pytest.raises(OverflowError_, match="streams in flight"):
                await pool.connection()
            assert (len(pool.connections), pool.connecting, pool.host.active_requests) == (1, 0, 1)
            send_request(mc, sid)
            await listener.done.wait()
            assert_ok(listener)
            mc.close_stream(sid, reset=False)  # already ended: nothing to do
            again = await pool.connection()
            assert again is mc
            assert_ok(await exchange(again))
            assert_settled(pool)
            assert len(server.accepted) == 1


async def test_connect_to_closed_port_raises_connect_failed(free_port: int) -> None:
    with trio.fail_after(5):
        async with running_pool(f"{LOCALHOST}:{free_port}") as pool:
            with pytest.raises(ConnectFailedError, match=f"{LOCALHOST}:{free_port}"):
                await pool.connection()
            assert_settled(pool)
            assert not pool.idle and not pool.connections


async def test_connection_closed_under_a_stream_is_not_kept() -> None:
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            listener = Listener()
            mc.open_stream(listener)
            mc.conn.close()  # the socket goes away mid-exchange
            await listener.done.wait()
            [reset] = listener.events
            assert isinstance(reset, StreamReset)
            assert mc.closed and not pool.idle and not pool.connections
            assert_settled(pool)


async def test_pool_close_resets_streams_and_refuses_new_connections() -> None:
    with trio.fail_after(5):
        async with tcp_server() as server, running_pool(f"{LOCALHOST}:{server.port}") as pool:
            mc = await pool.connection()
            listener = Listener()
            mc.open_stream(listener)
            pool.close()
            assert pool.closed and mc.closed and mc.conn.closed
            [reset] = listener.events
            assert isinstance(reset, StreamReset)
            assert reset.reason is ResetReason.CONNECTION_TERMINATION
            assert not pool.idle and not pool.connections
            assert_settled(pool)
            with pytest.raises(ConnectFailedError, match="is closed"):
                await pool.connection()
            assert_settled(pool)


# --------------------------------------------------------------------------- cancellation


async def test_cancel_during_connect_leaves_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    started = trio.Event()

    async def hanging_connect(address: str, *, timeout: float) -> Connection:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(dial_module, "connect", hanging_connect)
    with trio.fail_after(5):
        async with running_pool("10.0.0.1:80", max_connections=1) as pool:
            cancelled: list[bool] = []
            async with trio.open_nursery() as nursery:

                async def connect() -> None:
                    with trio.move_on_after(5) as scope:
                        await pool.connection()
                    cancelled.append(scope.cancelled_caught)

                nursery.start_soon(connect)
                await started.wait()
                assert pool.connecting == 1
                assert "connecting=1" in repr(pool)
                # The dial counts against max_connections.
                with pytest.raises(OverflowError_):
                    pool.ready()
                with pytest.raises(OverflowError_):
                    await pool.connection()
                nursery.cancel_scope.cancel()
            assert cancelled == []  # cancelled from outside, before its own deadline
            assert_settled(pool)
            assert not pool.connections and not pool.idle
            assert "connections=0 idle=0 connecting=0 in_flight=0" in repr(pool)


async def test_cancel_at_every_deadline_during_connect_settles_counts(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancel before, during and after a multi-checkpoint connect: counts always return to 0."""
    dialer = SocketPairs(steps=4, answer=False)
    monkeypatch.setattr(dial_module, "connect", dialer.connect)
    outcomes = {"cancelled": 0, "connected": 0}
    try:
        async with running_pool("10.0.0.1:80") as pool:
            for step in range(12):
                with trio.move_on_after(step * 0.005) as scope:
                    mc = await pool.connection()
                    sid = mc.open_stream(Listener())
                    assert pool.host.active_requests == 1
                    mc.close_stream(sid)  # abandoned: the HTTP/1 connection closes
                    assert mc.closed
                outcomes["cancelled" if scope.cancelled_caught else "connected"] += 1
                assert_settled(pool)
                assert not pool.idle and not pool.connections
    finally:
        dialer.close()
    assert outcomes["cancelled"] >= 8 and outcomes["connected"] >= 2, outcomes
    assert len(dialer.pairs) == outcomes["connected"]


async def test_cancel_at_every_deadline_during_exchange_settles_counts(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancel anywhere in connect + request + wait for the answer: the stream is closed
    in ``finally`` and nothing stays counted; a finished exchange leaves one idle."""
    dialer = SocketPairs(steps=4, answer=True, delay=0.01)  # connected at 0.04, answered at 0.05
    monkeypatch.setattr(dial_module, "connect", dialer.connect)
    outcomes = {"during connect": 0, "during exchange": 0, "completed": 0}
    try:
        async with trio.open_nursery() as nursery:
            dialer.nursery = nursery
            for step in range(16):
                pool = make_pool("10.0.0.1:80", nursery)
                got: list[MultiplexConnection] = []
                with trio.move_on_after(step * 0.005) as scope:
                    mc = await pool.connection()
                    got.append(mc)
                    assert_ok(await exchange(mc))
                assert_settled(pool)
                if not scope.cancelled_caught:
                    outcomes["completed"] += 1
                    assert pool.idle == got and pool.connections == got
                elif got:
                    outcomes["during exchange"] += 1
                    assert got[0].closed and not pool.idle and not pool.connections
                else:
                    outcomes["during connect"] += 1
                    assert not pool.idle and not pool.connections
                pool.close()
            nursery.cancel_scope.cancel()
    finally:
        dialer.close()
    assert outcomes["during connect"] >= 8, outcomes
    assert outcomes["during exchange"] >= 1, outcomes
    assert outcomes["completed"] >= 4, outcomes


async def test_cancel_right_after_successful_connect_settles_after_close_stream(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The connect finished, then the caller is cancelled at its next checkpoint."""
    dialer = SocketPairs(answer=False)
    monkeypatch.setattr(dial_module, "connect", dialer.connect)
    try:
        async with running_pool("10.0.0.1:80") as pool:
            got: list[MultiplexConnection] = []
            with trio.CancelScope() as scope:
                mc = await pool.connection()
                got.append(mc)
                sid = mc.open_stream(Listener())
                try:
                    scope.cancel()
                    await trio.lowlevel.checkpoint()  # the caller's next await is cancelled
                finally:
                    mc.close_stream(sid)  # what a caller must do with its stream
            assert scope.cancelled_caught
            assert got and got[0].closed
            assert not pool.idle and not pool.connections
            assert_settled(pool)
    finally:
        dialer.close()


async def test_cancelled_before_connection_on_connect_path_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def counting_connect(address: str, *, timeout: float) -> Connection:
        calls.append(address)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(dial_module, "connect", counting_connect)
    with trio.fail_after(5):
        async with running_pool("10.0.0.1:80") as pool:
            with trio.CancelScope() as scope:
                scope.cancel()
                await pool.connection()
            assert scope.cancelled_caught
            assert calls == []
            assert_settled(pool)
            assert not pool.connections


async def test_cancelled_connection_on_reuse_path_leaks_nothing() -> None:
    with trio.fail_after(5):
        async with (
            tcp_server() as server,
            running_pool(f"{LOCALHOST}:{server.port}", max_connections=1) as pool,
        ):
            mc = await pool.connection()
            assert_ok(await exchange(mc))
            with trio.CancelScope() as scope:
                scope.cancel()
                await pool.connection()
            assert scope.cancelled_caught
            assert pool.idle == [mc] and not mc.closed
            assert_settled(pool)
            assert await pool.connection() is mc


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


async def test_cluster_pool_per_host_carries_limits() -> None:
    cluster = make_cluster(max_connections=3)
    h1, h2 = cluster.hosts
    with pytest.raises(RuntimeError, match="running cluster manager"):
        cluster.pool(h1, HTTP1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            cluster.nursery = nursery
            p1 = cluster.pool(h1, HTTP1)
            assert cluster.pool(h1, HTTP1) is p1
            assert cluster.pool(h2, HTTP1) is not p1
            assert p1.max_connections == 3
            assert (p1.spread, p1.max_streams_per_connection) == (False, 1)
            assert p1.host is h1
            assert p1.factory is Http1ClientStreamConnection
            text = repr(p1)
            assert f"{LOCALHOST}:1" in text and "ping-pong" in text and "idle=0" in text, text
            unbounded = make_cluster()
            unbounded.nursery = nursery
            assert unbounded.pool(unbounded.hosts[0], HTTP1).max_connections == 0
            cluster.close()
            unbounded.close()
            assert p1.closed


def test_cluster_choose_host_round_robins() -> None:
    cluster = make_cluster()
    picks = [cluster.choose_host().address for _ in range(4)]
    assert sorted(set(picks)) == [f"{LOCALHOST}:1", f"{LOCALHOST}:2"]
