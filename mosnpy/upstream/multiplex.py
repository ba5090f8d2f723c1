"""The stream pool: upstream connections that each carry many streams.

Theory of operation
-------------------
A :class:`MultiplexPool` keeps connections to one host, each a
:class:`MultiplexConnection`: a net connection, the protocol's client stream connection
(:class:`~mosnpy.protocol.api.ClientStreamConnection`, which allocates stream ids — for
xprotocol, the remapped request ids — and decodes responses into neutral events), a
table ``stream id → listener``, and one reader task that feeds the stream connection and
hands each event to its stream's listener.  The pool is protocol-neutral: which stream
connection it builds is the protocol descriptor's business.

A caller gets a connection without waiting when one is ready (:meth:`MultiplexPool.ready`,
synchronous: the proxy's hot path never awaits here) and only awaits
:meth:`MultiplexPool.connection` when one must be dialed.  With pool mode MULTIPLEX the
pool spreads streams round robin over ``max_connections`` connections (MOSN's
``circuit_breakers[].max_connections``, default 1), each carrying up to
``max_streams_per_connection`` (0: unlimited); with PING_PONG each connection carries one
stream at a time and new connections are dialed while all are busy.

When every connection is full and no more may be dialed, a pool given a
:class:`PendingQueue` (its cluster's ``max_pending_requests``, shared by the cluster's
pools) lets the request wait its turn, first come first served, instead of overflowing;
once that many wait, the next one overflows at once (503).  A connection given back
goes straight to the first waiter (never through the idle list, so a newcomer cannot
jump the queue); a closed connection, a failed dial or a freed stream slot wakes the
first waiter to look again (and dial if it may).  Newcomers queue behind waiters.

Bookkeeping is synchronous: :meth:`MultiplexConnection.open_stream` registers the
listener before anything is sent and :meth:`~MultiplexConnection.close_stream` removes
it, so a stream abandoned at any point leaves no slot behind, and a late response for it
is a stray the stream connection counts.  When a connection is lost, every listener on
it receives a :class:`~mosnpy.protocol.api.StreamReset`.  Keepalive timers belong to the
stream connection (``next_deadline``/``on_timer``); a task per connection runs them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import trio

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.protocol.api import (
    ClientStreamConnection,
    ConnectionTerminated,
    DataReceived,
    FlowResumed,
    HeaderMap,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.stream.io import StreamIO, flush_touched
from mosnpy.upstream.dial import Dialer
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_, UpstreamError
from mosnpy.upstream.host import Host

__all__ = [
    "PEEK_AFTER_IDLE",
    "MultiplexConnection",
    "MultiplexPool",
    "PendingQueue",
    "StreamListener",
    "UpstreamResetError",
]

log: Final = logging.getLogger("mosnpy.upstream")

#: Only a connection idle longer than this gets the ``MSG_PEEK`` liveness probe (one
#: syscall) before reuse.  A fresher one that turns out dead is caught anyway: its
#: stream is reset as unprocessed and a request safe to repeat is resent.
PEEK_AFTER_IDLE: Final = 1.0


class UpstreamResetError(UpstreamError):
    """The connection carrying a call was lost before its response arrived."""


class StreamListener(Protocol):
    """Who waits for one upstream stream's events (the proxy's upstream request)."""

    def on_upstream_event(self, event: StreamEvent) -> None: ...


class PendingQueue:
    """A cluster's budget of requests waiting for a connection, shared by its pools.

    ``limit`` is the cluster's ``max_pending_requests`` (0: no bound); ``waiting``
    counts the requests queued in all of the cluster's pools right now.
    """

    __slots__ = ("limit", "waiting")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.waiting = 0

    def __repr__(self) -> str:
        return f"<PendingQueue waiting={self.waiting} limit={self.limit or 'none'}>"

    def has_room(self) -> bool:
        return not self.limit or self.waiting < self.limit


class _Turn:
    """One request waiting in a pool's pending queue."""

    __slots__ = ("conn", "event", "woken")

    def __init__(self) -> None:
        self.event = trio.Event()
        #: a connection handed over by :meth:`MultiplexPool.released`
        self.conn: MultiplexConnection | None = None
        #: woken and not yet run (its wake-up is passed on if it leaves unserved)
        self.woken = False


def _ends(event: StreamEvent) -> bool:
    if isinstance(event, (ResponseReceived, DataReceived)):
        return event.end_stream
    return isinstance(event, (TrailersReceived, StreamReset))


class MultiplexConnection(StreamIO[ClientStreamConnection]):
    """One upstream connection shared by many streams."""

    __slots__ = ("_idle", "_reader_scope", "_timer_scope", "closed", "listeners", "pool")

    def __init__(self, pool: MultiplexPool, conn: Connection, sc: ClientStreamConnection) -> None:
        super().__init__(conn, sc)
        self.pool = pool
        self.listeners: dict[int, StreamListener] = {}
        self.closed = False
        #: the connection's own tasks (reader, timers) end when it closes
        self._reader_scope = trio.CancelScope()
        self._timer_scope = trio.CancelScope()
        #: set while the reader of an idle one-stream-at-a-time connection waits for
        #: the next stream instead of for bytes
        self._idle: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<MultiplexConnection #{self.conn.id} streams={len(self.listeners)}>"

    def has_room(self) -> bool:
        cap = self.pool.max_streams_per_connection
        if self.closed or self.sc.closing:
            return False
        if cap == 1:  # one at a time: the stream connection may still be mid-exchange
            return not self.listeners and not self.sc.active_streams
        if self.peer_full():
            return False
        return not cap or len(self.listeners) < cap

    def peer_full(self) -> bool:
        """The peer takes no more streams here (its own limit, or it is going away)."""
        if self.sc.closing:
            return True
        limit = self.sc.stream_limit
        return bool(limit) and self.sc.active_streams >= limit

    # -- streams -----------------------------------------------------------------------

    def open_stream(self, listener: StreamListener) -> int:
        """A new stream whose events go to ``listener``; returns its id."""
        sid = self.sc.new_stream()
        self.listeners[sid] = listener
        if self._idle is not None:
            self.await_answer()  # the reader sleeps: whoever flushes polls or wakes it
        self.pool.host.active_requests += 1
        return sid

    def poll(self) -> None:
        """Read the answer if it has arrived; leave the rest to the reader task."""
        if self._idle is None or self.closed:
            return  # the reader is on it already
        try:
            data = self.conn.receive_nowait()
        except ConnectionClosedError as exc:
            self.close(f"upstream connection lost: {exc}")
            return
        if data is not None:
            self._deliver(self.sc.dispatch(data))
            self.touch()
            if not data:
                self.close("upstream closed the connection")
                return
        if self.listeners:
            self.wake()

    def wake(self) -> None:
        idle = self._idle
        if idle is not None:
            self._idle = None
            idle.set()

    def close_stream(self, sid: int, *, reset: bool = True) -> None:
        """Stop listening to ``sid`` (idempotent); ``reset`` tells the stream connection."""
        if self.listeners.pop(sid, None) is not None:
            self.pool.host.active_requests -= 1
            if reset:
                self.sc.reset(sid, ResetReason.LOCAL_RESET)
                self.touch()
            if not self.listeners:
                if self.sc.closing:
                    self.close("stream abandoned mid-exchange")
                else:
                    self.pool.released(self)
            elif self.pool.waiters:
                self.pool.slot_freed()

    def _deliver(self, events: list[StreamEvent]) -> None:
        listeners = self.listeners
        for event in events:
            if isinstance(event, ConnectionTerminated):
                self.close(event.message)
                return
            sid = event.stream_id
            listener = listeners.get(sid)
            if listener is None:
                if event.__class__ is FlowResumed and not sid:
                    for each in list(listeners.values()):  # the whole connection's window
                        each.on_upstream_event(event)
                continue
            if _ends(event):
                del listeners[sid]
                self.pool.host.active_requests -= 1
            try:
                listener.on_upstream_event(event)
            except Exception:
                log.exception("upstream %s: stream %d listener failed", self.pool.host.address, sid)
        if not self.listeners:
            if self.sc.closing:
                self.close("the upstream closes this connection")
            else:
                self.pool.released(self)
        elif self.pool.waiters:
            self.pool.slot_freed()

    # -- tasks -------------------------------------------------------------------------

    async def read_loop(self) -> None:
        """The connection's reader task: events to their listeners until it breaks."""
        reason = "upstream closed the connection"
        conn = self.conn
        sc = self.sc
        try:
            with self._reader_scope:
                spread = self.pool.spread
                while True:
                    if not spread and not self.listeners:
                        # Idle, one stream at a time: no epoll registration until the
                        # next exchange, whose sender polls the answer itself or wakes
                        # us (StreamIO.poll / wake).  A server that closes an idle
                        # connection is caught on reuse (MSG_PEEK, or an unprocessed
                        # reset and a free resend).
                        self._idle = trio.Event()
                        await self._idle.wait()
                        if not self.listeners:
                            continue  # the poll got the whole answer
                    data = await conn.receive_some()
                    self._deliver(sc.dispatch(data))  # b"": EOF may end a response too
                    self.touch()  # heartbeat answers, resets
                    slow = flush_touched()
                    if not data:
                        break
                    if slow and not self.pool.spread:
                        # A connection of its own stream: a slow client may hold it back
                        # (a shared one must not, or every stream on it would wait).
                        for io in slow:
                            await io.conn.drain()
        except ConnectionClosedError as exc:
            reason = f"upstream connection lost: {exc}"
        except Exception as exc:  # a plugin's bug costs this connection, not the server
            reason = f"stream connection failed: {exc!r}"
            log.exception("upstream %s: %s", self.pool.host.address, reason)
        finally:
            self.close(reason)
            flush_touched()

    async def run_timers(self) -> None:
        """Run the stream connection's timers (heartbeats) until the connection closes."""
        sc = self.sc
        with self._timer_scope:
            while not self.closed:
                deadline = sc.next_deadline()
                if deadline == float("inf"):
                    return
                await trio.sleep_until(deadline)
                self._deliver(sc.on_timer(trio.current_time()))
                self.touch()
                flush_touched()

    def close(self, reason: str) -> None:
        """Close and reset every open stream with ``reason`` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._reader_scope.cancel()
        self._timer_scope.cancel()
        self.flush()  # what is queued (a last reply) still goes
        self.conn.close()
        self.pool.forget(self)
        self._deliver(self.sc.connection_lost(reason))
        for sid in list(self.listeners):  # whatever the stream connection forgot
            self._deliver([StreamReset(sid, ResetReason.CONNECTION_TERMINATION, reason)])


class MultiplexPool(Dialer):
    """Connections to one host shared by concurrent streams.

    Args:
        host: the upstream host.
        factory: builds the protocol's client stream connection (one per connection).
        nursery: where connection reader and timer tasks run.
        max_connections: connections to keep (0 = as many as needed).
        max_streams_per_connection: cap on streams per connection (0 = none); when
            every connection is full and no more may be opened, overflow (503).
        spread: open all ``max_connections`` before sharing one (multiplexed
            protocols); otherwise dial only when every connection is full.
        connect_timeout: seconds allowed for a connect.
        idle_timeout: close connections idle longer than this before reuse (0: keep).
        pending: where a request waits when every connection is full and no more may
            be opened (None: it overflows at once).
        on_overflow: called each time a request is refused with OverflowError_.
    """

    def __init__(
        self,
        host: Host,
        factory: Callable[[], ClientStreamConnection],
        nursery: trio.Nursery,
        *,
        max_connections: int = 1,
        max_streams_per_connection: int = 0,
        spread: bool = True,
        connect_timeout: float = 10.0,
        idle_timeout: float = 0.0,
        pending: PendingQueue | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(host, connect_timeout)
        self.idle_timeout = idle_timeout
        self.factory = factory
        self.nursery = nursery
        self.max_connections = max_connections
        self.max_streams_per_connection = max_streams_per_connection
        self.spread = spread and max_connections > 0
        self.pending = pending
        self.on_overflow = on_overflow
        #: requests waiting for a connection, first come first served
        self.waiters: deque[_Turn] = deque()
        self.connections: list[MultiplexConnection] = []
        #: connections with no stream (one-stream-at-a-time pools), most recent last
        self.idle: list[MultiplexConnection] = []
        self.closed = False
        self._next = 0
        #: set when the dial under way ends (None: no dial under way)
        self._dialing: trio.Event | None = None
        self._connect_failures = 0
        self._last_connect_error = ""

    @property
    def stray(self) -> int:
        return sum(getattr(c.sc, "stray", 0) for c in self.connections)

    def __repr__(self) -> str:
        in_flight = sum(len(c.listeners) for c in self.connections)
        mode = "multiplex" if self.spread else "ping-pong"
        return (
            f"<MultiplexPool {self.host.address} {mode} connections={len(self.connections)} "
            f"idle={len(self.idle)} connecting={self.connecting} in_flight={in_flight} "
            f"waiting={len(self.waiters)}>"
        )

    def ready(self, *, probe: bool = False) -> MultiplexConnection | None:
        """A connection with room for one more stream, or None if the caller must await
        :meth:`connection`: to dial one, or to wait its turn in the pending queue.

        An idle connection (one stream at a time) older than ``idle_timeout`` is closed
        instead of reused; one idle longer than :data:`PEEK_AFTER_IDLE`, or any when
        ``probe`` is asked for (a request that must not be resent blindly), gets a
        non-blocking ``MSG_PEEK`` first, so one the server closed is dropped.

        Raises:
            OverflowError_: every connection is full, no more may be opened and the
                pending queue (if the pool has one) is full too.
        """
        if self.waiters:
            self._admit()  # behind those already waiting
            return None
        try:
            return self._lookup(probe)
        except OverflowError_ as exc:
            self._admit(exc)
            return None

    def _admit(self, full: OverflowError_ | None = None) -> None:
        """Return if one more request may wait in the pending queue, else count the
        overflow and raise ``full`` (or say the queue is full)."""
        pending = self.pending
        if pending is not None and pending.has_room():
            return
        if self.on_overflow is not None:
            self.on_overflow()
        if pending is not None:
            raise OverflowError_(
                f"{self.host.address}: no connection free and max_pending_requests "
                f"{pending.limit} already waiting"
            )
        raise full or OverflowError_(f"{self.host.address}: no connection free")

    def _lookup(self, probe: bool) -> MultiplexConnection | None:
        """:meth:`ready` without the pending queue: a connection, None (dial one), or
        OverflowError_ when every connection is full and no more may be opened."""
        conns = self.connections
        if self.spread and len(conns) < self.max_connections:
            return None
        n = len(conns)
        if not self.spread:
            idle = self.idle
            while idle:
                mc = idle.pop()  # the most recently used: warm, and cold ones age out
                if mc.closed or not mc.has_room():
                    continue
                conn = mc.conn
                quiet = conn.now() - conn.last_active
                if self.idle_timeout and quiet > self.idle_timeout:
                    mc.close("idle too long")
                elif (probe or quiet > PEEK_AFTER_IDLE) and conn.peer_closed_while_idle():
                    mc.close("closed by the server while idle")
                else:
                    return mc
            n = 0  # busy connections have no room: dial, or overflow
        for _ in range(n):
            self._next = (self._next + 1) % n
            mc = conns[self._next]
            if mc.has_room():
                return mc
        if not self.max_connections or len(conns) + self.connecting < self.max_connections:
            return None
        if self.spread and all(mc.peer_full() for mc in conns):
            # The peer caps streams per connection (HTTP/2's MAX_CONCURRENT_STREAMS) or
            # is going away: one more connection, as HTTP/2 clients do.
            return None
        raise OverflowError_(
            f"{self.host.address}: {self.max_streams_per_connection} streams in flight on every connection"
        )

    async def connection(self, *, probe: bool = False) -> MultiplexConnection:
        """A connection with room, dialing one if needed, or waiting in the pending
        queue (first come first served) while every connection is full and no more may
        be opened.

        Raises:
            ConnectFailedError: no connection could be made (retryable).
            OverflowError_: every connection is full and so is the pending queue.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        turn: _Turn | None = None
        try:
            while True:
                mc: MultiplexConnection | None = None
                if turn is None and self.waiters:
                    self._admit()  # newcomers queue behind those already waiting
                    full = True
                else:
                    try:
                        mc = self._lookup(probe)
                        full = False
                    except OverflowError_ as exc:
                        if turn is None:
                            self._admit(exc)
                        full = True
                if mc is not None:
                    return mc
                if full:
                    if turn is None:
                        turn = self._enqueue()
                    mc = await self._wait_turn(turn)
                    if mc is not None:
                        return mc
                    continue  # woken to look again
                if turn is not None:
                    self._dequeue(turn)  # our turn: dial
                    turn = None
                if not self.spread:
                    return await self._open_one()  # a connection per stream: dial in parallel
                if self._dialing is None:
                    return await self._open_shared()
                # A dial is under way: wait for it with everyone else and look again
                # together (a lock would hand the pool to one waiter per scheduler turn).
                failures = self._connect_failures
                await self._dialing.wait()
                if self._connect_failures != failures and not self.connections:
                    # The connect we waited for failed: share its outcome instead of
                    # dialing again one after another (a dead host would make each
                    # waiter pay a whole connect timeout in turn).
                    raise ConnectFailedError(self._last_connect_error)
        finally:
            if turn is not None:
                self._dequeue(turn)

    async def _open_one(self) -> MultiplexConnection:
        try:
            return await self._open()
        except BaseException:
            if self.waiters:
                self._wake_one()  # the dial's slot is free again
            raise

    async def _open_shared(self) -> MultiplexConnection:
        self._dialing = trio.Event()
        try:
            return await self._open()
        except ConnectFailedError as exc:
            self._connect_failures += 1
            self._last_connect_error = str(exc)
            if self.waiters:
                self._wake_one()  # the dial's slot is free again
            mc = self.ready() if self.connections else None
            if mc is None:
                raise
            return mc
        finally:
            dialing, self._dialing = self._dialing, None
            dialing.set()

    # -- the pending queue ------------------------------------------------------------

    def _enqueue(self) -> _Turn:
        turn = _Turn()
        self.waiters.append(turn)
        if self.pending is not None:
            self.pending.waiting += 1
        return turn

    async def _wait_turn(self, turn: _Turn) -> MultiplexConnection | None:
        """Wait to be woken: the connection handed over, or None to look again."""
        await turn.event.wait()
        mc, turn.conn = turn.conn, None
        turn.event = trio.Event()  # for the next wait, if the look finds no room
        turn.woken = False
        if mc is not None and not mc.closed and mc.has_room():
            return mc
        return None

    def _dequeue(self, turn: _Turn) -> None:
        """``turn`` leaves the queue; a wake-up or connection it did not use goes on."""
        try:
            self.waiters.remove(turn)
        except ValueError:
            return
        if self.pending is not None:
            self.pending.waiting -= 1
        mc, turn.conn = turn.conn, None
        if mc is not None:
            self.released(mc)
        elif self.waiters:
            # Pass the turn on: the pool may have room the next one has not seen (a
            # connection that went idle while every waiter was already woken).
            self._wake_one()

    def _wake_one(self) -> None:
        """Wake the first waiter not woken yet, to look again."""
        for turn in self.waiters:
            if not turn.woken:
                turn.woken = True
                turn.event.set()
                return

    def _hand_over(self, mc: MultiplexConnection) -> bool:
        """Give ``mc`` to the first waiter not woken yet; False if there is none."""
        for turn in self.waiters:
            if not turn.woken:
                turn.woken = True
                turn.conn = mc
                turn.event.set()
                return True
        return False

    def slot_freed(self) -> None:
        """A stream ended on a connection that still carries others: a multiplexing
        pool has room for one more (a one-at-a-time pool gets its connection back
        through :meth:`released`)."""
        if self.spread:
            self._wake_one()

    async def _open(self) -> MultiplexConnection:
        if self.closed:
            raise ConnectFailedError(f"pool for {self.host.address} is closed")
        conn = await self.dial()
        conn.nursery = self.nursery
        sc = self.factory()
        sc.start(trio.current_time())
        mc = MultiplexConnection(self, conn, sc)
        self.connections.append(mc)
        self.nursery.start_soon(mc.read_loop)
        if sc.next_deadline() != float("inf"):
            self.nursery.start_soon(mc.run_timers)
        return mc

    async def call(self, headers: HeaderMap, *, oneway: bool = False) -> StreamEvent | None:
        """Send one whole request and wait for its answer (for tools and tests; the
        proxy drives streams itself).  Returns the :class:`ResponseReceived` (None for
        a ``oneway`` request, which expects no answer).

        Raises:
            ConnectFailedError, OverflowError_: as :meth:`connection`.
            UpstreamResetError: the stream was reset before its response.
        """
        mc = await self.connection()
        waiter = _Waiter()
        sid = mc.open_stream(waiter)
        try:
            mc.sc.send_headers(sid, headers, end_stream=True)
            mc.touch()
            flush_touched()
            if oneway:
                mc.close_stream(sid, reset=False)
                await trio.lowlevel.checkpoint()
                return None
            await waiter.done.wait()
        finally:
            mc.close_stream(sid)
        event = waiter.event
        if isinstance(event, StreamReset):
            raise UpstreamResetError(event.message or event.reason.value)
        return event

    def released(self, mc: MultiplexConnection) -> None:
        """``mc`` carries no stream now: a one-stream-at-a-time pool lends it again,
        to the first request waiting for a connection if there is one."""
        if self.spread or mc.closed:
            if self.waiters:
                self._wake_one()
            return
        idle = self.idle
        if idle and idle[-1] is mc:
            return
        if self.waiters and mc.has_room() and mc not in idle and self._hand_over(mc):
            return
        idle.append(mc)

    def forget(self, mc: MultiplexConnection) -> None:
        if mc in self.connections:
            self.connections.remove(mc)
        if mc in self.idle:
            self.idle.remove(mc)
        if self.waiters:
            self._wake_one()  # room for a new connection

    def close(self) -> None:
        self.closed = True
        for mc in list(self.connections):
            mc.close("pool closed")
        for turn in self.waiters:  # they look again and find the pool closed
            turn.woken = True
            turn.event.set()


class _Waiter:
    __slots__ = ("done", "event")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.event: StreamEvent | None = None

    def on_upstream_event(self, event: StreamEvent) -> None:
        if self.event is None:
            self.event = event
        self.done.set()
