"""The HTTP/1 half of the phase machine: streamed bodies, one exchange per request.

:class:`Http1DownStream` runs in the downstream connection's reader task (no task per
request, DESIGN §8).  It pulls request body pieces from the connection through its
:class:`RequestSource` and forwards them as they arrive; up to ``retry_buffer_limit``
bytes are kept so the request can be resent on a retry, and a larger body that was
already (partly) sent makes the request non-retryable.  The head and a small body leave
in one ``send``.  The response streams back the same way; once it has started
downstream nothing can be replied any more, so a failure then closes the connection
and the client sees a truncated response, not a wrong one.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import Http1Error, Http1ServerCodec
from mosnpy.protocol.http1.events import Body, BodyFraming, EndOfMessage, Event, RequestHead, ResponseHead
from mosnpy.proxy import replies
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.downstream import ClientGone, DownStream
from mosnpy.proxy.phases import Phase
from mosnpy.proxy.upstream_http1 import Http1Upstream
from mosnpy.router import Route
from mosnpy.stream.stream import LocalReply, ResetReason, Stream
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.pool import PingPongPool

__all__ = ["Http1DownStream", "RequestSource"]

log = logging.getLogger("mosnpy.proxy")

#: Flush buffered request bytes upstream once this many are pending.
_FLUSH_AT = 64 * 1024
#: How long an upstream may take before the client is watched for going away.
WATCH_CLIENT_AFTER = 0.1
#: Methods a proxy may send twice (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Statuses that carry no body.
_NO_BODY_STATUS = frozenset({204, 304})


class RequestSource(Protocol):
    """Where the rest of the request comes from: the downstream connection's codec."""

    #: the connection is draining: answer this request, then close
    draining: bool

    async def next_event(self) -> Event:
        """The next request event; raises EOFError if the client went away."""
        ...


class Http1DownStream(DownStream):
    """One HTTP/1 request/response exchange."""

    def __init__(
        self,
        ctx: ProxyContext,
        conn: Connection,
        codec: Http1ServerCodec,
        source: RequestSource,
        head: RequestHead,
        protocol: ProtocolDescriptor,
    ) -> None:
        stream = Stream(
            protocol="Http1",
            headers=head.headers,
            method=head.method,
            path=head.path,
            host=_request_host(head),
            downstream_address=conn.remote_address,
            start_time=trio.current_time(),
        )
        stream.variables["target"] = head.target
        super().__init__(ctx, conn, stream)
        self.codec = codec
        self.protocol = protocol
        self.source = source
        self.head = head
        self.keep_alive = head.keep_alive
        #: the downstream request has been read to its end
        self.request_done = head.framing is BodyFraming.NONE
        self.request_trailers: HeaderMap | None = None
        #: request body kept for retries; None once it outgrew the limit
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.body_started = False
        self.continue_sent = False
        self.upstream: Http1Upstream | None = None
        self.upstream_head: ResponseHead | None = None
        self.out: list[bytes] = []
        self.down_framing = BodyFraming.NONE
        #: the client closed while this request waited upstream
        self.client_gone = False

    async def serve(self) -> bool:
        """Serve the request; return whether the downstream connection stays open."""
        await self.run()
        return self._down_keep_alive()

    # -- hooks ---------------------------------------------------------------------------

    def _release_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.release()
            self.upstream = None

    def _replayable(self) -> bool:
        # Part of a large body is gone once it was sent: it cannot be resent.
        return not self.body_started or (self.replay is not None and self.request_done)

    def _apply_route(self, route: Route) -> None:
        if route.prefix_rewrite:
            self.head.target = route.rewrite_path(self.head.target)
        if route.host_rewrite:
            self.stream.headers["host"] = route.host_rewrite

    # -- I/O phases ------------------------------------------------------------------------

    async def _down_recv_header(self) -> Phase:
        assert self.cluster is not None and self.host is not None
        self._finalize_request()
        if not self.stream.host:
            # An HTTP/1.0 request may lack Host; the HTTP/1.1 request upstream may not.
            self.stream.headers["host"] = self.host.address
        pool = self.cluster.pool(self.host, self.protocol)
        assert isinstance(pool, PingPongPool), "HTTP/1 is served by ping-pong pools of its codec"
        try:
            # A request that may not be resent gets its reused connection probed first.
            conn, reused = await pool.acquire(probe=self.head.method not in IDEMPOTENT)
        except OverflowError_ as exc:
            return self._reply(replies.overflow(str(exc)))
        except ConnectFailedError as exc:
            log.info("stream %s: %s", self.stream.id, exc)
            return self._upstream_failed(ResetReason.CONNECTION_FAILED, str(exc))
        up = self.upstream = Http1Upstream(pool, conn, reused=reused)
        self.out = [up.codec.encode_request_head(self.head, self.head.framing)]
        return Phase.DOWN_RECV_DATA

    async def _down_recv_data(self) -> Phase:
        up = self.upstream
        assert up is not None
        framing = self.head.framing
        if framing is BodyFraming.NONE:
            return Phase.DOWN_RECV_TRAILER
        out = self.out
        if self.body_started:
            # A retry: resend what was kept (we only retry when all of it was kept).
            assert self.replay is not None
            out.extend(up.codec.encode_body(chunk, framing) for chunk in self.replay)
        if not self.request_done and self.head.expect_continue and not self.continue_sent:
            self.continue_sent = True
            await self.conn.send_all(self.codec.continue_response())
        pending = sum(map(len, out))
        while not self.request_done:
            try:
                event = await self.source.next_event()
            except Http1Error as exc:  # a malformed body: answer it (the connection closes)
                log.info("stream %s: bad request body: %s", self.stream.id, exc.reason)
                self._release_upstream()
                return self._reply(replies.Reply(exc.status, exc.reason + "\n"))
            except (EOFError, ConnectionClosedError) as exc:
                raise ClientGone from exc
            self.body_started = True
            if isinstance(event, Body):
                data = event.data
                self._keep_for_replay(data)
                piece = up.codec.encode_body(data, framing)
                out.append(piece)
                pending += len(piece)
                if pending >= _FLUSH_AT:
                    if not await self._flush_upstream():
                        return self._write_failed()
                    pending = 0
            elif isinstance(event, EndOfMessage):
                self.request_done = True
                self.request_trailers = event.trailers
        return Phase.DOWN_RECV_TRAILER

    def _keep_for_replay(self, data: bytes) -> None:
        if self.replay is None:
            return
        self.replay_size += len(data)
        if self.replay_size > self.ctx.retry_buffer_limit:
            self.replay = None
        else:
            self.replay.append(data)

    async def _flush_upstream(self) -> bool:
        up = self.upstream
        assert up is not None
        data = b"".join(self.out)
        self.out.clear()  # in place: the body loop holds this very list
        try:
            await up.send(data)
        except ConnectionClosedError:
            return False
        return True

    def _write_failed(self) -> Phase:
        """Sending upstream failed; a kept-alive connection that died idle is resent free."""
        up = self.upstream
        stale = up is not None and up.reused and not up.received_any
        return self._upstream_failed(ResetReason.CONNECTION_TERMINATION, "upstream write failed", stale=stale)

    async def _down_recv_trailer(self) -> Phase:
        up = self.upstream
        assert up is not None
        if self.head.framing is not BodyFraming.NONE:
            self.out.append(up.codec.encode_end(self.head.framing, self.request_trailers))
        if not await self._flush_upstream():
            return self._write_failed()
        self._start_timers()
        return Phase.ONEWAY

    async def _wait_notify(self) -> Phase:
        up = self.upstream
        assert up is not None
        deadline = min(self.global_deadline, self.try_deadline)
        head: ResponseHead | None = None
        try:
            # One yield lets the backend answer; if it did, no timeout scope is needed.
            await trio.lowlevel.checkpoint()
            head = self._head_from(up, up.receive_events_nowait())
            if head is None:
                # Most answers still come quickly: wait without watching the client first.
                with trio.CancelScope(deadline=min(deadline, self.sent_at + WATCH_CLIENT_AFTER)):
                    head = await self._read_head(up)
            if head is None and trio.current_time() < deadline:
                # A slow upstream: watch the client meanwhile, so a client that gives
                # up releases the upstream now instead of at the route timeout (the
                # reader task is busy here, so nobody else would notice).
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_client, nursery.cancel_scope)
                    with trio.CancelScope(deadline=deadline):
                        head = await self._read_head(up)
                    nursery.cancel_scope.cancel()
        except (ConnectionClosedError, EOFError, Http1Error) as exc:
            # A kept-alive connection that ends before any answer byte was most likely
            # closed by the server while idle; resend for free, but only requests that
            # are safe to repeat (the server may have acted on the one it received).
            stale = up.reused and not up.received_any and self.head.method in IDEMPOTENT
            return self._upstream_failed(
                ResetReason.CONNECTION_TERMINATION, f"upstream reset: {exc}", stale=stale
            )
        if self.client_gone:
            raise ClientGone("the client closed while its request was upstream")
        if head is None:
            return self._deadline_phase()
        if self._retry_on_status(head.status):
            return self._upstream_failed(ResetReason.UPSTREAM_RESET, f"upstream answered {head.status}")
        self.upstream_head = head
        s = self.stream
        s.response_status = head.status
        s.response_headers = head.headers
        if s.route is not None:
            s.route.apply_response_headers(head.headers)
        return Phase.UP_FILTER

    @classmethod
    async def _read_head(cls, up: Http1Upstream) -> ResponseHead | None:
        """Read until the response head; None if the enclosing scope ran out first."""
        return cls._head_from(up, await up.receive_events())

    @staticmethod
    def _head_from(up: Http1Upstream, events: list[Event]) -> ResponseHead | None:
        """The head at the start of ``events`` (the rest is queued); None if empty."""
        if not events:
            return None
        first = events[0]
        if not isinstance(first, ResponseHead):  # pragma: no cover - the codec starts with a head
            raise EOFError("response body before response head")
        up.events.extend(events[1:])
        return first

    async def _watch_client(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` if the client closes its connection."""
        if await self.conn.wait_peer_closed():
            self.client_gone = True
            scope.cancel()

    # -- response side -----------------------------------------------------------------

    async def _up_recv_header(self) -> Phase:
        reply = self.stream.local_reply
        if reply is not None:
            await self._send_local_reply(reply)
            return Phase.END
        return await self._send_response_head()

    async def _send_response_head(self) -> Phase:
        head = self.upstream_head
        assert head is not None
        status = self.stream.response_status
        if status is not None and status != head.status:  # a sender filter changed it
            head.status, head.reason = status, ""
        framing = self._downstream_framing(head)
        self.down_framing = framing
        self.out = [self.codec.encode_response_head(head, framing, keep_alive=self._down_keep_alive())]
        self.response_started = True
        return Phase.UP_RECV_DATA

    async def _send_local_reply(self, reply: LocalReply) -> None:
        """Send a whole locally made response (head and body in one write)."""
        if not self.request_done:
            self.keep_alive = False  # unread request body: the connection cannot be reused
        # A sender filter may have changed the status (it sees stream.response_status).
        status, body = self.stream.response_status or reply.status, reply.body
        if status < 200:
            # An interim status cannot end a request: answer with the proxy's own error.
            log.error("stream %s: local reply with interim status %d; answering 500", self.stream.id, status)
            status, body = 500, f"invalid local reply status {status}\n".encode()
        if status in _NO_BODY_STATUS:
            head = ResponseHead(status, reply.headers)
            data = self.codec.encode_response_head(head, BodyFraming.NONE, keep_alive=self._down_keep_alive())
        else:
            if body and "content-type" not in reply.headers:
                reply.headers["content-type"] = "text/plain; charset=utf-8"
            head = ResponseHead(status, reply.headers, content_length=len(body))
            data = self.codec.encode_response_head(
                head, BodyFraming.LENGTH, keep_alive=self._down_keep_alive()
            )
            if self.head.method != "HEAD":
                data += body
        self.response_started = True
        await self.conn.send_all(data)

    def _down_keep_alive(self) -> bool:
        return self.keep_alive and self.request_done and not self.source.draining

    def _downstream_framing(self, head: ResponseHead) -> BodyFraming:
        if self.head.method == "HEAD" or head.status in _NO_BODY_STATUS or head.status < 200:
            return BodyFraming.NONE if head.framing is BodyFraming.NONE else head.framing
        if head.framing is BodyFraming.CLOSE or (
            head.framing is BodyFraming.CHUNKED and self.head.version == "1.0"
        ):
            if self.head.version == "1.0":
                self.keep_alive = False
                return BodyFraming.CLOSE
            return BodyFraming.CHUNKED
        return head.framing

    async def _up_recv_data(self) -> Phase:
        up = self.upstream
        assert up is not None
        # Small responses usually arrive whole with their head: finish those without
        # arming a timeout scope (a cancel scope costs more than the rest of this).
        ended = self._encode_response_events(up, list(up.events))
        up.events.clear()
        if not ended:
            try:
                with trio.CancelScope(deadline=self.global_deadline):
                    while not ended:
                        await self.conn.send_all(b"".join(self.out))
                        self.out.clear()
                        ended = self._encode_response_events(up, await up.receive_events())
            except (ConnectionClosedError, EOFError, Http1Error) as exc:
                if isinstance(exc, ConnectionClosedError) and self.conn.closed:
                    raise  # the downstream went away
                log.info("stream %s: upstream broke mid-response: %s", self.stream.id, exc)
        if not ended:
            # Timed out or broke after the response started: all we can do is cut it.
            self.stream.reset(ResetReason.UPSTREAM_RESET)
            self.keep_alive = False
            self.conn.close()
            return Phase.END
        await self.conn.send_all(b"".join(self.out))
        self.out.clear()
        return Phase.UP_RECV_TRAILER

    def _encode_response_events(self, up: Http1Upstream, events: list[Event]) -> bool:
        """Encode response events into ``self.out``; True once the response ended."""
        framing = self.down_framing
        codec = self.codec
        out = self.out
        for i, event in enumerate(events):
            if isinstance(event, Body):
                out.append(codec.encode_body(event.data, framing))
            elif isinstance(event, EndOfMessage):
                out.append(codec.encode_end(framing, event.trailers))
                # Anything after the response is unexpected: never reuse such a connection.
                up.done = i == len(events) - 1
                return True
        return False

    async def _up_recv_trailer(self) -> Phase:
        if self.down_framing is BodyFraming.CLOSE:
            self.keep_alive = False
        return Phase.END


def _request_host(head: RequestHead) -> str:
    host = head.headers.get("host")
    if host is not None:
        return host
    target = head.target
    if "://" in target:  # absolute-form
        rest = target.split("://", 1)[1]
        return rest.split("/", 1)[0]
    return ""
