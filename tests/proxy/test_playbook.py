"""The phase machine, playbook style: feed events, assert the phase trace and the bytes out.

Each test drives one downstream connection of the toy protocol through
:class:`tests.proxy.playbook.Playbook` (no sockets, a mock clock) and asserts the exact
walk of each stream and the exact frames written to the client and upstream.  The last
test checks that these scenarios take every jump in :data:`mosnpy.proxy.phases.JUMPS`.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
import trio
from mosnpy_toy.codec import ToyFrame
from trio.testing import MockClock

from mosnpy.config.models import CircuitBreakerConfig, RetryPolicyConfig
from mosnpy.protocol.api import DataReceived, ResetReason, ResponseReceived
from mosnpy.protocol.xprotocol import XHeaders
from mosnpy.proxy.downstream import _HANDLER_NAMES, RETRY_BACKOFF
from mosnpy.proxy.phases import JUMPS, MAX_JUMPS, Phase
from mosnpy.stream.filter import FilterPhase
from mosnpy.stream.filter import StreamFilterStatus as S
from mosnpy.stream.stream import Stream
from tests.proxy.playbook import (
    ANSWER,
    CALL,
    HEAD,
    HOST1,
    HOST2,
    LOCAL_REPLY,
    SEND,
    Filters,
    P,
    Playbook,
    RecordingDownStream,
    cluster,
    hijack,
    local_reply,
    recording_jumps,
    request,
    response,
    rpc_route,
)

#: the playbook subclasses the proxy machine's classes and swaps its downstream
#: class: it runs on the plain-Python build only
pytestmark = pytest.mark.interpreted


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_step_runs_the_handler_the_table_names(phase: Phase) -> None:
    # DownStream._step is _HANDLER_NAMES written out: each phase runs its own handler,
    # a subclass's override included, and nothing else.
    ds = object.__new__(RecordingDownStream)
    ds.calls = []
    assert ds._step(phase) is P.END
    assert ds.calls == [_HANDLER_NAMES[phase]]


# toy statuses: what the framework's 200 / 500 / 503 / 404-and-502 / 504 become
OK, ERROR, BUSY, UNREACHABLE, TIMEOUT = 0, 1, 4, 6, 7

BEFORE_ROUTE = FilterPhase.BEFORE_ROUTE
AFTER_ROUTE = FilterPhase.AFTER_ROUTE
AFTER_CHOOSE_HOST = FilterPhase.AFTER_CHOOSE_HOST

#: The walk up to (and including) each filter phase.
UP_TO = {
    BEFORE_ROUTE: HEAD[:2],
    AFTER_ROUTE: HEAD[:4],
    AFTER_CHOOSE_HOST: HEAD,
    "send": HEAD + SEND + [P.UP_FILTER],
}


def retrying(**policy: Any) -> list[Any]:
    """The default routes, with a retry policy and route options (``timeout``)."""
    timeout = policy.pop("timeout", 0.0)
    return [rpc_route("svc", "c1", timeout=timeout, retry_policy=RetryPolicyConfig(**policy))]


def filters_at(where: FilterPhase | str, fn: Any, **options: Any) -> Filters:
    return Filters(send=fn, **options) if where == "send" else Filters({where: fn}, **options)


# --------------------------------------------------------------------------- straight through


async def test_a_call_walks_every_phase_once(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        await pb.send(request(rid=7, body=b"ping"))
        [up] = pb.upstream_requests()
        assert up == ToyFrame(0, 1, {"service": "svc", "method": "m"}, b"ping")  # a fresh upstream id
        assert pb.replies() == []
        assert pb.trace() == HEAD + SEND

        await pb.respond(up, b"pong", answer="yes")
        assert pb.replies() == [response(7, b"pong", answer="yes")]  # the caller's id again
        assert pb.trace() == CALL
        assert pb.dials == [(HOST1, True)]
        assert pb.ctx.stats.responses == {200: 1}


async def test_a_second_call_reuses_the_ready_connection(autojump_clock: MockClock) -> None:
    async with Playbook(clusters=[cluster("c1", HOST1)]) as pb:
        for rid in (1, 2):
            await pb.send(request(rid))
            [up] = pb.upstream_requests()
            await pb.respond(up, b"%d" % rid)
            assert pb.replies() == [response(rid, b"%d" % rid)]
        assert pb.dials == [(HOST1, True)]
        assert pb.trace(0) == pb.trace(1) == CALL


async def test_no_route_answers_404_through_the_sender_filters(autojump_clock: MockClock) -> None:
    seen: list[int | None] = []
    async with Playbook(filters=[Filters(send=lambda s: seen.append(s.response_status))]) as pb:
        await pb.send(request(service="nowhere"))
        assert pb.replies() == [hijack(7, UNREACHABLE, "no route for nowhere")]
        assert pb.trace() == [P.INIT, P.DOWN_FILTER, P.MATCH_ROUTE, *LOCAL_REPLY]
        assert seen == [404]
        assert pb.dials == []


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("phase", [BEFORE_ROUTE, AFTER_ROUTE, AFTER_CHOOSE_HOST])
async def test_a_filter_answers_locally_at_each_receiver_phase(
    autojump_clock: MockClock, phase: FilterPhase
) -> None:
    async with Playbook(filters=[Filters({phase: local_reply(503, "busy")})]) as pb:
        await pb.send(request())
        assert pb.replies() == [hijack(7, BUSY, "busy")]
        assert pb.trace() == UP_TO[phase] + LOCAL_REPLY
        assert pb.dials == []


@pytest.mark.parametrize("where", [BEFORE_ROUTE, AFTER_ROUTE, AFTER_CHOOSE_HOST, "send"])
async def test_terminate_from_each_filter_phase_sends_nothing(autojump_clock: MockClock, where: Any) -> None:
    async with Playbook(filters=[filters_at(where, lambda s: S.TERMINATE)]) as pb:
        await pb.send(request())
        if where == "send":
            [up] = pb.upstream_requests()
            await pb.respond(up, b"never seen")
        assert pb.upstream_requests() == []
        assert pb.replies() == []
        assert pb.trace() == UP_TO[where] + [P.END]


async def test_rematch_route_goes_back_to_match_route(autojump_clock: MockClock) -> None:
    def move_to_v2(s: Stream) -> S:
        if s.headers.get("service") == "svc":
            s.headers["service"] = "svc-v2"
            return S.REMATCH_ROUTE
        return S.CONTINUE

    async with Playbook(
        routes=[rpc_route("svc", "c1"), rpc_route("svc-v2", "c2")],
        clusters=[cluster("c1", HOST1), cluster("c2", HOST2)],
        filters=[Filters({AFTER_ROUTE: move_to_v2})],
    ) as pb:
        await pb.send(request())
        [up] = pb.upstream_requests()
        await pb.respond(up, b"v2")
        assert pb.replies() == [response(7, b"v2")]
        assert pb.trace() == HEAD[:4] + HEAD[2:] + SEND + ANSWER
        assert pb.dials == [(HOST2, True)]


async def test_rechoose_host_goes_back_to_choose_host(autojump_clock: MockClock) -> None:
    def avoid_host1(s: Stream) -> S:
        return S.RECHOOSE_HOST if s.upstream_host.address == HOST1 else S.CONTINUE

    async with Playbook(filters=[Filters({AFTER_CHOOSE_HOST: avoid_host1})]) as pb:
        await pb.send(request())
        [up] = pb.upstream_requests()
        await pb.respond(up)
        assert pb.replies() == [response(7)]
        assert pb.trace() == HEAD + HEAD[-2:] + SEND + ANSWER
        assert pb.dials == [(HOST2, True)]


@pytest.mark.parametrize("jump", [S.REMATCH_ROUTE, S.RECHOOSE_HOST])
async def test_endless_jumps_stop_after_max_jumps_with_500(autojump_clock: MockClock, jump: S) -> None:
    phase = AFTER_ROUTE if jump is S.REMATCH_ROUTE else AFTER_CHOOSE_HOST
    loop = [P.MATCH_ROUTE, P.DOWN_FILTER_AFTER_ROUTE] if phase is AFTER_ROUTE else HEAD[-2:]
    async with Playbook(filters=[Filters({phase: lambda s: jump})]) as pb:
        await pb.send(request())
        assert pb.replies() == [hijack(7, ERROR, "too many route re-matches or host re-chooses")]
        assert pb.trace() == UP_TO[phase] + loop * MAX_JUMPS + LOCAL_REPLY
        assert pb.dials == []


async def test_a_waiting_filter_delays_only_its_own_stream(autojump_clock: MockClock) -> None:
    async def slow(s: Stream) -> None:
        if s.headers.get("slow"):
            await trio.sleep(1)

    async with Playbook(filters=[Filters({BEFORE_ROUTE: slow}, may_wait=True)]) as pb:
        await pb.send(request(1, body=b"r1", slow="yes"), request(2, body=b"r2"), request(3, body=b"r3"))
        fast = pb.upstream_requests()
        assert sorted(f.body for f in fast) == [b"r2", b"r3"]
        for up in fast:
            await pb.respond(up, up.body)
        assert sorted(pb.replies(), key=lambda f: f.request_id) == [response(2, b"r2"), response(3, b"r3")]

        await pb.sleep(0.5)
        assert pb.upstream_requests() == []  # still in its filter
        await pb.sleep(0.5)
        [up] = pb.upstream_requests()
        await pb.respond(up, up.body)
        assert pb.replies() == [response(1, b"r1")]
        assert [s.trace for s in pb.streams] == [CALL] * 3
        assert sorted(pb.dials) == [(HOST1, True), (HOST2, True)]  # the late one rode a ready connection


def boom(s: Stream) -> S:
    raise RuntimeError("boom")


async def boom_after_a_wait(s: Stream) -> S:
    await trio.lowlevel.checkpoint()
    return boom(s)


async def passing(s: Stream) -> None:
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("may_wait", [False, True], ids=["inline", "may_wait"])
@pytest.mark.parametrize("where", [BEFORE_ROUTE, AFTER_ROUTE, AFTER_CHOOSE_HOST, "send"])
async def test_a_failing_handler_answers_500_and_is_counted(
    autojump_clock: MockClock, where: Any, may_wait: bool
) -> None:
    """The 500 names the phase that failed, and its status wins over an upstream's 200."""
    filters = [filters_at(where, boom_after_a_wait if may_wait else boom, may_wait=may_wait)]
    if may_wait and where is not BEFORE_ROUTE:
        # a filter that waits earlier in the walk: the failure happens in that task
        filters.insert(0, Filters({BEFORE_ROUTE: passing}, may_wait=True))
    async with Playbook(filters=filters) as pb:
        await pb.send(request())
        if where == "send":
            [up] = pb.upstream_requests()
            await pb.respond(up, b"the upstream's answer")
        phase = UP_TO[where][-1]
        assert pb.replies() == [hijack(7, ERROR, f"internal error in phase {phase.value}")]
        assert pb.ctx.stats.internal_errors == 1
        assert pb.ctx.stats.responses == {500: 1}
        assert pb.trace() == UP_TO[where]  # the walk stops where it failed


# --------------------------------------------------------------------------- choosing a host


@pytest.mark.parametrize("cause", ["unknown cluster", "no healthy host", "max_requests"])
async def test_choose_host_failures_answer_locally(autojump_clock: MockClock, cause: str) -> None:
    routes = [rpc_route("svc", "nope" if cause == "unknown cluster" else "c1")]
    clusters = [cluster("c1", HOST1, circuit_breakers=[CircuitBreakerConfig(max_requests=1)])]
    async with Playbook(routes=routes, clusters=clusters) as pb:
        if cause == "no healthy host":
            pb.cluster().hosts[0].healthy = False
        if cause == "max_requests":
            await pb.send(request(1))  # the one request allowed, in flight
        await pb.send(request(7))
        expected = {
            "unknown cluster": hijack(7, UNREACHABLE, "cluster 'nope' not found"),
            "no healthy host": hijack(7, UNREACHABLE, "no healthy upstream in cluster 'c1'"),
            "max_requests": hijack(7, BUSY, "upstream overflow: cluster 'c1': max_requests 1 reached"),
        }[cause]
        assert pb.replies() == [expected]
        assert pb.trace(-1) == HEAD[:5] + LOCAL_REPLY
        if cause == "max_requests":
            [up] = pb.upstream_requests()
            await pb.respond(up)
            assert pb.replies() == [response(1)]
            assert pb.trace(0) == CALL


async def test_a_full_connection_overflows_with_503(autojump_clock: MockClock) -> None:
    one_stream = cluster(
        "c1", HOST1, max_request_per_conn=1, circuit_breakers=[CircuitBreakerConfig(max_connections=1)]
    )
    async with Playbook(clusters=[one_stream]) as pb:
        await pb.send(request(1))
        await pb.send(request(2))
        message = f"upstream overflow: {HOST1}: 1 streams in flight on every connection"
        assert pb.replies() == [hijack(2, BUSY, message)]
        assert pb.trace(1) == [*HEAD, P.DOWN_RECV_HEADER, *LOCAL_REPLY]
        [up] = pb.upstream_requests()
        await pb.respond(up)
        assert pb.replies() == [response(1)]
        assert pb.trace(0) == CALL


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("failures", [1, 2, 3])
async def test_connect_failures_are_retried_num_retries_times(
    autojump_clock: MockClock, failures: int
) -> None:
    async with Playbook(routes=retrying(retry_on=True, num_retries=2)) as pb:
        pb.fail_connects = failures
        await pb.send(request())
        await pb.sleep(1)  # every back-off
        retried = min(failures, 2)
        attempts = [(HOST1, HOST2)[i % 2] for i in range(retried + 1)]  # round robin
        assert pb.dials == [(host, i >= failures) for i, host in enumerate(attempts)]
        assert pb.cluster().counters.retries == retried
        tries = [P.DOWN_RECV_HEADER, P.RETRY] * retried
        if failures <= 2:
            [up] = pb.upstream_requests()
            await pb.respond(up, b"at last")
            assert pb.replies() == [response(7, b"at last")]
            assert pb.trace() == HEAD + tries + SEND + ANSWER
        else:
            message = f"connect to {HOST1} failed: refused (scripted)"
            assert pb.replies() == [hijack(7, UNREACHABLE, message)]
            assert pb.trace() == HEAD + tries + [P.DOWN_RECV_HEADER, *LOCAL_REPLY]


async def test_without_a_policy_a_connect_failure_is_retried_once(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        pb.fail_connects = 5
        await pb.send(request())
        await pb.sleep(1)
        assert pb.dials == [(HOST1, False), (HOST2, False)]
        assert pb.replies() == [hijack(7, UNREACHABLE, f"connect to {HOST2} failed: refused (scripted)")]
        assert pb.trace() == [*HEAD, P.DOWN_RECV_HEADER, P.RETRY, P.DOWN_RECV_HEADER, *LOCAL_REPLY]


async def test_no_healthy_host_left_for_a_retry_answers_502(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        pb.fail_connects = 1
        await pb.send(request())  # the connect fails at once: the retry is in its back-off
        for host in pb.cluster().hosts:
            host.healthy = False
        await pb.sleep(RETRY_BACKOFF)
        assert pb.replies() == [hijack(7, UNREACHABLE, "no healthy upstream in cluster 'c1'")]
        assert pb.trace() == [*HEAD, P.DOWN_RECV_HEADER, P.RETRY, *LOCAL_REPLY]


@pytest.mark.parametrize("busy", [0, 1, 2, 3])
async def test_retry_on_status_honours_num_retries_exactly(autojump_clock: MockClock, busy: int) -> None:
    """Answer busy (503) to the first ``busy`` attempts: num_retries=2 allows 3 attempts."""
    async with Playbook(routes=retrying(retry_on=True, num_retries=2, status_codes=[503])) as pb:
        await pb.send(request())
        attempts = 0
        while ups := pb.upstream_requests():  # answer whatever the proxy sends, while it sends
            [up] = ups
            await pb.respond(up, b"%d" % attempts, BUSY if attempts < busy else OK)
            attempts += 1
            await pb.sleep(RETRY_BACKOFF)
        retried = min(busy, 2)
        assert attempts == 1 + retried
        last = attempts - 1
        assert pb.replies() == [response(7, b"%d" % last, BUSY if last < busy else OK)]
        assert pb.trace() == HEAD + [*SEND, P.RETRY] * retried + SEND + ANSWER
        assert pb.cluster().counters.retries == retried


async def test_a_status_outside_status_codes_is_not_retried(autojump_clock: MockClock) -> None:
    async with Playbook(routes=retrying(retry_on=True, num_retries=2, status_codes=[503])) as pb:
        await pb.send(request())
        [up] = pb.upstream_requests()
        await pb.respond(up, b"failed", ERROR)
        await pb.sleep(1)
        assert pb.upstream_requests() == []
        assert pb.replies() == [response(7, b"failed", ERROR)]
        assert pb.trace() == CALL


async def test_a_per_try_timeout_retries_and_the_late_answer_is_a_stray(autojump_clock: MockClock) -> None:
    async with Playbook(routes=retrying(retry_on=True, num_retries=1, retry_timeout=0.25, timeout=1.0)) as pb:
        await pb.send(request())
        [first] = pb.upstream_requests()
        await pb.sleep(0.125)
        assert pb.upstream_requests() == []
        await pb.sleep(0.125 + RETRY_BACKOFF)
        [second] = pb.upstream_requests()
        assert second.body == first.body
        await pb.respond(first, b"late")
        await pb.respond(second, b"second")
        assert pb.replies() == [response(7, b"second")]
        assert pb.trace() == HEAD + SEND + [P.RETRY] + SEND + ANSWER
        assert pb.dials == [(HOST1, True), (HOST2, True)]
        assert pb.cluster().counters.timeouts == 1
        assert pb.cluster().pools[HOST1].stray == 1


async def test_the_global_timeout_answers_504_without_retrying(autojump_clock: MockClock) -> None:
    async with Playbook(routes=retrying(retry_on=True, num_retries=3, timeout=0.5)) as pb:
        await pb.send(request())
        await pb.sleep(0.25)
        assert pb.replies() == []
        await pb.sleep(0.25)
        assert pb.replies() == [hijack(7, TIMEOUT, "upstream timeout")]
        await pb.sleep(1)
        assert len(pb.upstream_requests()) == 1
        assert pb.trace() == HEAD + SEND + LOCAL_REPLY


async def test_the_global_timeout_spans_retries(autojump_clock: MockClock) -> None:
    async with Playbook(
        routes=retrying(retry_on=True, num_retries=5, retry_timeout=0.25, timeout=0.375)
    ) as pb:
        await pb.send(request())
        await pb.sleep(0.25 + RETRY_BACKOFF)
        assert len(pb.upstream_requests()) == 2
        assert pb.replies() == []
        await pb.sleep(0.375 - 0.25 - RETRY_BACKOFF)
        assert pb.replies() == [hijack(7, TIMEOUT, "upstream timeout")]
        assert pb.trace() == HEAD + SEND + [P.RETRY] + SEND + LOCAL_REPLY


@pytest.mark.parametrize("retry", [False, True], ids=["no_policy", "retry"])
@pytest.mark.parametrize("park", [P.WAIT_NOTIFY, P.DOWN_RECV_DATA], ids=["waiting", "receiving_body"])
async def test_an_upstream_reset_retries_or_answers_502(
    autojump_clock: MockClock, park: P, retry: bool
) -> None:
    routes = retrying(retry_on=True, num_retries=1) if retry else [rpc_route("svc", "c1")]
    streaming = park is P.DOWN_RECV_DATA  # the request's end has not arrived yet
    sent = SEND if not streaming else SEND[:2]
    async with Playbook(routes=routes) as pb:
        await pb.send(request(), end_stream=not streaming)
        assert pb.streams[0].phase is park
        [first] = pb.upstream_requests()
        await pb.drop(first)
        if not retry:
            assert pb.replies() == [hijack(7, UNREACHABLE, "upstream reset: upstream closed the connection")]
            assert pb.trace() == HEAD + sent + LOCAL_REPLY
            return
        await pb.sleep(RETRY_BACKOFF)
        [second] = pb.upstream_requests()
        assert second.body == first.body
        if streaming:
            await pb.feed(DataReceived(pb.streams[0].sid, b"", end_stream=True))
        await pb.respond(second, b"ok")
        assert pb.replies() == [response(7, b"ok")]
        assert pb.trace() == HEAD + sent + [P.RETRY] + SEND + ANSWER
        assert pb.dials == [(HOST1, True), (HOST2, True)]


# --------------------------------------------------------------------------- oneway, streaming


async def test_a_oneway_request_ends_at_oneway_and_nothing_comes_back(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        await pb.send(request(oneway=True))
        [up] = pb.upstream_requests()
        assert (up.kind, up.request_id) == (1, 1)
        await pb.sleep(1)
        assert pb.replies() == []
        assert pb.trace() == [
            *HEAD,
            P.DOWN_RECV_HEADER,
            P.DOWN_RECV_DATA,
            P.DOWN_RECV_TRAILER,
            P.ONEWAY,
            P.END,
        ]


@pytest.mark.parametrize("side", ["request", "response"])
async def test_resuming_a_parked_stream_is_checked_by_the_table(autojump_clock: MockClock, side: str) -> None:
    """Every step obeys the table, also when the rest of a request or of a response
    resumes a stream parked in DOWN_RECV_DATA or UP_RECV_DATA (a resume that skipped
    UP_FILTER, say, is listed in ``unchecked``)."""
    async with Playbook() as pb:
        await pb.send(request(), end_stream=side == "response")
        ds = pb.streams[0]
        if side == "request":
            await pb.feed(DataReceived(ds.sid, b"", end_stream=True))
        [up] = pb.upstream_requests()
        if side == "request":
            await pb.respond(up)
        else:
            head = XHeaders(response(7), "toy")
            await pb.deliver(up, ResponseReceived(ds.up_sid, head, status=200, end_stream=False))
            assert ds.phase is P.UP_RECV_DATA
            await pb.deliver(up, DataReceived(ds.up_sid, b"", end_stream=True))
        assert pb.replies() == [response(7)]
        assert pb.trace() == CALL
        assert ds.unchecked == []


async def test_the_global_timeout_also_bounds_a_streaming_response(autojump_clock: MockClock) -> None:
    """A response whose body stalls is cut at the route timeout, as HTTP/1's is."""
    async with Playbook(routes=retrying(timeout=0.5)) as pb:
        await pb.send(request())
        ds = pb.streams[0]
        [up] = pb.upstream_requests()
        head = XHeaders(response(7), "toy")
        await pb.deliver(up, ResponseReceived(ds.up_sid, head, status=200, end_stream=False))
        assert pb.replies() == [response(7)]  # the head went down; the body never comes
        await pb.sleep(1)
        assert ds.completed
        assert ds.stream.reset_reason is ResetReason.GLOBAL_TIMEOUT
        assert pb.trace() == [*HEAD, *SEND, *ANSWER[:3], P.END]


@pytest.mark.parametrize("where", ["connecting", "sending the body", "waiting"])
async def test_a_client_that_leaves_ends_its_stream_where_it_stands(
    autojump_clock: MockClock, where: str
) -> None:
    """The phase the stream is in jumps to END; the upstream stream is given back."""
    async with Playbook() as pb:
        if where == "connecting":
            pb.connect_time = 1.0
        await pb.send(request(), end_stream=where != "sending the body")
        pb.down.close()
        await pb.settle()
        expected = {
            "connecting": [*HEAD, P.DOWN_RECV_HEADER, P.END],
            "sending the body": [*HEAD, P.DOWN_RECV_HEADER, P.DOWN_RECV_DATA, P.END],
            "waiting": [*HEAD, *SEND, P.END],
        }[where]
        assert pb.trace() == expected
        await pb.sleep(2)  # a connect that finishes later sends nothing for the gone client
        ups = pb.upstream_requests()
        assert len(ups) == (0 if where == "connecting" else 1)
        assert pb.replies() == []
        assert pb.streams[0].completed


async def test_a_body_waiting_for_its_upstream_is_not_buffered_without_bound(
    autojump_clock: MockClock,
) -> None:
    """While the upstream connects, body pieces are kept (for the send, and a retry);
    past retry_buffer_limit the server stops reading the client until the upstream
    takes them, and then they all go, in order."""
    async with Playbook() as pb:
        pb.ctx.retry_buffer_limit = 1000
        pb.connect_time = 1.0
        await pb.send(request(), end_stream=False)
        ds = pb.streams[0]
        await pb.feed(DataReceived(ds.sid, b"a" * 600))
        assert pb.server.held_by is None
        await pb.feed(DataReceived(ds.sid, b"b" * 600))
        assert pb.server.held_by is ds  # the reader pauses here
        await pb.sleep(1.5)  # connected: the head and both pieces went upstream
        assert pb.server.held_by is None
        assert ds.phase is P.DOWN_RECV_DATA and ds.body_sent == 2
        await pb.feed(DataReceived(ds.sid, b"", end_stream=True))
        [up] = pb.upstream_requests()
        await pb.respond(up)
        assert [r.request_id for r in pb.replies()] == [7]


async def test_an_answer_that_starts_before_the_request_ends_flows_both_ways(
    autojump_clock: MockClock,
) -> None:
    """Full duplex (gRPC bidi, an early answer): the response head jumps from
    DOWN_RECV_DATA to UP_FILTER and goes down at once; the rest of the request still
    goes up, its end too, and the stream ends when the response does."""
    async with Playbook() as pb:
        await pb.send(request(), end_stream=False)
        ds = pb.streams[0]
        [up] = pb.upstream_requests()
        head = XHeaders(response(7), "toy")
        await pb.deliver(up, ResponseReceived(ds.up_sid, head, status=200, end_stream=False))
        assert pb.replies() == [response(7)]  # before the request ended
        assert ds.phase is P.UP_RECV_DATA and not ds.up_ended
        await pb.feed(DataReceived(ds.sid, b"more"))
        assert ds.body_sent == 1 and not ds.up_ended
        await pb.feed(DataReceived(ds.sid, b"", end_stream=True))
        assert ds.up_ended and not ds.completed
        await pb.deliver(up, DataReceived(ds.up_sid, b"", end_stream=True))
        assert ds.completed
        assert pb.trace() == [
            *HEAD,
            P.DOWN_RECV_HEADER,
            P.DOWN_RECV_DATA,
            P.UP_FILTER,
            P.UP_RECV_HEADER,
            P.UP_RECV_DATA,
            P.UP_RECV_TRAILER,
            P.END,
        ]


# --------------------------------------------------------------------------- the table


def _cases(test: Any) -> list[dict[str, Any]]:
    """Every parameter combination of a test function's ``parametrize`` marks."""
    axes = []
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            name, values = mark.args[0], mark.args[1]
            axes.append([(name, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)]


async def test_every_jump_in_the_table_is_exercised(autojump_clock: MockClock) -> None:
    """Run every scenario above (whatever each one asserts) and collect the steps taken."""
    scenarios = [
        fn
        for name, fn in globals().items()
        if name.startswith("test_") and inspect.iscoroutinefunction(fn) and fn is not this_test
    ]
    with recording_jumps() as seen:
        for scenario in scenarios:
            for kwargs in _cases(scenario):
                try:
                    await scenario(autojump_clock, **kwargs)
                except AssertionError:
                    pass  # its own test reports it; the steps it took still count
    table = {(src, dst) for src, dsts in JUMPS.items() for dst in dsts}
    missing = sorted(f"{src.value} -> {dst.value}" for src, dst in table - seen)
    assert missing == [], f"jumps no scenario takes: {missing}"


this_test = test_every_jump_in_the_table_is_exercised
