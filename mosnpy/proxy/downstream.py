"""The downstream phase machine: one request's walk from its head to its response.

Theory of operation
-------------------
:class:`DownStream` walks the phases of :mod:`mosnpy.proxy.phases`; each handler says
what comes next and :func:`~mosnpy.proxy.phases.check` enforces the table.  This class
holds everything protocol-neutral — stream filters, route matching, host choice,
circuit breakers, timeouts, the retry decision and local replies — and a subclass
supplies the I/O phases:

* ``DOWN_RECV_HEADER`` gets an upstream stream (from the pool, connecting only when
  no connection is ready) and sends the request head;
* ``DOWN_RECV_DATA`` / ``DOWN_RECV_TRAILER`` send the body and trailers as they arrive;
  at the end of ``DOWN_RECV_TRAILER`` the request is fully sent and the timers start;
* ``WAIT_NOTIFY`` waits for the response, a reset or a timeout;
* ``UP_RECV_HEADER`` / ``UP_RECV_DATA`` / ``UP_RECV_TRAILER`` send the response (or a
  local reply) downstream.

A handler is a plain function returning one of three things: the next :class:`Phase`
(the common case: no waiting), ``None`` (the stream *parks*: an upstream event, a
downstream body piece or a timer will call :meth:`DownStream.advance` to go on), or an
awaitable that yields the next phase (this phase must really wait: a connect, a retry's
back-off, a filter that may sleep).  :meth:`DownStream.advance` walks synchronously,
for streams that live in a connection's reader with no task of their own (DESIGN §4);
an awaitable hands the rest of the walk to a task in the downstream connection's
nursery (:meth:`DownStream._continue`), so only that stream waits.

Failures become local replies with a clear reason: no route 404, no healthy host or
connect failure 502, overflow 503, timeout 504 (:mod:`mosnpy.proxy.replies`).  A
failure the retry policy allows jumps to RETRY instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Final, TypeAlias

import trio

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.net.original_dst import ORIGINAL_DST
from mosnpy.proxy import replies
from mosnpy.proxy.context import DEFAULT_GLOBAL_TIMEOUT, ProxyContext
from mosnpy.proxy.phases import MAX_JUMPS, NEXT, Phase, check, counts_as_jump
from mosnpy.registry import UnknownNameError
from mosnpy.router import Route
from mosnpy.stream.chain import StreamFilterChain, run_now
from mosnpy.stream.filter import FilterPhase, StreamFilterStatus
from mosnpy.stream.stream import ResetReason, Stream
from mosnpy.upstream.cluster import Cluster
from mosnpy.upstream.errors import NoHealthyHostError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import LbContext

__all__ = ["ClientGone", "DownStream"]

log: Final = logging.getLogger("mosnpy.proxy")

#: MOSN's pause before a retry.
RETRY_BACKOFF: Final = 0.01

_EMPTY_CHAIN: Final = StreamFilterChain()
_INF: Final = float("inf")

#: What a phase handler returns: the next phase, None (parked), or a wait for it.
Step: TypeAlias = "Phase | Awaitable[Phase] | None"

#: The handler method of each phase, in :data:`ORDER`; :meth:`DownStream._step` is
#: this table written out as code (a test holds the two equal).
_HANDLER_NAMES: Final[dict[Phase, str]] = {
    Phase.INIT: "_init",
    Phase.DOWN_FILTER: "_down_filter",
    Phase.MATCH_ROUTE: "_match_route",
    Phase.DOWN_FILTER_AFTER_ROUTE: "_down_filter_after_route",
    Phase.CHOOSE_HOST: "_choose_host",
    Phase.DOWN_FILTER_AFTER_CHOOSE_HOST: "_down_filter_after_choose_host",
    Phase.DOWN_RECV_HEADER: "_down_recv_header",
    Phase.DOWN_RECV_DATA: "_down_recv_data",
    Phase.DOWN_RECV_TRAILER: "_down_recv_trailer",
    Phase.ONEWAY: "_oneway",
    Phase.RETRY: "_retry",
    Phase.WAIT_NOTIFY: "_wait_notify",
    Phase.UP_FILTER: "_up_filter",
    Phase.UP_RECV_HEADER: "_up_recv_header",
    Phase.UP_RECV_DATA: "_up_recv_data",
    Phase.UP_RECV_TRAILER: "_up_recv_trailer",
    Phase.END: "_end",
}


def _successor(phase: Phase) -> Phase | None:
    """``NEXT[phase.idx]``, the normal successor, by identity (a test holds the two
    equal): compiled, the members are C statics and this is a few pointer compares,
    where ``phase.idx`` is a Python attribute lookup, twice per phase of every request."""
    if phase is Phase.INIT:
        return Phase.DOWN_FILTER
    if phase is Phase.DOWN_FILTER:
        return Phase.MATCH_ROUTE
    if phase is Phase.MATCH_ROUTE:
        return Phase.DOWN_FILTER_AFTER_ROUTE
    if phase is Phase.DOWN_FILTER_AFTER_ROUTE:
        return Phase.CHOOSE_HOST
    if phase is Phase.CHOOSE_HOST:
        return Phase.DOWN_FILTER_AFTER_CHOOSE_HOST
    if phase is Phase.DOWN_FILTER_AFTER_CHOOSE_HOST:
        return Phase.DOWN_RECV_HEADER
    if phase is Phase.DOWN_RECV_HEADER:
        return Phase.DOWN_RECV_DATA
    if phase is Phase.DOWN_RECV_DATA:
        return Phase.DOWN_RECV_TRAILER
    if phase is Phase.DOWN_RECV_TRAILER:
        return Phase.ONEWAY
    if phase is Phase.ONEWAY:
        return Phase.WAIT_NOTIFY
    if phase is Phase.WAIT_NOTIFY:
        return Phase.UP_FILTER
    if phase is Phase.UP_FILTER:
        return Phase.UP_RECV_HEADER
    if phase is Phase.UP_RECV_HEADER:
        return Phase.UP_RECV_DATA
    if phase is Phase.UP_RECV_DATA:
        return Phase.UP_RECV_TRAILER
    if phase is Phase.UP_RECV_TRAILER:
        return Phase.END
    if phase is Phase.RETRY:
        return Phase.DOWN_RECV_HEADER
    return NEXT[phase.idx]  # END (None)


class ClientGone(Exception):
    """The downstream client closed or broke mid-request: nobody to answer."""


class DownStream:
    """The protocol-neutral half of one request's phase machine."""

    # Per-request state.  The defaults live on the class and an instance stores only
    # what changes, so starting a request costs a few stores, not thirty.
    chain: StreamFilterChain = _EMPTY_CHAIN
    cluster: Cluster | None = None
    #: the cluster this request is counted against (``max_requests``)
    counted: Cluster | None = None
    finalized = False
    host: Host | None = None
    global_timeout = DEFAULT_GLOBAL_TIMEOUT
    try_timeout = 0.0
    #: the request's own deadline (seconds), when its protocol carries one
    own_timeout: float | None = None
    global_deadline = _INF
    try_deadline = _INF
    #: when the request (this try) was fully sent upstream
    sent_at = 0.0
    retries_done = 0
    retry_counted = False
    response_started = False
    #: keep the downstream connection open after this request
    keep_alive = True
    #: where the walk is (or parked)
    phase = Phase.INIT
    jumps = 0
    completed = False
    #: for the access log: body bytes from the client and to it, when the upstream's
    #: response head arrived (kept only with access logs), MOSN's response flags
    bytes_received = 0
    bytes_sent = 0
    responded_at = 0.0
    response_flags = 0

    def __init__(self, ctx: ProxyContext, conn: Connection, stream: Stream) -> None:
        self.ctx = ctx
        self.conn = conn
        self.stream = stream
        if ctx.stream_filters:
            self.chain = StreamFilterChain()
            for factory in ctx.stream_filters:
                factory.create_filter_chain(self.chain)
        stats = ctx.stats
        stats.requests_total += 1
        stats.requests_active += 1

    # -- the machine ---------------------------------------------------------------

    def _step(self, phase: Phase) -> Step:
        """Run ``phase``'s handler (named in :data:`_HANDLER_NAMES`).

        Written out rather than looked up in a table of bound methods: compiled, each
        branch is a direct call through the class's vtable (so a subclass's override
        runs), where a table entry is a Python-level call per phase of every request.
        """
        if phase is Phase.INIT:
            return self._init()
        if phase is Phase.DOWN_FILTER:
            return self._down_filter()
        if phase is Phase.MATCH_ROUTE:
            return self._match_route()
        if phase is Phase.DOWN_FILTER_AFTER_ROUTE:
            return self._down_filter_after_route()
        if phase is Phase.CHOOSE_HOST:
            return self._choose_host()
        if phase is Phase.DOWN_FILTER_AFTER_CHOOSE_HOST:
            return self._down_filter_after_choose_host()
        if phase is Phase.DOWN_RECV_HEADER:
            return self._down_recv_header()
        if phase is Phase.DOWN_RECV_DATA:
            return self._down_recv_data()
        if phase is Phase.DOWN_RECV_TRAILER:
            return self._down_recv_trailer()
        if phase is Phase.ONEWAY:
            return self._oneway()
        if phase is Phase.WAIT_NOTIFY:
            return self._wait_notify()
        if phase is Phase.UP_FILTER:
            return self._up_filter()
        if phase is Phase.UP_RECV_HEADER:
            return self._up_recv_header()
        if phase is Phase.UP_RECV_DATA:
            return self._up_recv_data()
        if phase is Phase.UP_RECV_TRAILER:
            return self._up_recv_trailer()
        if phase is Phase.RETRY:
            return self._retry()
        return self._end()

    def _transition(self, phase: Phase, nxt: Phase) -> Phase:
        """Check ``phase → nxt`` against the table and count backward jumps."""
        if nxt is _successor(phase):
            return nxt  # the normal successor: always allowed, never a jump
        check(phase, nxt)
        if counts_as_jump(phase, nxt):
            self.jumps += 1
            if self.jumps > MAX_JUMPS:
                log.error("stream %s: more than %d phase jumps, giving up", self.stream.id, MAX_JUMPS)
                self._reply(replies.internal_error("too many route re-matches or host re-chooses"))
                return Phase.UP_FILTER if not self.response_started else Phase.END
        return nxt

    async def _walk(self, phase: Phase) -> Phase | None:
        """Walk from ``phase``, awaiting waits; END, or None when the stream parked."""
        end = Phase.END
        while phase is not end:
            self.phase = phase  # a failure names the phase it happened in
            step = self._step(phase)
            if step is None:
                return None
            if not isinstance(step, Phase):
                step = await step
            phase = step if step is _successor(phase) else self._transition(phase, step)
        self.phase = end
        return end

    def advance(self, phase: Phase) -> None:
        """Walk from ``phase`` without waiting, until END or a park.

        A phase that must wait continues in a task of the downstream connection's
        nursery (:meth:`_continue`), so nothing else on the connection waits with it.
        A handler's exception ends the stream with a 500 (or a reset once the response
        has started), logged and counted: a client never hangs on a bug.
        """
        end = Phase.END
        try:
            while phase is not end:
                step = self._step(phase)
                if not isinstance(step, Phase):
                    self.phase = phase
                    if step is not None:
                        nursery = self.conn.nursery
                        assert nursery is not None, "parked streams need a connection nursery"
                        nursery.start_soon(self._continue, phase, step)
                    return
                # The normal successor is always allowed; anything else is checked
                # against the table (and counted, for backward jumps).
                phase = step if step is _successor(phase) else self._transition(phase, step)
        except (ClientGone, ConnectionClosedError):
            self.keep_alive = False
            self._complete(True)
            return
        except Exception as exc:
            self._failed(phase, exc)
            return
        self.phase = end
        self._complete(False)

    async def _continue(self, phase: Phase, wait: Awaitable[Phase]) -> None:
        """The rest of a walk that had to wait at ``phase`` (a task of its own)."""
        try:
            try:
                nxt = self._transition(phase, await wait)
                if await self._walk(nxt) is None:
                    return  # parked again: an event resumes it
            except (ClientGone, ConnectionClosedError):
                self.keep_alive = False
                self._complete(True)
                return
            except Exception as exc:
                self._failed(self.phase, exc)
                return
            self._complete(False)
        finally:
            self._flush()

    def _failed(self, phase: Phase, exc: Exception) -> None:
        """A handler raised: answer 500 if nothing was sent yet, count it, end."""
        log.error(
            "stream %s: %s failed in phase %s", self.stream.id, type(self).__name__, phase.value, exc_info=exc
        )
        self.ctx.stats.internal_errors += 1
        if not self.response_started and not self.completed:
            self._reply(replies.internal_error(f"internal error in phase {phase.value}"))
            try:
                self._send_failure_reply()
            except Exception:
                log.exception("stream %s: the error reply failed too", self.stream.id)
        self._complete(not self.response_started)

    def _send_failure_reply(self) -> None:
        """Send ``stream.local_reply`` without the phase machine (after a bug)."""
        raise NotImplementedError

    def _flush(self) -> None:
        """Flush whatever the stream queued (for walks that ran in a task)."""

    def _complete(self, gone: bool) -> None:
        """Count the answer and give back every resource (once)."""
        if self.completed:
            return
        self.completed = True
        stats = self.ctx.stats
        stats.requests_active -= 1
        answered = self.response_started and not gone
        code = (self.stream.response_status or 0) if answered else 0
        responses = stats.responses
        responses[code] = responses.get(code, 0) + 1
        now = self.conn.now()
        stats.request_time.observe(now - self.stream.start_time)
        if self.counted is not None and self.sent_at:
            self.counted.request_duration.observe(now - self.sent_at)
        if self.ctx.access_logs:
            self._access_log(gone, now)
        self._finish()

    def _access_log(self, gone: bool, now: float) -> None:
        """Queue this request's line on each of the listener's access logs."""
        if gone and not self.response_flags & replies.UPSTREAM_FAILURES:
            self.response_flags |= replies.ResponseFlag.DownStreamTerminate
        for access_log in self.ctx.access_logs:
            if not access_log.log(self, now):
                self.ctx.stats.access_log_dropped += 1

    def _finish(self) -> None:
        self._release_upstream()
        if self.counted is not None:
            self.counted.end_request()
            self.counted = None
        if self.retry_counted and self.cluster is not None:
            self.cluster.end_retry()
            self.retry_counted = False

    # -- protocol hooks ---------------------------------------------------------------

    def _release_upstream(self) -> None:
        """Give back the current upstream attempt's resources (idempotent)."""

    def _replayable(self) -> bool:
        """Whether the request can still be sent again (a retry)."""
        return True

    def _apply_route(self, route: Route) -> None:
        """Protocol-specific edits a route asks for (path and host rewrites)."""

    def _is_oneway(self) -> bool:
        return False

    # -- request side ---------------------------------------------------------------

    def _init(self) -> Step:
        return Phase.DOWN_FILTER

    def _filters(self, phase: FilterPhase, nxt: Phase, jump: StreamFilterStatus | None, back: Phase) -> Step:
        """Run one receiver phase: inline when its filters never wait, else as a wait.

        ``jump`` is the status that sends the stream ``back`` (re-match, re-choose).
        """
        chain = self.chain
        if chain is _EMPTY_CHAIN or phase not in chain.receivers:  # nothing to run here
            return nxt
        coro = chain.run_receivers(phase, self.stream)
        if chain.may_wait:
            return self._filters_waiting(coro, nxt, jump, back)
        status = run_now(coro)
        return back if status is jump else self._after_receivers(status, nxt)

    async def _filters_waiting(
        self, coro: Awaitable[StreamFilterStatus], nxt: Phase, jump: StreamFilterStatus | None, back: Phase
    ) -> Phase:
        status = await coro
        return back if status is jump else self._after_receivers(status, nxt)

    def _down_filter(self) -> Step:
        if self.chain is _EMPTY_CHAIN:
            return Phase.MATCH_ROUTE
        return self._filters(FilterPhase.BEFORE_ROUTE, Phase.MATCH_ROUTE, None, Phase.MATCH_ROUTE)

    def _match_route(self) -> Step:
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
            return self._reply(replies.redirect(route.redirect, s.host, s.variables.get("target", s.path)))
        s.cluster_name = route.choose_cluster()
        self._set_timeouts(route.timeout, route.retry_policy.retry_timeout if route.retry_policy else 0.0)
        return Phase.DOWN_FILTER_AFTER_ROUTE

    def _finalize_request(self) -> None:
        """Apply the route's request edits, once (MOSN's FinalizeRequestHeaders).

        Done when the request first goes upstream, not at route matching, so a
        filter's re-match or re-choose and a retry never apply them twice.
        """
        if self.finalized:
            return
        self.finalized = True
        route = self.stream.route
        if route is not None and route.edits_request:
            route.apply_request_headers(self.stream.headers)
            self._apply_route(route)

    def _set_timeouts(self, route_timeout: float, try_timeout: float) -> None:
        """Route values, overridden by the ``x-mosn-*-timeout`` headers (ms)."""
        headers = self.stream.headers
        g = route_timeout or DEFAULT_GLOBAL_TIMEOUT
        t = try_timeout
        value = headers.get("x-mosn-global-timeout")
        if value is not None and (override := _milliseconds(value)) is not None:
            g = override or DEFAULT_GLOBAL_TIMEOUT
        value = headers.get("x-mosn-try-timeout")
        if value is not None and (override := _milliseconds(value)) is not None:
            t = override
        if not 0 < t < g:
            t = 0.0
        own = self.own_timeout
        if own is not None:
            g = own  # the request's own deadline wins over the route's
            if t >= g:
                t = 0.0
        self.global_timeout = g
        self.try_timeout = t

    def _down_filter_after_route(self) -> Step:
        if self.chain is _EMPTY_CHAIN:
            return Phase.CHOOSE_HOST
        return self._filters(
            FilterPhase.AFTER_ROUTE, Phase.CHOOSE_HOST, StreamFilterStatus.REMATCH_ROUTE, Phase.MATCH_ROUTE
        )

    def _choose_host(self) -> Step:
        s = self.stream
        try:
            cluster = self.cluster = self.ctx.clusters.get(s.cluster_name)
        except UnknownNameError:
            return self._reply(replies.no_cluster(s.cluster_name))
        try:
            if self.counted is not cluster:
                # A re-choose may land on another cluster: the count moves with it.
                cluster.start_request()
                if self.counted is not None:
                    self.counted.end_request()
                self.counted = cluster
            self.host = s.upstream_host = cluster.choose_host(self._lb_context())
        except NoHealthyHostError as exc:
            return self._reply(replies.no_healthy_host(str(exc)))
        except OverflowError_ as exc:
            return self._reply(replies.overflow(str(exc)))
        return Phase.DOWN_FILTER_AFTER_CHOOSE_HOST

    def _lb_context(self) -> LbContext:
        """What the balancer may know: the request's headers, the client's address
        and, for a redirected connection, its original destination."""
        dst = self.conn.values.get(ORIGINAL_DST)
        return LbContext(self.stream.headers, self.conn.remote_address, dst if isinstance(dst, str) else None)

    def _down_filter_after_choose_host(self) -> Step:
        if self.chain is _EMPTY_CHAIN:
            return Phase.DOWN_RECV_HEADER
        return self._filters(
            FilterPhase.AFTER_CHOOSE_HOST,
            Phase.DOWN_RECV_HEADER,
            StreamFilterStatus.RECHOOSE_HOST,
            Phase.CHOOSE_HOST,
        )

    def _down_recv_header(self) -> Step:
        raise NotImplementedError

    def _down_recv_data(self) -> Step:
        raise NotImplementedError

    def _down_recv_trailer(self) -> Step:
        raise NotImplementedError

    def _start_timers(self) -> None:
        """Arm the timeouts once the request is fully sent (MOSN starts them there)."""
        now = self.sent_at = self.conn.now()
        if self.global_deadline == _INF:
            self.global_deadline = now + self.global_timeout
        self.try_deadline = now + self.try_timeout if self.try_timeout else _INF

    def _oneway(self) -> Step:
        return Phase.END if self._is_oneway() else Phase.WAIT_NOTIFY

    def _retry(self) -> Step:
        return self._retry_after_backoff()

    async def _retry_after_backoff(self) -> Phase:
        assert self.cluster is not None
        await trio.sleep(RETRY_BACKOFF)
        try:
            self.host = self.stream.upstream_host = self.cluster.choose_host(self._lb_context())
        except NoHealthyHostError as exc:
            return self._reply(replies.no_healthy_host(str(exc)))
        return Phase.DOWN_RECV_HEADER

    def _wait_notify(self) -> Step:
        raise NotImplementedError

    def _deadline_phase(self) -> Phase:
        """A wait hit its deadline: the global timeout (504) or a per-try one."""
        if self.conn.now() >= self.global_deadline:
            return self._upstream_failed(ResetReason.GLOBAL_TIMEOUT, "upstream timeout")
        return self._upstream_failed(ResetReason.PER_TRY_TIMEOUT, "upstream per-try timeout")

    # -- failures and retries ----------------------------------------------------------

    def _retry_on_status(self, code: int) -> bool:
        """Whether a response with (HTTP-style) ``code`` should be retried."""
        route = self.stream.route
        policy = route.retry_policy if route is not None else None
        if policy is None or not policy.retry_on:
            return False
        codes = policy.status_codes
        hit = code in codes if codes else code >= 500
        return hit and self._can_retry(stale=False, reason=ResetReason.UPSTREAM_RESET)

    def _can_retry(self, *, stale: bool, reason: ResetReason) -> bool:
        if not self._replayable() or reason is ResetReason.GLOBAL_TIMEOUT:
            return False
        if self.conn.now() >= self.global_deadline:
            return False
        if stale:
            return True  # a dead kept-alive connection: resend on a fresh one, free
        route = self.stream.route
        policy = route.retry_policy if route is not None else None
        if policy is None or not policy.retry_on:
            # Without retry_on only connect failures are retried (MOSN's rule).
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

    def _upstream_failed(
        self, reason: ResetReason, message: str, *, stale: bool = False, answered: bool = False
    ) -> Phase:
        """Drop the failed attempt; retry if allowed, else reply with the reason's status.

        ``answered``: the host did answer (a retry on its status, already reported to
        outlier detection); ``stale``: a kept-alive connection died while idle, not
        the host's fault.  Any other failure counts against the host.
        """
        self._release_upstream()
        cluster = self.cluster
        if cluster is not None:
            cluster.counters.count_failure(reason)
            if cluster.outlier is not None and self.host is not None and not (stale or answered):
                cluster.outlier.put_failure(self.host, reason)
        if self._can_retry(stale=stale, reason=reason):
            if not stale:
                self.retries_done += 1
                if self.cluster is not None:
                    self.cluster.counters.retries += 1
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
        s = self.stream
        s.send_local_reply(reply.status, reply.body, reply.headers)
        self.response_flags |= reply.flag
        # The reply replaces any upstream answer (sender filters may still change it).
        s.response_status = reply.status
        s.response_headers = reply.headers
        return Phase.UP_FILTER

    def _up_filter(self) -> Step:
        s = self.stream
        if s.local_reply is not None:
            s.response_status = s.local_reply.status
            s.response_headers = s.local_reply.headers
        elif self.ctx.access_logs:
            self.responded_at = self.conn.now()  # the upstream's head is here
        chain = self.chain
        if not chain.senders:
            return Phase.UP_RECV_HEADER
        coro = chain.run_senders(s)
        if chain.may_wait:
            return self._senders_waiting(coro)
        return self._after_senders(run_now(coro))

    async def _senders_waiting(self, coro: Awaitable[StreamFilterStatus]) -> Phase:
        return self._after_senders(await coro)

    def _after_senders(self, status: StreamFilterStatus) -> Phase:
        if status is StreamFilterStatus.TERMINATE:
            self.keep_alive = False
            return Phase.END
        return Phase.UP_RECV_HEADER

    def _up_recv_header(self) -> Step:
        raise NotImplementedError

    def _up_recv_data(self) -> Step:
        return Phase.UP_RECV_TRAILER

    def _up_recv_trailer(self) -> Step:
        return Phase.END

    def _end(self) -> Step:  # pragma: no cover - the walk stops before END
        return Phase.END


def _milliseconds(value: str | None) -> float | None:
    """A timeout header's value in seconds; None if absent or not a plain number."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 12:
        return None
    return int(value) / 1000
