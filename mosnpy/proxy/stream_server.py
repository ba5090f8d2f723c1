"""The server side of the proxy filter for every protocol with stream connections.

One :class:`StreamServer` per downstream connection drives the protocol's
:class:`~mosnpy.protocol.api.ServerStreamConnection`: bytes from the connection go to
``dispatch``; each :class:`~mosnpy.protocol.api.RequestReceived` starts a
:class:`~mosnpy.proxy.stream_downstream.StreamDownStream` that walks its phases right
here in the reader; body pieces, trailers and resets go to their stream.  At the end of
each batch everything the batch queued — here and on upstream connections — is flushed
once.  A multiplexed client does not wait for one answer before asking again, so many
streams are parked at once; at ``max_requests_in_flight`` the server stops reading
until some are answered (TCP backpressure, not unbounded state), and it stops reading
too while the client does not read its answers (a bounded write backlog).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import trio

from mosnpy.net.connection import Connection
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import FilterStatus
from mosnpy.protocol.api import (
    ConnectionTerminated,
    DataReceived,
    FlowResumed,
    Outbox,
    RequestReceived,
    ResetReason,
    ServerStreamConnection,
    StreamConnection,
    StreamEvent,
)
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.stream_downstream import StreamDownStream
from mosnpy.proxy.timers import Timer, Timers
from mosnpy.stream.io import StreamIO, flush_touched

__all__ = ["StreamServer"]

log: Final = logging.getLogger("mosnpy.proxy")

_INF: Final = float("inf")

#: How long a closing connection keeps reading (and discarding) what the client still
#: sends after its final response, so the client gets to read that response.
LINGER_TIMEOUT: Final = 5.0

_checkpoint: Final = trio.lowlevel.checkpoint  # (a C static compiled, not three lookups)
_STOP: Final = FilterStatus.STOP  # (likewise: not a lookup through the Enum metaclass)


class StreamServer(StreamIO[ServerStreamConnection]):
    """Serves one downstream connection of a protocol with stream connections."""

    __slots__ = (
        "_busy",
        "_closed",
        "_closing",
        "_head_timer",
        "_resume_pending",
        "_resumed",
        "_room",
        "_sc_deadline",
        "_sc_timer",
        "_timed",
        "_timers",
        "_unheld",
        "ctx",
        "draining",
        "held_by",
        "protocol",
        "streams",
        "upstream_protocol",
    )

    def __init__(
        self,
        ctx: ProxyContext,
        conn: Connection,
        protocol: ProtocolDescriptor,
        upstream_protocol: ProtocolDescriptor,
    ) -> None:
        factory = protocol.server_stream_connection
        assert factory is not None
        options = ctx.config.extend_config.get(protocol.name, {})
        super().__init__(conn, factory(**options) if isinstance(options, Mapping) else factory())
        self.ctx = ctx
        self.protocol = protocol
        self.upstream_protocol = upstream_protocol
        self.streams: dict[int, StreamDownStream] = {}
        self.draining = False
        self._room: trio.Event | None = None
        self._resumed: trio.Event | None = None
        self._closed = trio.Event()
        self._timers: Timers | None = None
        #: inside a batch (a later one serves held-back requests itself)
        self._busy = False
        self._resume_pending = False
        self._closing = False
        #: a stream whose body waits for an upstream: the reader pauses for it
        self.held_by: StreamDownStream | None = None
        self._unheld: trio.Event | None = None
        #: the stream connection has timers of its own (HTTP/2: flood windows, stalls)
        self._timed = getattr(type(self.sc), "next_deadline", None) is not Outbox.next_deadline
        self._sc_timer: Timer | None = None
        self._sc_deadline = _INF
        #: bounds the arrival of a head whose first bytes came (slowloris)
        self._head_timer: Timer | None = None
        conn.add_event_listener(self._on_connection_event)

    def timers(self) -> Timers:
        """This connection's deadline structure (its task starts with the first timer)."""
        if self._timers is None:
            assert self.conn.nursery is not None, "streams need a connection nursery"
            self._timers = Timers(self.conn.nursery)
        return self._timers

    # -- reading -------------------------------------------------------------------------

    async def on_data(self, buf: bytearray) -> FilterStatus:
        data = bytes(buf)
        buf.clear()
        events = self.sc.dispatch(data)
        if self.sc.receiving_head:
            if self._head_timer is None:
                self._arm_head_timer()
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        done = 0
        awaiting: list[StreamIO[StreamConnection]] = []
        while True:
            self._busy = True
            try:
                done = self._dispatch(events, done)
                if done >= len(events):
                    self._pump()
            finally:
                self._busy = False
                self.touch()
                slow = flush_touched(awaiting=awaiting)
                self._check_closing()
            if awaiting:
                # Requests went out on connections nobody reads yet: yield once and
                # read their answers here, which usually have arrived by then (no
                # epoll registration, no task switch; DESIGN §8).
                await _checkpoint()
                for io in awaiting:
                    io.poll()
                awaiting.clear()
                self.touch()
                slow += flush_touched()
                self._check_closing()
            if done >= len(events) or self.conn.closed:
                break
            # Backpressure: at max_requests_in_flight, hold the rest of this batch and
            # stop reading (the client's sends block in TCP) until some are answered.
            self._room = trio.Event()
            await self._room.wait()
        for io in slow:
            await io.conn.drain()  # an upstream (or this client) is not keeping up
        while self.held_by is not None and not self.conn.closed:
            # A stream holds more body than it may while no upstream takes it.
            self._unheld = trio.Event()
            await self._unheld.wait()
        while self.sc.read_paused and not self.conn.closed:
            # A pipelined request waits for the one before it: read no further.
            self._resumed = trio.Event()
            await self._resumed.wait()
        return _STOP

    def _dispatch(self, events: list[StreamEvent], start: int) -> int:
        """Hand ``events[start:]`` to their streams; stop at the in-flight cap.

        Returns how many events are done.
        """
        streams = self.streams
        cap = self.ctx.max_requests_in_flight
        for i in range(start, len(events)):
            event = events[i]
            if event.__class__ is RequestReceived:
                if len(streams) >= cap:
                    return i
                assert isinstance(event, RequestReceived)
                ds = StreamDownStream(self, event)  # (counted as it starts)
                streams[event.stream_id] = ds
                ds.advance(ds.phase)
            elif isinstance(event, ConnectionTerminated):
                log.info("connection %s: %s; closing", self.conn.id, event.message)
                self.sc.closing = True
                return len(events)
            else:
                found = streams.get(event.stream_id)
                if found is not None:
                    found.on_downstream_event(event)
                elif event.__class__ is DataReceived and self.sc.flow_controlled:
                    data = event.data
                    if data:  # for a stream already answered: nobody wants it
                        self.sc.consumed(event.stream_id, len(data))
                        self.touch()
                elif event.__class__ is FlowResumed and not event.stream_id:
                    for ds in list(streams.values()):  # the whole connection's window
                        ds.on_downstream_event(event)
        return len(events)

    def _pump(self) -> None:
        """Serve requests the stream connection held back, one after another (HTTP/1
        pipelining), iteratively: a stream that completes at once only asks again."""
        while self._resume_pending and not self.conn.closed:
            self._resume_pending = False
            events = self.sc.resume()
            if events:
                self._dispatch(events, 0)
        resumed = self._resumed
        if resumed is not None and not self.sc.read_paused:
            self._resumed = None
            resumed.set()

    def flush(self) -> None:
        super().flush()
        if self._timed:
            self._arm_sc_timer()

    def _arm_head_timer(self) -> None:
        timeout = self.ctx.config.request_headers_timeout
        if timeout > 0:
            self._head_timer = self.timers().arm(self.conn.now() + timeout, self._on_head_timeout)

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.closed or not self.sc.receiving_head:
            return
        log.info(
            "connection %s: request head not received within %gs; closing",
            self.conn.id,
            self.ctx.config.request_headers_timeout,
        )
        self.sc.head_timeout()
        self.touch()
        flush_touched()
        self._check_closing()

    def _arm_sc_timer(self) -> None:
        """Keep one timer armed at the stream connection's next deadline."""
        deadline = self.sc.next_deadline()
        if deadline >= self._sc_deadline or self.conn.closed:
            return
        if self._sc_timer is not None:
            self._sc_timer.cancel()
        self._sc_deadline = deadline
        self._sc_timer = self.timers().arm(deadline, self._on_sc_timer)

    def _on_sc_timer(self) -> None:
        self._sc_timer = None
        self._sc_deadline = _INF
        if self.conn.closed:
            return
        events = self.sc.on_timer(self.conn.now())
        if events:
            self._busy = True
            try:
                self._dispatch(events, 0)
            finally:
                self._busy = False
        self.touch()
        flush_touched()
        self._check_closing()

    def hold(self, ds: StreamDownStream) -> None:
        """Read no more from the client until ``ds`` has an upstream for its body."""
        self.held_by = ds

    def unhold(self, ds: StreamDownStream) -> None:
        if self.held_by is ds:
            self.held_by = None
            if self._unheld is not None:
                self._unheld.set()
                self._unheld = None

    def stream_done(self, ds: StreamDownStream) -> None:
        """A stream completed: free its slot, serve what waited, maybe close."""
        sid = ds.sid
        if self.streams.get(sid) is ds:
            del self.streams[sid]
        sc = self.sc
        if not ds.response_started and sc.expects_response(sid):
            sc.reset(sid, ResetReason.LOCAL_RESET)  # no answer will come (TERMINATE, a reset)
            self.touch()
        room = self._room
        if room is not None and len(self.streams) < self.ctx.max_requests_in_flight:
            self._room = None
            room.set()
        if self.draining and not self.streams:
            sc.closing = True
        self._resume_pending = True
        if not self._busy:
            if sc.read_paused or self._resumed is not None:  # else there is nothing to pump
                self._busy = True
                try:
                    self._pump()
                finally:
                    self._busy = False
            self.touch()
            if sc.closing:
                self._check_closing(flushed=False)

    # -- closing -------------------------------------------------------------------------

    def _check_closing(self, *, flushed: bool = True) -> None:
        """Close once the stream connection asks to, after what is queued is sent."""
        if not self.sc.closing or self._closing or self.conn.closed:
            return
        self._closing = True
        if flushed and not self.sc.linger and not self.conn.write_backlog:
            self.conn.close()
            return
        nursery = self.conn.nursery
        if nursery is None:
            self.conn.close()
            return
        nursery.start_soon(self._close_when_sent)

    async def _close_when_sent(self) -> None:
        conn = self.conn
        await conn.drain()  # also lets the batch that asked for the close flush first
        self.flush()
        await conn.drain()
        if self.sc.linger and not conn.closed:
            # The client may still be sending (an unread body): stop writing, keep
            # reading (the reader discards) until it closes, so it reads the answer
            # instead of a reset.
            conn.shutdown_write()
            with trio.move_on_after(LINGER_TIMEOUT):
                await self._closed.wait()
        conn.close()

    def close_after_flush(self) -> None:
        """Send what is queued, then close."""
        self.sc.closing = True
        self._check_closing(flushed=False)

    # -- connection events ---------------------------------------------------------------

    def _on_connection_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            self._closed.set()
            for timer in (self._sc_timer, self._head_timer):
                if timer is not None:
                    timer.cancel()
            self._sc_timer = self._head_timer = None
            for ds in list(self.streams.values()):
                ds.abort()
            self.streams.clear()
            for waiting in (self._room, self._resumed, self._unheld):
                if waiting is not None:
                    waiting.set()
            self._room = self._resumed = self._unheld = None

    def on_shutdown(self) -> None:
        """Graceful drain: finish the streams in flight, then close."""
        self.draining = True
        self.sc.shutdown()
        self.flush()  # what the protocol says to a draining peer (HTTP/2: GOAWAY)
        if not self.streams:
            self.sc.closing = True
        self._check_closing(flushed=False)
