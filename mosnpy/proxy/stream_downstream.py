"""The phase machine over stream connections: one request, any protocol, no task of its own.

Theory of operation
-------------------
A :class:`StreamDownStream` is one downstream stream of a
:class:`~mosnpy.proxy.stream_server.StreamServer`.  It is created by the connection's
reader when the server stream connection reports
:class:`~mosnpy.protocol.api.RequestReceived`, and walks the phases right there
(:meth:`~mosnpy.proxy.downstream.DownStream.advance`) until it must wait.  It never owns
a task unless a phase really waits (a connect, a retry's back-off, a filter that may
sleep); it never owns a cancel scope (its deadline is one entry in the connection's
:class:`~mosnpy.proxy.timers.Timers`).  The I/O phases, the same for every protocol:

* ``DOWN_RECV_HEADER`` takes a stream on a ready upstream connection from the cluster's
  pool for the upstream protocol (dialing — a wait — only when none is ready) and
  queues the request head on it: **this is the phase that connects upstream**;
* ``DOWN_RECV_DATA`` queues the body pieces received so far and, while the request has
  not ended, parks; each further piece is forwarded as it arrives; a piece is kept for
  a retry while the body stays under ``retry_buffer_limit``;
* ``DOWN_RECV_TRAILER`` ends the request upstream (trailers or an empty end) and starts
  the timers: the request is sent;
* ``WAIT_NOTIFY`` parks with one timer armed; the upstream connection's reader resumes
  the stream with the response (:meth:`on_upstream_event`), a reset becomes a retry or a
  local reply, and the timer becomes the 504 (or a per-try retry);
* ``UP_RECV_HEADER`` encodes the response head (or the local reply, in the protocol's
  own language) on the server stream connection; ``UP_RECV_DATA`` forwards the body as
  it arrives (parking between pieces) and ``UP_RECV_TRAILER`` ends the stream.

Nothing here writes to a socket: commands queue bytes in the stream connections'
outboxes and mark them touched; whoever drives the batch (the downstream reader, an
upstream reader, the timer task) flushes once at its end.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from mosnpy.protocol.api import (
    DataReceived,
    FlowResumed,
    HeaderMap,
    ProtocolConversionError,
    RequestHeaders,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.proxy import replies
from mosnpy.proxy.downstream import ClientGone, DownStream, Step
from mosnpy.proxy.phases import Phase, allowed
from mosnpy.proxy.timers import Timer
from mosnpy.router import Route
from mosnpy.stream.io import STREAM_BUFFER, flush_touched
from mosnpy.stream.stream import Stream
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_
from mosnpy.upstream.multiplex import MultiplexConnection, MultiplexPool

if TYPE_CHECKING:
    from mosnpy.proxy.stream_server import StreamServer

__all__ = ["StreamDownStream"]

log: Final = logging.getLogger("mosnpy.proxy")

_INF: Final = float("inf")
#: Methods a proxy may send twice (RFC 9110 §9.2.2): resent for free when the first
#: attempt went to a kept-alive connection that turned out dead.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_WAIT_NOTIFY: Final = Phase.WAIT_NOTIFY
_DOWN_RECV_DATA: Final = Phase.DOWN_RECV_DATA
_UP_RECV_DATA: Final = Phase.UP_RECV_DATA


class StreamDownStream(DownStream):
    """One request/response through the proxy over stream connections."""

    # Defaults on the class, as in DownStream: an instance stores what changes.
    oneway = False
    body_size = 0
    trailers: HeaderMap | None = None
    #: pieces of ``body`` already queued on the current upstream attempt
    body_sent = 0
    upstream: MultiplexConnection | None = None
    up_sid = 0
    up_ended = False
    response: ResponseReceived | None = None
    response_ended = False
    #: response body and trailers that arrived before the response could stream
    #: (a list once there are any)
    response_parts: list[StreamEvent] | None = None
    timer: Timer | None = None
    #: body bytes received and not yet acknowledged to their sender (flow
    #: control: acknowledged once passed on to a peer that keeps up)
    down_unacked = 0
    up_unacked = 0
    _drain_waiting = False
    #: bounds a request body that stalls before any answer (stream_idle_timeout):
    #: checked every period against the pieces counted meanwhile
    body_timer: Timer | None = None
    body_pieces = 0

    def __init__(self, server: StreamServer, event: RequestReceived) -> None:
        headers = event.headers
        stream = Stream(
            protocol=server.protocol.name,
            headers=headers,
            method=event.method,
            path=event.path,
            host=event.host,
            downstream_address=server.conn.remote_address,
            start_time=server.conn.now(),
        )
        # (isinstance, not getattr with a default: a miss raises and clears an exception)
        if isinstance(headers, RequestHeaders):
            stream.variables["target"] = headers.target
        super().__init__(server.ctx, server.conn, stream)
        self.server = server
        self.sid = event.stream_id
        if event.oneway:
            self.oneway = True
        if event.timeout is not None:
            self.own_timeout = event.timeout
        self.request_ended = event.end_stream
        #: body pieces received (kept for a retry while under the limit; None after)
        self.body: list[bytes] | None = []

    def __repr__(self) -> str:
        return f"<StreamDownStream {self.stream.protocol}#{self.sid} {self.phase.value}>"

    # -- hooks -----------------------------------------------------------------------

    def _is_oneway(self) -> bool:
        return self.oneway

    def _replayable(self) -> bool:
        return self.body is not None

    def _apply_route(self, route: Route) -> None:
        headers = self.stream.headers
        if route.prefix_rewrite and isinstance(headers, RequestHeaders):
            headers.target = route.rewrite_path(headers.target)
        if route.host_rewrite:
            headers["host"] = route.host_rewrite

    def _release_upstream(self) -> None:
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.close_stream(self.up_sid)

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        # What was received and never passed on still counts against the peers'
        # connection windows: give it back.
        if self.down_unacked:
            self.server.sc.consumed(self.sid, self.down_unacked)
            self.down_unacked = 0
            self.server.touch()
        up = self.upstream
        if self.up_unacked and up is not None:
            up.sc.consumed(self.up_sid, self.up_unacked)
            self.up_unacked = 0
            up.touch()
        super()._finish()
        server = self.server
        if server.held_by is self:
            server.unhold(self)
        server.stream_done(self)

    def _flush(self) -> None:
        flush_touched()

    # -- request side ------------------------------------------------------------------

    def _down_recv_header(self) -> Step:
        assert self.cluster is not None and self.host is not None
        self._finalize_request()
        s = self.stream
        if not s.host and isinstance(s.headers, RequestHeaders):
            # An HTTP/1.0 request may lack Host; the request upstream may not.
            s.headers["host"] = self.host.address
        protocol = self.server.upstream_protocol
        route = s.route
        if route is not None and route.upstream_protocol:
            protocol = self.ctx.route_protocols.get(route.upstream_protocol, protocol)
        pool = self.cluster.pool(self.host, protocol)
        assert isinstance(pool, MultiplexPool), "stream protocols are served by stream pools"
        # A request that may not be resent gets a reused connection probed first.
        probe = s.method not in IDEMPOTENT
        try:
            mc = pool.ready(probe=probe)
        except OverflowError_ as exc:
            return self._reply(replies.overflow(str(exc)))
        if mc is None:
            return self._connect(pool, probe)
        return self._send_head(mc)

    async def _connect(self, pool: MultiplexPool, probe: bool) -> Phase:
        # A request that waits for a connection (one being dialed, or its turn in the
        # pending queue) waits no longer than its own timeout: otherwise a queue behind
        # slow requests of other routes would hold it for their timeouts in turn.
        deadline = self.global_deadline  # set once a try went out (a retry's wait)
        if deadline == _INF:
            deadline = self.conn.now() + self.global_timeout
        with trio.move_on_at(deadline) as waited:
            try:
                mc = await pool.connection(probe=probe)
            except OverflowError_ as exc:
                return self._reply(replies.overflow(str(exc)))
            except ConnectFailedError as exc:
                log.info("stream %s: %s", self.stream.id, exc)
                return self._upstream_failed(ResetReason.CONNECTION_FAILED, str(exc))
        if waited.cancelled_caught:
            why = f"no upstream connection free within the {self.global_timeout:g}s timeout"
            return self._upstream_failed(ResetReason.GLOBAL_TIMEOUT, why)
        if self.completed:
            if not mc.listeners:
                pool.released(mc)  # unused: another stream may have it
            raise ClientGone("the client left while its upstream connected")
        return self._send_head(mc)

    def _send_head(self, mc: MultiplexConnection) -> Phase:
        if self.server.held_by is self:
            self.server.unhold(self)
        sid = mc.open_stream(self)
        self.upstream = mc
        self.up_sid = sid
        self.body_sent = 0
        self.response = None
        self.response_parts = None
        self.response_ended = False
        whole = self.request_ended and not self.body_size and self.trailers is None
        headers = self.stream.headers
        own = self.own_timeout
        if own is not None and own < _INF and isinstance(headers, RequestHeaders):
            # The request's own deadline goes on, less the time spent here.
            headers.timeout = max(own - (self.conn.now() - self.stream.start_time), 0.0)
        try:
            mc.sc.send_headers(sid, headers, end_stream=whole)
        except ProtocolConversionError as exc:
            self._release_upstream()
            return self._reply(replies.Reply(502, f"{exc}\n"))
        self.up_ended = whole
        mc.touch()
        return _DOWN_RECV_DATA

    def _down_recv_data(self) -> Step:
        up = self.upstream
        assert up is not None
        body = self.body
        if body is not None and self.body_sent < len(body):
            for piece in body[self.body_sent :]:
                up.sc.send_data(self.up_sid, piece, False)
            self.body_sent = len(body)
            up.touch()
            self._ack_down()
        if not self.request_ended:
            server = self.server
            server.sc.request_body_wanted(self.sid)  # HTTP/1: 100 Continue, if asked
            server.touch()
            if self.body_timer is None and self.ctx.config.stream_idle_timeout > 0:
                self._arm_body_timer()
            return None  # park: on_downstream_event forwards the rest as it comes
        return Phase.DOWN_RECV_TRAILER

    def _down_recv_trailer(self) -> Step:
        self._end_request()
        self._start_timers()
        return Phase.ONEWAY

    def _arm_body_timer(self) -> None:
        timeout = self.ctx.config.stream_idle_timeout
        seen = self.body_pieces
        self.body_timer = self.server.timers().arm(
            self.conn.now() + timeout, lambda: self._on_body_timer(seen)
        )

    def _on_body_timer(self, seen: int) -> None:
        """No body piece for a whole period while nothing was answered: 408."""
        self.body_timer = None
        if self.completed or self.request_ended or self.phase is not _DOWN_RECV_DATA:
            return
        if self.body_pieces != seen:
            self._arm_body_timer()  # still moving
            return
        log.info("stream %s: request body stalled; answering 408", self.stream.id)
        self.keep_alive = False
        self._release_upstream()
        self._resume(self._reply(replies.Reply(408, "request body not received in time\n")))

    def _end_request(self) -> None:
        """Send the request's end upstream (its trailers, or an empty last piece)."""
        up = self.upstream
        assert up is not None
        if not self.up_ended:
            if self.trailers is not None:
                up.sc.send_trailers(self.up_sid, self.trailers)
            else:
                up.sc.send_data(self.up_sid, b"", True)
            self.up_ended = True
            up.touch()

    def _oneway(self) -> Step:
        if self.oneway:
            up = self.upstream
            if up is not None:  # nothing comes back: forget the stream quietly
                self.upstream = None
                up.close_stream(self.up_sid, reset=False)
            return Phase.END
        return _WAIT_NOTIFY

    def on_downstream_event(self, event: StreamEvent) -> None:
        """More of the request (body, trailers) or its reset, from the server reader."""
        if self.completed:
            if isinstance(event, DataReceived) and event.data and self.server.sc.flow_controlled:
                self.server.sc.consumed(self.sid, len(event.data))  # nobody wants it
                self.server.touch()
            return
        if isinstance(event, StreamReset):
            self.keep_alive = False
            self.stream.reset(event.reason)
            self._end_early()
            return
        if isinstance(event, DataReceived):
            data = event.data
            if data:
                self.body_pieces += 1
                self.bytes_received += len(data)
                if self.server.sc.flow_controlled:
                    self.down_unacked += len(data)
                self._keep(data)
                up = self.upstream
                if up is not None and not self.up_ended:  # full duplex: in any phase
                    up.sc.send_data(self.up_sid, data, False)
                    up.touch()
                    if self.body is not None:
                        self.body_sent = len(self.body)
                    self._ack_down()
            ended = event.end_stream
        elif isinstance(event, FlowResumed):
            self._ack_up()  # the client opened its window: the upstream may send more
            return
        elif isinstance(event, TrailersReceived):
            self.trailers = event.trailers
            ended = True
        else:
            return
        if ended:
            self.request_ended = True
            if self.phase is _DOWN_RECV_DATA and self.upstream is not None:
                self._resume(Phase.DOWN_RECV_TRAILER)
            elif self.upstream is not None and not self.up_ended:
                self._end_request()  # the response started first (full duplex)

    def _ack_down(self) -> None:
        """Let the client send more of the request body, unless the upstream stream
        still holds a lot of it (its window is shut): then its FlowResumed does it."""
        n = self.down_unacked
        up = self.upstream
        if not n or up is None or up.sc.buffered(self.up_sid) > STREAM_BUFFER:
            return
        self.down_unacked = 0
        self.server.sc.consumed(self.sid, n)
        self.server.touch()

    def _ack_up(self) -> None:
        """Let the upstream send more of the response body, unless the client is
        behind: its stream holds a lot (its window is shut: its FlowResumed comes back
        here) or its socket does (a task waits for the drain: rare, the slow case)."""
        n = self.up_unacked
        up = self.upstream
        if not n or up is None:
            return
        server = self.server
        if server.sc.buffered(self.sid) > STREAM_BUFFER:
            return
        if server.over_backlog():
            nursery = server.conn.nursery
            if not self._drain_waiting and nursery is not None:
                self._drain_waiting = True
                nursery.start_soon(self._ack_after_drain)
            return
        self.up_unacked = 0
        up.sc.consumed(self.up_sid, n)
        up.touch()

    async def _ack_after_drain(self) -> None:
        await self.server.conn.drain()
        self._drain_waiting = False
        if not self.completed:
            self._ack_up()
            flush_touched()

    def _keep(self, data: bytes) -> None:
        """Keep a body piece for a retry, or give up retrying once it is too big.

        While no upstream takes the body (connecting, a retry's back-off, a filter that
        waits) it is all kept; past ``retry_buffer_limit`` the server stops reading the
        client until an upstream takes it, so an upload is never buffered whole.
        """
        body = self.body
        if body is None:
            return
        self.body_size += len(data)
        if self.body_size > self.ctx.retry_buffer_limit:
            if self.upstream is not None:
                self.body = None  # part of it is gone upstream: no retry from here on
                return
            self.server.hold(self)
        body.append(data)

    # -- waiting -----------------------------------------------------------------------

    def _wait_notify(self) -> Step:
        if self.response is not None:
            return self._response_phase()
        self._arm(min(self.global_deadline, self.try_deadline))
        return None  # park: the response, a reset or the timer resumes

    def _response_phase(self) -> Phase:
        response = self.response
        assert response is not None and self.cluster is not None
        outlier = self.cluster.outlier
        if outlier is not None and self.host is not None:
            outlier.put_status(self.host, response.status)
        route = self.stream.route
        if route is not None and route.retry_policy is not None and self._retry_on_status(response.status):
            return self._upstream_failed(
                ResetReason.UPSTREAM_RESET, f"upstream answered {response.status}", answered=True
            )
        s = self.stream
        s.response_status = response.status
        s.response_headers = response.headers
        if s.route is not None and s.route.edits_response:
            s.route.apply_response_headers(response.headers)
        self.response_ended = response.end_stream
        if not response.end_stream and self.try_deadline < self.global_deadline:
            # A per-try timeout bounds the wait for the head; the body gets the rest
            # of the global deadline.
            self._arm(self.global_deadline)
        return Phase.UP_FILTER

    def _arm(self, deadline: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadline < _INF:
            self.timer = self.server.timers().arm(deadline, self._on_timeout)

    def on_upstream_event(self, event: StreamEvent) -> None:
        """The upstream stream's response, body, trailers or reset (its reader calls)."""
        if self.completed:
            return
        if isinstance(event, ResponseReceived):
            if self.response is not None:
                return
            self.response = event
            if self.phase is _WAIT_NOTIFY:
                self._resume(self._response_phase())
            elif self.phase is _DOWN_RECV_DATA and self.upstream is not None:
                # The answer starts while the request still streams (gRPC bidi, an
                # early answer): both directions flow from here on.
                self._resume(self._response_phase())
        elif isinstance(event, (DataReceived, TrailersReceived)):
            up = self.upstream
            if event.__class__ is DataReceived and up is not None and up.sc.flow_controlled:
                self.up_unacked += len(event.data)
            self._response_part(event)
        elif isinstance(event, FlowResumed):
            self._ack_down()  # the upstream opened its window: the client may send more
        elif isinstance(event, StreamReset):
            self.upstream = None  # the pool already forgot it
            self._upstream_reset(event)

    def _resume(self, nxt: Phase) -> None:
        """Go on from the parked phase to ``nxt`` (checked against the table).

        The timer stays armed: it bounds the response's body too, and ends with the
        stream (or is re-armed by the next WAIT_NOTIFY).
        """
        try:
            nxt = self._transition(self.phase, nxt)
        except Exception as exc:
            self._failed(self.phase, exc)
            return
        self.advance(nxt)

    def _upstream_reset(self, event: StreamReset) -> None:
        message = f"upstream reset: {event.message or event.reason.value}"
        if self.response_started:
            # The response is half way downstream: all we can do is cut it.
            log.info("stream %s: upstream broke mid-response: %s", self.stream.id, message)
            self._cut(ResetReason.UPSTREAM_RESET)
        elif self.phase is _WAIT_NOTIFY or self.phase is _DOWN_RECV_DATA:
            reason = event.reason
            if reason is ResetReason.LOCAL_RESET:
                reason = ResetReason.UPSTREAM_RESET
            # Nothing of the answer came from a reused connection: most likely the
            # server closed it while idle; a request safe to repeat goes again, free.
            stale = event.unprocessed and self.stream.method in IDEMPOTENT
            self._resume(self._upstream_failed(reason, message, stale=stale))
        else:
            # Still in a phase that waits (sender filters): the reply goes as it is.
            self.response = None

    def _on_timeout(self) -> None:
        self.timer = None
        if self.completed:
            return
        if self.phase is _WAIT_NOTIFY:
            self._resume(self._deadline_phase())
        elif self.phase is _UP_RECV_DATA:
            log.info("stream %s: upstream timed out mid-response", self.stream.id)
            self._release_upstream()
            self._cut(ResetReason.GLOBAL_TIMEOUT)

    def _cut(self, reason: ResetReason) -> None:
        """End a stream whose response already started: reset it downstream."""
        self.stream.reset(reason)
        self.response_flags |= replies.FLAG_FOR_RESET.get(reason, 0)
        self.keep_alive = False
        self.server.sc.reset(self.sid, reason)
        self.server.touch()
        self._end_early()

    def _end_early(self) -> None:
        """End where the stream stands (a cut response, a client gone): the phase's
        jump to END, then give everything back."""
        if Phase.END in allowed(self.phase):
            self.phase = self._transition(self.phase, Phase.END)
        self._complete(True)

    # -- response side -----------------------------------------------------------------

    def _up_recv_header(self) -> Step:
        reply = self.stream.local_reply
        if reply is not None:
            self._send_local_reply()
            return Phase.END
        s = self.stream
        headers = s.response_headers
        assert headers is not None and s.response_status is not None
        server = self.server
        try:
            server.sc.send_headers(
                self.sid, headers, status=s.response_status, end_stream=self.response_ended
            )
        except ProtocolConversionError as exc:
            log.warning("stream %s: %s", self.stream.id, exc)
            self._reply(replies.Reply(502, f"{exc}\n"))
            self._send_local_reply()
            return Phase.END
        self.response_started = True
        server.touch()
        return _UP_RECV_DATA

    def _send_local_reply(self) -> None:
        reply = self.stream.local_reply
        assert reply is not None
        server = self.server
        if not server.sc.expects_response(self.sid):
            return  # oneway: nobody waits for an answer
        status = self.stream.response_status or reply.status
        try:
            server.sc.send_local_reply(self.sid, status, reply.body, reply.headers)
        except ProtocolConversionError as exc:
            log.warning("stream %s: %s; closing the connection", self.stream.id, exc)
            server.close_after_flush()
            return
        self.stream.response_status = status
        self.response_started = True
        server.touch()

    def _send_failure_reply(self) -> None:
        self._send_local_reply()
        flush_touched()

    def _response_part(self, event: StreamEvent) -> None:
        if self.phase is not _UP_RECV_DATA:
            # The head has not gone down yet.
            if self.response_parts is None:
                self.response_parts = [event]
            else:
                self.response_parts.append(event)
            return
        if self._forward_part(event):
            self._resume(Phase.UP_RECV_TRAILER)

    def _forward_part(self, event: StreamEvent) -> bool:
        """Forward a response body piece or trailers; True when the response ended."""
        sc = self.server.sc
        if isinstance(event, DataReceived):
            sc.send_data(self.sid, event.data, event.end_stream)
            self.bytes_sent += len(event.data)
            ended = event.end_stream
            if self.up_unacked and not ended:
                self._ack_up()
        else:
            assert isinstance(event, TrailersReceived)
            sc.send_trailers(self.sid, event.trailers)
            ended = True
        self.server.touch()
        if ended:
            self.response_ended = True
        return ended

    def _up_recv_data(self) -> Step:
        if not self.response_ended:
            parts = self.response_parts
            while parts:
                if self._forward_part(parts.pop(0)):
                    break
            if not self.response_ended:
                return None  # park: the upstream reader forwards the rest
        return Phase.UP_RECV_TRAILER

    def _up_recv_trailer(self) -> Step:
        return Phase.END

    def abort(self) -> None:
        """The downstream connection is gone: give everything back now.

        A stream parked in DOWN_RECV_DATA, WAIT_NOTIFY or UP_RECV_DATA, or waiting in a
        task (connect, filters), jumps to END; one sleeping a retry back-off (RETRY has
        no such jump) just ends with its cancelled task.
        """
        if not self.completed:
            self.keep_alive = False
            self._end_early()
