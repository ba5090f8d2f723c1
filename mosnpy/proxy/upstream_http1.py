"""One HTTP/1 request attempt on a connection borrowed from a ping-pong pool.

The downstream's own task drives the attempt (DESIGN §8: no task per request): it
sends the encoded request and then reads the response from the upstream socket
directly, one ``recv`` per batch of events.  The client codec lives on the connection
(``conn.values``) so a kept-alive connection reuses its parser.
"""

from __future__ import annotations

from collections import deque

from mosnpy.net.connection import Connection
from mosnpy.protocol.http1 import Http1ClientCodec
from mosnpy.protocol.http1.events import Event
from mosnpy.upstream.host import Host
from mosnpy.upstream.pool import PingPongPool

__all__ = ["Http1Upstream"]

_CODEC_KEY = "http1.client_codec"


class Http1Upstream:
    """A borrowed connection plus its codec, for one request/response exchange."""

    __slots__ = ("codec", "conn", "done", "events", "host", "pool", "received_any", "released", "reused")

    def __init__(self, pool: PingPongPool, conn: Connection, *, reused: bool) -> None:
        self.pool = pool
        self.host: Host = pool.host
        self.conn = conn
        self.reused = reused
        codec = conn.values.get(_CODEC_KEY)
        if not isinstance(codec, Http1ClientCodec):
            codec = Http1ClientCodec()
            conn.values[_CODEC_KEY] = codec
        self.codec = codec
        self.events: deque[Event] = deque()
        #: any response byte arrived (a reused connection that dies before this is
        #: "stale": the request is retried on a fresh connection for free)
        self.received_any = False
        #: the response ended cleanly, so the connection may be reused
        self.done = False
        self.released = False
        self.host.active_requests += 1

    async def send(self, data: bytes) -> None:
        await self.conn.send_all(data)

    async def receive_events(self) -> list[Event]:
        """The next batch of response events (at least one), reading as needed.

        Raises:
            ConnectionClosedError: the connection broke.
            Http1Error: the response is malformed or ended early (EOF mid-body).
        """
        if self.events:
            batch = list(self.events)
            self.events.clear()
            return batch
        while True:
            events = self._feed(await self.conn.receive_some())
            if events:
                return events

    def receive_events_nowait(self) -> list[Event]:
        """Response events from bytes that already arrived (no waiting; maybe none)."""
        data = self.conn.receive_nowait()
        return [] if data is None else self._feed(data)

    def _feed(self, data: bytes) -> list[Event]:
        """Parse received bytes (``b""``: EOF, which must complete the response)."""
        if data:
            self.received_any = True
        events = self.codec.receive_data(data)
        if not data and not events:
            raise EOFError("upstream closed the connection before a complete response")
        return events

    def release(self) -> None:
        """Give the connection back: kept alive only after a clean, complete response
        that allowed keep-alive (the codec knows about ``Connection: close``)."""
        if self.released:
            return
        self.released = True
        self.host.active_requests -= 1
        reusable = self.done and not self.events and self.codec.reusable
        if not reusable:
            self.conn.values.pop(_CODEC_KEY, None)
        self.pool.release(self.conn, reusable=reusable)
