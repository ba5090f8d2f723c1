"""The downstream phase machine for one HTTP/1 request.

Theory of operation
-------------------
:class:`DownStream` walks the phases of :mod:`mosnpy.proxy.phases` in the connection's
own reader task: no task is spawned per request.  Each handler returns the next phase
and :func:`~mosnpy.proxy.phases.check` enforces the table.  The machine only awaits
where it must: sending, reading more request body from the downstream, and reading the
upstream's answer (WaitNotify and the response phases) — the latter under cancel
scopes whose deadlines are the route's global timeout and the retry policy's per-try
timeout.

Bodies stream both ways.  The request body is forwarded as it arrives; up to
``retry_buffer_limit`` bytes of it are also kept so the request can be resent on a
retry, and a larger body that was already (partly) sent makes the request
non-retryable.  The head and a small body leave in one ``send``.

Failures become local replies with a clear reason: no route 404, no healthy host or
connect failure 502, overflow 503, timeout 504 (:mod:`mosnpy.proxy.replies`).  Once
the response has started downstream nothing can be replied any more: the downstream
connection is closed instead, so the client sees a truncated response, not a wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import Http1Error, Http1ServerCodec
from mosnpy.protocol.http1.events import Body, BodyFraming, EndOfMessage, Event, RequestHead, ResponseHead
from mosnpy.proxy import replies
from mosnpy.proxy.context import DEFAULT_GLOBAL_TIMEOUT, ProxyContext
from mosnpy.proxy.phases import MAX_JUMPS, ORDER, Phase, check, is_backward
from mosnpy.proxy.upstream_http1 import Http1Upstream
from mosnpy.registry import UnknownNameError
from mosnpy.stream.chain import StreamFilterChain
from mosnpy.stream.filter import FilterPhase, StreamFilterStatus
from mosnpy.stream.stream import LocalReply, ResetReason, Stream
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import ConnectFailedError, NoHealthyHostError, OverflowError_
from mosnpy.upstream.host import Host

__all__ = ["DownStream", "RequestSource"]

log = logging.getLogger("mosnpy.proxy")

#: Flush buffered request bytes upstream once this many are pending.
_FLUSH_AT = 64 * 1024
#: MOSN's pause before a retry.
RETRY_BACKOFF = 0.01
#: Statuses that carry no body.
_NO_BODY_STATUS = frozenset({204, 304})

_EMPTY_CHAIN = StreamFilterChain()


class RequestSource(Protocol):
    """Where the rest of the request comes from: the downstream connection's codec."""

    async def next_event(self) -> Event:
        """The next request event; raises EOFError if the client went away."""
        ...


class _ClientGone(Exception):
    """The downstream client closed or broke mid-request: nobody to answer."""


Handler = Callable[["DownStream"], Awaitable[Phase]]


class DownStream:
    """One request's walk through the phases, from request head to response end."""

    def __init__(
        self,
        ctx: ProxyContext,
        conn: Connection,
        codec: Http1ServerCodec,
        source: RequestSource,
        head: RequestHead,
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.codec = codec
        self.source = source
        self.head = head
        headers = head.headers
        self.stream = Stream(
            protocol="Http1",
            headers=headers,
            method=head.method,
            path=head.path,
            host=_request_host(head),
            downstream_address=conn.remote_address,
            start_time=trio.current_time(),
        )
        if ctx.stream_filters:
            self.chain = StreamFilterChain()
            for factory in ctx.stream_filters:
                factory.create_filter_chain(self.chain)
        else:
            self.chain = _EMPTY_CHAIN
        #: the downstream request has been read to its end
        self.request_done = head.framing is BodyFraming.NONE
        self.request_trailers: HeaderMap | None = None
        #: request body kept for retries; None once it outgrew the limit
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.body_started = False
        self.continue_sent = False
        self.keep_alive = head.keep_alive
        self.cluster: Cluster | None = None
        self.counted = False
        self.host: Host | None = None
        self.upstream: Http1Upstream | None = None
        self.upstream_head: ResponseHead | None = None
        self.out: list[bytes] = []
        self.global_timeout = DEFAULT_GLOBAL_TIMEOUT
        self.try_timeout = 0.0
        self.global_deadline = float("inf")
        self.try_deadline = float("inf")
        self.retries_done = 0
        self.retry_counted = False
        self.response_started = False
        self.down_framing = BodyFraming.NONE

    # -- the machine ---------------------------------------------------------------

    async def run(self) -> bool:
        """Serve the request; return whether the downstream connection stays open."""
        phase = Phase.INIT
        jumps = 0
        try:
            while phase is not Phase.END:
                nxt = await _HANDLER_BY_INDEX[phase.idx](self)
                check(phase, nxt)
                if is_backward(phase, nxt):
                    jumps += 1
                    if jumps > MAX_JUMPS:
                        log.error("stream %s: more than %d phase jumps, giving up", self.stream.id, MAX_JUMPS)
                        self._reply(replies.internal_error("too many retries or re-matches"))
                        nxt = Phase.UP_FILTER if not self.response_started else Phase.END
                phase = nxt
        except _ClientGone:
            self.keep_alive = False
        except ConnectionClosedError:
            # Writing downstream failed: the client is gone.
            self.keep_alive = False
        finally:
            self._finish()
        return self.keep_alive and self.request_done and not self.ctx.draining

    def _finish(self) -> None:
        if self.upstream is not None:
            self.upstream.release()
            self.upstream = None
        if self.counted and self.cluster is not None:
            self.cluster.end_request()
            self.counted = False
        if self.retry_counted and self.cluster is not None:
            self.cluster.end_retry()
            self.retry_counted = False

    # -- request side ---------------------------------------------------------------

    async def _init(self) -> Phase:
        return Phase.DOWN_FILTER

    async def _down_filter(self) -> Phase:
        status = await self.chain.run_receivers(FilterPhase.BEFORE_ROUTE, self.stream)
        return self._after_receivers(status, Phase.MATCH_ROUTE)

    async def _match_route(self) -> Phase:
        s = self.stream
        routes = self.ctx.routes
        route = routes.match(s.host, s.path, s.headers) if routes is not None else None
        if route is None:
            return self._reply(replies.no_route(s.host, s.path))
        s.route = route
        if route.direct_response is not None:
            dr = route.direct_response
            return self._reply(replies.direct(dr.status, dr.body))
        if route.redirect is not None:
            return self._reply(replies.redirect(route.redirect, s.host, self.head.target))
        s.cluster_name = route.choose_cluster()
        route.apply_request_headers(s.headers)
        if route.prefix_rewrite:
            self.head.target = route.rewrite_path(self.head.target)
        if route.host_rewrite:
            s.headers["host"] = route.host_rewrite
        self._set_timeouts(route.timeout, route.retry_policy.retry_timeout if route.retry_policy else 0.0)
        return Phase.DOWN_FILTER_AFTER_ROUTE

    def _set_timeouts(self, route_timeout: float, try_timeout: float) -> None:
        """Route values, overridden by the ``x-mosn-*-timeout`` headers (ms)."""
        headers = self.stream.headers
        g = route_timeout or DEFAULT_GLOBAL_TIMEOUT
        t = try_timeout
        override = headers.get("x-mosn-global-timeout")
        if override is not None and override.isdigit():
            g = int(override) / 1000 or DEFAULT_GLOBAL_TIMEOUT
        override = headers.get("x-mosn-try-timeout")
        if override is not None and override.isdigit():
            t = int(override) / 1000
        self.global_timeout = g
        self.try_timeout = t if 0 < t < g else 0.0

    async def _down_filter_after_route(self) -> Phase:
        status = await self.chain.run_receivers(FilterPhase.AFTER_ROUTE, self.stream)
        if status is StreamFilterStatus.REMATCH_ROUTE:
            return Phase.MATCH_ROUTE
        return self._after_receivers(status, Phase.CHOOSE_HOST)

    async def _choose_host(self) -> Phase:
        s = self.stream
        try:
            cluster = self.cluster = self.ctx.clusters.get(s.cluster_name)
        except UnknownNameError:
            return self._reply(replies.no_cluster(s.cluster_name))
        try:
            if not self.counted:
                cluster.start_request()
                self.counted = True
            self.host = s.upstream_host = cluster.choose_host()
        except NoHealthyHostError as exc:
            return self._reply(replies.no_healthy_host(str(exc)))
        except OverflowError_ as exc:
            return self._reply(replies.overflow(str(exc)))
        return Phase.DOWN_FILTER_AFTER_CHOOSE_HOST

    async def _down_filter_after_choose_host(self) -> Phase:
        status = await self.chain.run_receivers(FilterPhase.AFTER_CHOOSE_HOST, self.stream)
        if status is StreamFilterStatus.RECHOOSE_HOST:
            return Phase.CHOOSE_HOST
        return self._after_receivers(status, Phase.DOWN_RECV_HEADER)

    async def _down_recv_header(self) -> Phase:
        assert self.cluster is not None and self.host is not None
        pool = self.cluster.pool(self.host, "Http1")
        try:
            conn, reused = await pool.acquire()
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
            except (EOFError, ConnectionClosedError, Http1Error) as exc:
                raise _ClientGone from exc
            self.body_started = True
            if isinstance(event, Body):
                data = event.data
                self._keep_for_replay(data)
                piece = up.codec.encode_body(data, framing)
                out.append(piece)
                pending += len(piece)
                if pending >= _FLUSH_AT:
                    if not await self._flush_upstream():
                        return self._upstream_failed(
                            ResetReason.CONNECTION_TERMINATION, "upstream write failed"
                        )
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

    async def _down_recv_trailer(self) -> Phase:
        up = self.upstream
        assert up is not None
        if self.head.framing is not BodyFraming.NONE:
            self.out.append(up.codec.encode_end(self.head.framing, self.request_trailers))
        if not await self._flush_upstream():
            return self._upstream_failed(ResetReason.CONNECTION_TERMINATION, "upstream write failed")
        now = trio.current_time()
        if self.global_deadline == float("inf"):
            self.global_deadline = now + self.global_timeout
        self.try_deadline = now + self.try_timeout if self.try_timeout else float("inf")
        return Phase.ONEWAY

    async def _oneway(self) -> Phase:
        return Phase.WAIT_NOTIFY  # HTTP always expects a response

    async def _retry(self) -> Phase:
        assert self.cluster is not None
        await trio.sleep(RETRY_BACKOFF)
        try:
            self.host = self.stream.upstream_host = self.cluster.choose_host()
        except NoHealthyHostError as exc:
            return self._reply(replies.no_healthy_host(str(exc)))
        return Phase.DOWN_RECV_HEADER

    async def _wait_notify(self) -> Phase:
        up = self.upstream
        assert up is not None
        deadline = min(self.global_deadline, self.try_deadline)
        head: ResponseHead | None = None
        try:
            with trio.move_on_at(deadline):
                while head is None:
                    events = await up.receive_events()
                    first = events[0]
                    if isinstance(first, ResponseHead):
                        head = first
                        up.events.extend(events[1:])
                    else:  # pragma: no cover - the codec always starts with a head
                        raise EOFError("response body before response head")
        except (ConnectionClosedError, EOFError, Http1Error) as exc:
            stale = up.reused and not up.received_any
            return self._upstream_failed(
                ResetReason.CONNECTION_TERMINATION, f"upstream reset: {exc}", stale=stale
            )
        if head is None:
            if trio.current_time() >= self.global_deadline:
                return self._upstream_failed(ResetReason.GLOBAL_TIMEOUT, "upstream timeout")
            return self._upstream_failed(ResetReason.PER_TRY_TIMEOUT, "upstream per-try timeout")
        if self._retry_on_status(head.status):
            return self._upstream_failed(ResetReason.UPSTREAM_RESET, f"upstream answered {head.status}")
        self.upstream_head = head
        s = self.stream
        s.response_status = head.status
        s.response_headers = head.headers
        if s.route is not None:
            s.route.apply_response_headers(head.headers)
        return Phase.UP_FILTER

    # -- failures and retries ----------------------------------------------------------

    def _retry_on_status(self, status: int) -> bool:
        route = self.stream.route
        policy = route.retry_policy if route is not None else None
        if policy is None or not policy.retry_on:
            return False
        codes = policy.status_codes
        hit = status in codes if codes else status >= 500
        return hit and self._can_retry(stale=False, reason=ResetReason.UPSTREAM_RESET)

    def _can_retry(self, *, stale: bool, reason: ResetReason) -> bool:
        if self.body_started and (self.replay is None or not self.request_done):
            return False  # part of a large body is gone: cannot resend it
        if reason is ResetReason.GLOBAL_TIMEOUT:
            return False
        if trio.current_time() >= self.global_deadline:
            return False
        if stale:
            return True  # a dead kept-alive connection: resend on a fresh one, free
        route = self.stream.route
        policy = route.retry_policy if route is not None else None
        if policy is None or not policy.retry_on:
            allowed = reason is ResetReason.CONNECTION_FAILED
            budget = policy.num_retries if policy is not None and policy.num_retries else 1
        else:
            allowed = True
            budget = policy.num_retries
        if not allowed or self.retries_done >= budget:
            return False
        assert self.cluster is not None
        if not self.retry_counted:
            if not self.cluster.try_start_retry():
                return False
            self.retry_counted = True
        return True

    def _upstream_failed(self, reason: ResetReason, message: str, *, stale: bool = False) -> Phase:
        """Drop the failed attempt; retry if allowed, else reply with the reason's status."""
        if self.upstream is not None:
            self.upstream.release()
            self.upstream = None
        if self._can_retry(stale=stale, reason=reason):
            if not stale:
                self.retries_done += 1
            log.debug("stream %s: retrying after %s", self.stream.id, message)
            return Phase.RETRY
        self.stream.reset(reason)
        return self._reply(replies.for_reset(reason, message))

    # -- response side ----------------------------------------------------------------

    def _after_receivers(self, status: StreamFilterStatus, nxt: Phase) -> Phase:
        if status is StreamFilterStatus.TERMINATE:
            self.keep_alive = False
            return Phase.END
        if self.stream.local_reply is not None:
            return Phase.UP_FILTER
        return nxt

    def _reply(self, reply: replies.Reply) -> Phase:
        self.stream.send_local_reply(reply.status, reply.body, reply.headers)
        return Phase.UP_FILTER

    async def _up_filter(self) -> Phase:
        s = self.stream
        if s.local_reply is not None:
            s.response_status = s.local_reply.status
            s.response_headers = s.local_reply.headers
        if self.chain.senders:
            status = await self.chain.run_senders(s)
            if status is StreamFilterStatus.TERMINATE:
                self.keep_alive = False
                return Phase.END
        return Phase.UP_RECV_HEADER

    async def _up_recv_header(self) -> Phase:
        reply = self.stream.local_reply
        if reply is not None:
            await self._send_local_reply(reply)
            return Phase.END
        head = self.upstream_head
        assert head is not None
        framing = self._downstream_framing(head)
        self.down_framing = framing
        self.out = [self.codec.encode_response_head(head, framing, keep_alive=self._down_keep_alive())]
        self.response_started = True
        return Phase.UP_RECV_DATA

    async def _send_local_reply(self, reply: LocalReply) -> None:
        """Send a whole locally made response (head and body in one write)."""
        if not self.request_done:
            self.keep_alive = False  # unread request body: the connection cannot be reused
        if reply.body and "content-type" not in reply.headers:
            reply.headers["content-type"] = "text/plain; charset=utf-8"
        head = ResponseHead(reply.status, reply.headers, content_length=len(reply.body))
        data = self.codec.encode_response_head(head, BodyFraming.LENGTH, keep_alive=self._down_keep_alive())
        if self.head.method != "HEAD":
            data += reply.body
        self.response_started = True
        await self.conn.send_all(data)

    def _down_keep_alive(self) -> bool:
        return self.keep_alive and self.request_done and not self.ctx.draining

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
                with trio.move_on_at(self.global_deadline):
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

    async def _end(self) -> Phase:  # pragma: no cover - the loop stops before END
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


_HANDLERS: dict[Phase, Handler] = {
    Phase.INIT: DownStream._init,
    Phase.DOWN_FILTER: DownStream._down_filter,
    Phase.MATCH_ROUTE: DownStream._match_route,
    Phase.DOWN_FILTER_AFTER_ROUTE: DownStream._down_filter_after_route,
    Phase.CHOOSE_HOST: DownStream._choose_host,
    Phase.DOWN_FILTER_AFTER_CHOOSE_HOST: DownStream._down_filter_after_choose_host,
    Phase.DOWN_RECV_HEADER: DownStream._down_recv_header,
    Phase.DOWN_RECV_DATA: DownStream._down_recv_data,
    Phase.DOWN_RECV_TRAILER: DownStream._down_recv_trailer,
    Phase.ONEWAY: DownStream._oneway,
    Phase.RETRY: DownStream._retry,
    Phase.WAIT_NOTIFY: DownStream._wait_notify,
    Phase.UP_FILTER: DownStream._up_filter,
    Phase.UP_RECV_HEADER: DownStream._up_recv_header,
    Phase.UP_RECV_DATA: DownStream._up_recv_data,
    Phase.UP_RECV_TRAILER: DownStream._up_recv_trailer,
    Phase.END: DownStream._end,
}

#: The handlers in phase order, indexed by ``Phase.idx`` on the hot path.
_HANDLER_BY_INDEX: tuple[Handler, ...] = tuple(_HANDLERS[p] for p in ORDER)
