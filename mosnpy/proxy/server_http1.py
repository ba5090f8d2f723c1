"""The HTTP/1 server side of the proxy filter: requests in order, one at a time.

Bytes from the downstream connection go into the sans-I/O server codec; each request
head starts a :class:`~mosnpy.proxy.downstream_http1.Http1DownStream`, which pulls the rest of its
request (body pieces) through :meth:`Http1ServerDriver.next_event`.  Pipelined requests
wait in the event queue and are served in order, so responses leave in order.
"""

from __future__ import annotations

import logging
from collections import deque

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.net.filter import FilterStatus, ReadFilter
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.http1 import Http1Error, Http1ServerCodec
from mosnpy.protocol.http1.events import EndOfMessage, Event, RequestHead
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.downstream_http1 import Http1DownStream

__all__ = ["Http1ServerDriver"]

log = logging.getLogger("mosnpy.proxy")

#: How long a closing connection keeps reading (and discarding) what the client still
#: sends after its final response, so the client gets to read that response.
LINGER_TIMEOUT = 5.0


class Http1ServerDriver:
    """Serves HTTP/1.1 requests arriving on one downstream connection."""

    def __init__(
        self, ctx: ProxyContext, conn: Connection, owner: ReadFilter, protocol: ProtocolDescriptor
    ) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.conn = conn
        self.owner = owner
        self.codec = Http1ServerCodec(max_header_size=ctx.max_header_size)
        self.events: deque[Event] = deque()
        self.busy = False
        #: graceful drain began: the request in flight is answered with
        #: ``Connection: close`` and the connection closes after it
        self.draining = False

    async def on_data(self, buf: bytearray) -> FilterStatus:
        data = bytes(buf)
        buf.clear()
        try:
            self.events.extend(self.codec.receive_data(data))
        except Http1Error as exc:
            await self._refuse(exc)
            return FilterStatus.STOP
        events = self.events
        while events and not self.conn.closed:
            event = events.popleft()
            if isinstance(event, EndOfMessage):
                continue  # the end of a bodiless request, already served
            if not isinstance(event, RequestHead):
                log.error("connection %s: %r outside a request", self.conn.id, event)
                self.conn.close()
                break
            self.busy = True
            downstream = Http1DownStream(self.ctx, self.conn, self.codec, self, event, self.protocol)
            try:
                keep_alive = await downstream.serve()
            except Http1Error as exc:
                await self._refuse(exc)
                break
            finally:
                self.busy = False
            if not keep_alive:
                if downstream.request_done or downstream.client_gone:
                    self.conn.close()
                else:  # answered before the body was read: let the client finish sending
                    await self.conn.close_lingering(LINGER_TIMEOUT)
                break
        if self.codec.error is not None and not self.conn.closed:
            # Bad bytes after complete requests: those were answered, now refuse.
            await self._refuse(self.codec.error)
        return FilterStatus.STOP

    async def next_event(self) -> Event:
        """The next request event, reading from the connection as needed.

        Raises:
            EOFError: the client closed mid-request.
            Http1Error: the rest of the request is malformed.
        """
        while not self.events:
            if self.codec.error is not None:
                raise self.codec.error  # found earlier: no point waiting for more bytes
            fm = self.conn.filter_manager
            got_more = await fm.read_more(self.owner)
            data = bytes(self.conn.read_buffer) if got_more else b""
            self.conn.read_buffer.clear()
            self.events.extend(self.codec.receive_data(data))
            if not got_more and not self.events:
                raise EOFError("client closed mid-request")
        return self.events.popleft()

    def on_shutdown(self) -> None:
        """Graceful drain: idle connections close now, busy ones after this request."""
        self.draining = True
        if not self.busy:
            self.conn.close()

    async def _refuse(self, exc: Http1Error) -> None:
        log.info("connection %s: bad request (%d %s)", self.conn.id, exc.status, exc.reason)
        try:
            await self.conn.send_all(self.codec.error_response(exc.status, exc.reason))
        except ConnectionClosedError:
            pass
        await self.conn.close_lingering(LINGER_TIMEOUT)
