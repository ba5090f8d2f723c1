"""The xprotocol half of the phase machine: one whole frame in, one frame out.

An :class:`XDownStream` serves one request frame.  Routing reads the frame's header
view (dubbo: service, method, version, group; bolt: its header map), with the stream's
``host`` set to the ``service`` key so virtual-host domains can match services as in
MOSN's ``dubbo_stream`` filter.  The request goes to the cluster's multiplexing pool,
which gives it a fresh upstream id; the response comes back here and leaves with the
client's original id.  Framework failures become the protocol's own error reply
(:class:`~mosnpy.protocol.xprotocol.HijackCodec`), so a consumer sees an RPC error,
never a hang.  A frame's own timeout (bolt's timeout field) overrides the route's.
"""

from __future__ import annotations

import logging

import trio

from mosnpy.net.connection import Connection
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.xprotocol import HijackCodec, StreamType, XCodec, XFrame
from mosnpy.protocol.xprotocol.registry import XProtocolDescriptor
from mosnpy.proxy import replies
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.downstream import DownStream
from mosnpy.proxy.phases import Phase
from mosnpy.stream.stream import LocalReply, ResetReason, Stream
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.multiplex import MultiplexPool, UpstreamResetError

__all__ = ["XDownStream"]

log = logging.getLogger("mosnpy.proxy")


class XDownStream(DownStream):
    """One RPC request/response through the proxy."""

    def __init__(
        self,
        ctx: ProxyContext,
        conn: Connection,
        descriptor: XProtocolDescriptor,
        codec: XCodec,
        frame: XFrame,
        hijack: HijackCodec | None,
    ) -> None:
        headers = HeaderMap(frame.header_view().items())
        stream = Stream(
            protocol=descriptor.name,
            headers=headers,
            method=headers.get("method", ""),
            host=headers.get("service", ""),
            downstream_address=conn.remote_address,
            start_time=trio.current_time(),
        )
        super().__init__(ctx, conn, stream)
        self.descriptor = descriptor
        self.codec = codec
        #: the codec again if it can build error replies (checked once per connection:
        #: an isinstance against a runtime_checkable Protocol is slow per request)
        self.hijack = hijack
        self.frame = frame
        #: the caller's id: restored on whatever goes back down
        self.request_id = codec.get_request_id(frame)
        self.oneway = frame.stream_type is StreamType.ONEWAY
        self.pool: MultiplexPool | None = None
        self.response: XFrame | None = None

    def _is_oneway(self) -> bool:
        return self.oneway

    def _set_timeouts(self, route_timeout: float, try_timeout: float) -> None:
        super()._set_timeouts(route_timeout, try_timeout)
        timeout_ms = self.frame.timeout_ms
        if timeout_ms > 0:
            self.global_timeout = timeout_ms / 1000
        elif timeout_ms < 0:
            self.global_timeout = float("inf")
        if self.try_timeout >= self.global_timeout:
            self.try_timeout = 0.0

    # -- I/O phases ------------------------------------------------------------------------

    async def _down_recv_header(self) -> Phase:
        assert self.cluster is not None and self.host is not None
        self._finalize_request()
        self.pool = self.cluster.multiplex_pool(
            self.host, self.descriptor.name, self.descriptor.codec_factory
        )
        return Phase.DOWN_RECV_DATA

    async def _down_recv_data(self) -> Phase:
        return Phase.DOWN_RECV_TRAILER  # the frame is whole: nothing more to read

    async def _down_recv_trailer(self) -> Phase:
        self._start_timers()
        if self.oneway:
            assert self.pool is not None
            try:
                await self.pool.call(self.frame, oneway=True)
            except (ConnectFailedError, OverflowError_, UpstreamResetError) as exc:
                log.info("stream %s: oneway request dropped: %s", self.stream.id, exc)
        return Phase.ONEWAY

    async def _wait_notify(self) -> Phase:
        assert self.pool is not None
        response: XFrame | None = None
        try:
            with trio.CancelScope(deadline=min(self.global_deadline, self.try_deadline)):
                response = await self.pool.call(self.frame)
        except ConnectFailedError as exc:
            return self._upstream_failed(ResetReason.CONNECTION_FAILED, str(exc))
        except OverflowError_ as exc:
            return self._reply(replies.overflow(str(exc)))
        except UpstreamResetError as exc:
            return self._upstream_failed(ResetReason.CONNECTION_TERMINATION, f"upstream reset: {exc}")
        if response is None:
            return self._deadline_phase()
        code = self.hijack.response_code(response) if self.hijack is not None else 200
        if self._retry_on_status(code):
            return self._upstream_failed(ResetReason.UPSTREAM_RESET, f"upstream answered {code}")
        self.response = response
        self.stream.response_status = code
        self.stream.response_headers = HeaderMap(response.header_view().items())
        return Phase.UP_FILTER

    async def _send_response_head(self) -> Phase:
        response = self.response
        assert response is not None
        self.codec.set_request_id(response, self.request_id)
        self.response_started = True
        await self.conn.send_all(self.codec.encode(response))
        return Phase.UP_RECV_DATA

    async def _send_local_reply(self, reply: LocalReply) -> None:
        if self.oneway:
            return  # nobody waits for an answer
        if self.hijack is None:
            log.warning(
                "stream %s: %s cannot build error replies; closing", self.stream.id, self.descriptor.name
            )
            self.conn.close()
            return
        codec = self.codec
        codec.set_request_id(self.frame, self.request_id)
        frame = self.hijack.hijack(self.frame, reply.status, reply.body.decode(errors="replace").strip())
        codec.set_request_id(frame, self.request_id)
        self.response_started = True
        await self.conn.send_all(codec.encode(frame))
