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

import trio

from mosnpy.net.connection import Connection
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import FilterStatus
from mosnpy.protocol.api import (
    ConnectionTerminated,
    RequestReceived,
    ServerStreamConnection,
    StreamEvent,
)
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.stream_downstream import StreamDownStream
from mosnpy.proxy.timers import Timers
from mosnpy.stream.io import StreamIO, flush_touched

__all__ = ["StreamServer"]

log = logging.getLogger("mosnpy.proxy")


class StreamServer(StreamIO):
    """Serves one downstream connection of a protocol with stream connections."""

    __slots__ = ("_room", "_timers", "ctx", "draining", "protocol", "streams", "upstream_protocol")

    sc: ServerStreamConnection

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
        self._timers: Timers | None = None
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
        done = 0
        while True:
            try:
                done = self._dispatch(events, done)
            finally:
                self.touch()
                flush_touched()
            if done >= len(events) or self.conn.closed:
                break
            # Backpressure: at max_requests_in_flight, hold the rest of this batch and
            # stop reading (the client's sends block in TCP) until some are answered.
            self._room = trio.Event()
            await self._room.wait()
        if self.over_backlog():
            await self.conn.drain()  # the client does not read its answers: wait for it
        return FilterStatus.STOP

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
                ds = StreamDownStream(self, event)
                streams[event.stream_id] = ds
                ds._begin()
                ds.advance(ds.phase)
            elif isinstance(event, ConnectionTerminated):
                log.info("connection %s: %s; closing", self.conn.id, event.message)
                self.close_after_flush()
                return len(events)
            else:
                found = streams.get(event.stream_id)
                if found is not None:
                    found.on_downstream_event(event)
        return len(events)

    def stream_done(self, ds: StreamDownStream) -> None:
        """A stream completed: free its slot (and maybe the reader, or the connection)."""
        if self.streams.get(ds.sid) is ds:
            del self.streams[ds.sid]
        room = self._room
        if room is not None and len(self.streams) < self.ctx.max_requests_in_flight:
            self._room = None
            room.set()
        if self.draining and not self.streams:
            self.close_after_flush()

    def close_after_flush(self) -> None:
        """Send what is queued, then close."""
        self.flush()
        self.conn.close()

    # -- connection events ---------------------------------------------------------------

    def _on_connection_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            for ds in list(self.streams.values()):
                ds.abort()
            self.streams.clear()
            if self._room is not None:
                self._room.set()
                self._room = None

    def on_shutdown(self) -> None:
        """Graceful drain: close once the streams in flight are answered."""
        self.draining = True
        if not self.streams:
            self.close_after_flush()
