"""The xprotocol server side of the proxy filter: many requests in flight at once.

Frames from the downstream connection go through the sans-I/O
:class:`~mosnpy.protocol.xprotocol.ServerSession`: heartbeats are answered right here
(the proxy never sees them), unreadable requests get the protocol's error reply or
close the connection, and each request frame runs its own
:class:`~mosnpy.proxy.downstream_x.XDownStream` in a task of the connection's nursery,
because a multiplexed client does not wait for one answer before asking again.  At
``max_requests_in_flight`` requests the driver stops reading the connection until some
are answered, so a flood of requests meets TCP backpressure, not unbounded tasks.
Responses leave in whatever order the upstream answers; the connection's send lock
keeps frames from interleaving.
"""

from __future__ import annotations

import logging

import trio

from mosnpy.net.connection import Connection
from mosnpy.net.filter import FilterStatus
from mosnpy.protocol.xprotocol import HijackCodec, ServerSession, XFrame
from mosnpy.protocol.xprotocol.registry import XProtocolDescriptor
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.downstream_x import XDownStream

__all__ = ["XServerDriver"]

log = logging.getLogger("mosnpy.proxy")


class XServerDriver:
    """Serves one downstream connection of a multiplexed RPC protocol."""

    def __init__(self, ctx: ProxyContext, conn: Connection, descriptor: XProtocolDescriptor) -> None:
        self.ctx = ctx
        self.conn = conn
        self.descriptor = descriptor
        self.codec = descriptor.codec_factory()
        self.hijack = self.codec if isinstance(self.codec, HijackCodec) else None
        self.session = ServerSession(self.codec)
        self.active = 0
        self.max_in_flight = ctx.max_requests_in_flight
        self._room: trio.Event | None = None
        self.draining = False

    async def on_data(self, buf: bytearray) -> FilterStatus:
        data = bytes(buf)
        buf.clear()
        got = self.session.receive_data(data)
        if got.to_send:
            await self.conn.send_all(bytes(got.to_send))
        nursery = self.conn.nursery
        assert nursery is not None, "xprotocol needs a connection nursery (the listener provides one)"
        for frame in got.requests:
            while self.active >= self.max_in_flight:
                # Backpressure: hold this request (and stop reading the connection, so
                # the client's sends block in TCP) until some are answered.
                self._room = trio.Event()
                await self._room.wait()
            self.active += 1
            nursery.start_soon(self._serve, frame)
        if got.close:
            log.info("connection %s: undecodable %s bytes; closing", self.conn.id, self.descriptor.name)
            self.conn.close()
        return FilterStatus.STOP

    async def _serve(self, frame: XFrame) -> None:
        try:
            await XDownStream(self.ctx, self.conn, self.descriptor, self.codec, frame, self.hijack).run()
        except Exception:
            log.exception("connection %s: request failed", self.conn.id)
        finally:
            self.active -= 1
            if self._room is not None and self.active < self.max_in_flight:
                self._room.set()
                self._room = None
            if self.draining and not self.active:
                self.conn.close()

    def on_shutdown(self) -> None:
        """Graceful drain: close once the requests in flight are answered."""
        self.draining = True
        if not self.active:
            self.conn.close()
