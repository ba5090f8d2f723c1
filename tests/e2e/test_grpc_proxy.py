"""Real gRPC (grpcio) through mosnpy's ``Http2`` listener, one hop and two.

Topologies (everything on 127.0.0.1):

* one hop: client → mosnpy → :class:`GrpcServer`;
* two hops: client → mosnpy A → mosnpy B → :class:`GrpcServer` (A forwards every path
  to B; B holds the routes below, so its own errors cross A on their way back).

The hop next to the server routes ``/mosnpy.test.Echo/*`` to the server (with
``x-route: slow`` under a 0.3 s route timeout, with ``x-route: tight`` to a cluster
whose circuit breaker allows one request), ``/mosnpy.test.Dead/*`` to a port nobody
listens on, and nothing else.  The same calls made directly in
tests/e2e/test_grpc_peer_direct.py pin down what each looks like with no proxy.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import pytest
import trio

import mosnpy
from mosnpy.protocol.api import ResetReason
from tests.support import free_port
from tests.support.grpc_peer import (
    DETAILS_BIN_KEY,
    GRPC_OPTIONS,
    MIDWAY_CODE,
    MIDWAY_DETAILS,
    SERVICE,
    TRAILER,
    UNARY,
    EchoClient,
    GrpcServer,
    PartialStreamError,
    client_stream_digest,
    deadline_upper_bound,
    status_details_bin,
    stream_message,
)

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024
T = TypeVar("T")

#: a service the server does not have and no route matches
NOWHERE = "/mosnpy.test.Nowhere/Unary"
#: routed to a cluster whose only host is a closed port
DEAD = "/mosnpy.test.Dead/Unary"
SLOW_ROUTE_TIMEOUT = 0.3


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking grpc call in a worker thread (mosnpy runs on this trio loop)."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@asynccontextmanager
async def serving(builder: mosnpy.ProxyBuilder) -> AsyncIterator[int]:
    """Serve ``builder``'s proxy in the background; yields its ``grpc`` listener port."""
    server = builder.server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server.listener("grpc").port
        finally:
            server.shutdown()


def edge_proxy(grpc_address: str) -> mosnpy.ProxyBuilder:
    """The hop next to the gRPC server: its routes make every proxy-side error."""
    return (
        mosnpy.ProxyBuilder(graceful_timeout=1)
        .cluster("echo", [grpc_address], connect_timeout=2)
        .cluster("tight", [grpc_address], connect_timeout=2, max_requests=1)
        .cluster("dead", [f"127.0.0.1:{free_port()}"], connect_timeout=1)
        .route(prefix=f"/{SERVICE}/", headers={"x-route": "slow"}, cluster="echo", timeout=SLOW_ROUTE_TIMEOUT)
        .route(prefix=f"/{SERVICE}/", headers={"x-route": "tight"}, cluster="tight", timeout=20)
        .route(
            prefix=f"/{SERVICE}/",
            headers={"x-route": "retry"},
            cluster="echo",
            timeout=20,
            retries=2,
            retry_on_status=[503],
        )
        .route(prefix=f"/{SERVICE}/", cluster="echo", timeout=20)
        .route(prefix="/mosnpy.test.Dead/", cluster="dead", timeout=5)
        .listener("grpc", "127.0.0.1:0", protocol="Http2")
    )


def front_proxy(next_port: int) -> mosnpy.ProxyBuilder:
    """The first of two hops: everything to the next mosnpy."""
    return (
        mosnpy.ProxyBuilder(graceful_timeout=1)
        .cluster("next", [f"127.0.0.1:{next_port}"], connect_timeout=2)
        .route(prefix="/", cluster="next", timeout=20)
        .listener("grpc", "127.0.0.1:0", protocol="Http2")
    )


@pytest.fixture
def server() -> Iterator[GrpcServer]:
    with GrpcServer() as srv:
        yield srv


@pytest.fixture(params=["one_hop", "two_hops"])
async def target(request: pytest.FixtureRequest, server: GrpcServer) -> AsyncIterator[str]:
    """``127.0.0.1:<port>`` of the mosnpy a client talks to."""
    async with serving(edge_proxy(server.address)) as edge_port:
        if request.param == "one_hop":
            yield f"127.0.0.1:{edge_port}"
        else:
            async with serving(front_proxy(edge_port)) as front_port:
                yield f"127.0.0.1:{front_port}"


@pytest.fixture
async def client(target: str) -> AsyncIterator[EchoClient]:
    cli = EchoClient(target)
    try:
        await blocking(cli.wait_ready, 10)
        yield cli
    finally:
        await blocking(cli.close)


def trailing(call: Any) -> dict[str, str | bytes]:
    return dict(call.trailing_metadata() or ())


# -- calls the server answers --------------------------------------------------------------


async def test_unary_echo_1mib(client: EchoClient, server: GrpcServer) -> None:
    payload = bytes(range(256)) * (MIB // 256)
    response, call = await blocking(client.unary, payload, timeout=10, with_call=True)
    assert len(response) == MIB and response == payload
    assert call.code() == grpc.StatusCode.OK
    assert TRAILER in list(call.trailing_metadata() or ())
    assert len(server.received_metadata) == 1


async def test_unary_metadata_echo_and_trailer(client: EchoClient, server: GrpcServer) -> None:
    blob = b"\x00\xff\x01\x80binary\r\n"
    metadata = (("x-echo-one", "1"), ("x-echo-blob-bin", blob), ("x-other", "kept-here"))
    response, call = await blocking(client.unary, b"hello", metadata, 10, with_call=True)
    assert response == b"hello"
    assert call.code() == grpc.StatusCode.OK
    initial = list(call.initial_metadata() or ())
    assert ("x-echo-one", "1") in initial
    assert ("x-echo-blob-bin", blob) in initial
    assert [k for k, _ in initial if k.startswith("x-")] == ["x-echo-one", "x-echo-blob-bin"]
    assert trailing(call)["x-trailer"] == "done"
    (seen,) = server.received_metadata
    assert ("x-other", "kept-here") in seen
    assert ("x-echo-blob-bin", blob) in seen
    assert ("x-echo-one", "1") in seen


async def test_server_stream_5x1mib(client: EchoClient) -> None:
    messages = await blocking(client.server_stream, 5, MIB, timeout=15)
    assert [len(m) for m in messages] == [MIB] * 5
    for index, message in enumerate(messages):
        assert message == stream_message(index, MIB)


async def test_client_stream_digest(client: EchoClient) -> None:
    chunks = [bytes([i]) * (256 * 1024 + i) for i in range(20)]  # ~5 MiB in 20 messages
    answer = await blocking(client.client_stream, chunks, timeout=15)
    assert answer == client_stream_digest(chunks)
    assert answer.startswith(f"{sum(len(c) for c in chunks)}:".encode())


async def test_client_stream_empty(client: EchoClient) -> None:
    assert await blocking(client.client_stream, [], timeout=10) == client_stream_digest([])


async def test_bidi_echo(client: EchoClient) -> None:
    chunks = [b"a", b"", b"ccc" * 1000, bytes(range(256)) * 4096, b"z" * MIB]
    assert await blocking(client.bidi, chunks, timeout=15) == chunks


async def test_bidi_echo_16x1mib(client: EchoClient) -> None:
    # More than the windows of every hop hold (1 MiB per stream): the answers must flow
    # while the client is still sending, or the server blocks on its send, stops
    # reading, and the call deadlocks (directly it takes well under a second).
    chunks = [stream_message(i, MIB) for i in range(16)]
    assert await blocking(client.bidi, chunks, timeout=8) == chunks


async def test_bidi_lockstep_is_full_duplex(client: EchoClient) -> None:
    # Each message is sent only after the previous echo came back: a hop that held the
    # response until the client half-closed hangs here until the deadline.
    chunks = [f"ping-{i}".encode() * (i + 1) for i in range(10)]
    started = time.monotonic()
    assert await blocking(client.bidi_lockstep, chunks, timeout=5) == chunks
    assert time.monotonic() - started < 2


# -- failures the server makes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "code", "details"),
    [
        (b"fail:NOT_FOUND:no such key", grpc.StatusCode.NOT_FOUND, "no such key"),
        (b"fail:UNAVAILABLE:a:b", grpc.StatusCode.UNAVAILABLE, "a:b"),
        (b"fail:INTERNAL", grpc.StatusCode.INTERNAL, ""),
        (
            "fail:FAILED_PRECONDITION:ünïcode 100% \t done".encode(),
            grpc.StatusCode.FAILED_PRECONDITION,
            "ünïcode 100% \t done",
        ),
    ],
)
async def test_unary_error_keeps_status_message_and_details_bin(
    client: EchoClient, request_bytes: bytes, code: grpc.StatusCode, details: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        await blocking(client.unary, request_bytes, (("x-echo-ignored", "on-error"),), 10)
    error = info.value
    assert error.code() == code
    assert (error.details() or "") == details
    trailers = trailing(error)
    assert trailers[DETAILS_BIN_KEY] == status_details_bin(code, details)
    assert "x-trailer" not in trailers
    assert "x-mosnpy-error" not in trailers  # the server's failure, not the proxy's


async def test_server_stream_fails_midway(client: EchoClient) -> None:
    with pytest.raises(PartialStreamError) as info:
        await blocking(client.server_stream, 3, 100_000, fail=True, timeout=10)
    assert info.value.received == [stream_message(i, 100_000) for i in range(3)]
    assert info.value.code == grpc.StatusCode[MIDWAY_CODE]
    assert info.value.details == MIDWAY_DETAILS
    details_bin = trailing(info.value.error)[DETAILS_BIN_KEY]
    assert details_bin == status_details_bin(grpc.StatusCode.ABORTED, MIDWAY_DETAILS)


# -- deadlines -----------------------------------------------------------------------------


async def test_deadline_exceeded_quickly(client: EchoClient, server: GrpcServer) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        await blocking(client.unary, b"sleep:2", timeout=0.5)
    elapsed = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 < elapsed < 1.5
    (remaining,) = server.time_remaining
    assert remaining is not None and 0 < remaining <= deadline_upper_bound(0.5)


async def test_deadline_passed_on_reduced(client: EchoClient, server: GrpcServer) -> None:
    assert await blocking(client.unary, b"no deadline") == b"no deadline"
    assert await blocking(client.unary, b"with deadline", timeout=5.0) == b"with deadline"
    assert len(server.time_remaining) == 2
    # No grpc-timeout from the client: the proxy invents none (its route timeout is its own).
    assert server.time_remaining[0] is None
    remaining = server.time_remaining[1]
    assert remaining is not None
    assert 3.0 < remaining <= deadline_upper_bound(5.0)


# -- many calls on one channel -------------------------------------------------------------


async def test_200_concurrent_unary_calls_on_one_channel(target: str, server: GrpcServer) -> None:
    payloads = [f"call-{i:03d}-".encode() * (i % 50 + 1) for i in range(200)]

    def run_all() -> list[bytes]:
        with grpc.insecure_channel(target, options=GRPC_OPTIONS) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            unary = channel.unary_unary(UNARY)
            futures = [unary.future(p, timeout=20) for p in payloads]
            return [bytes(f.result()) for f in futures]

    assert await blocking(run_all) == payloads
    assert len(server.received_metadata) == 200


# -- failures the proxy makes --------------------------------------------------------------


async def test_no_route_is_unimplemented(target: str, server: GrpcServer) -> None:
    def call() -> grpc.RpcError:
        with grpc.insecure_channel(target, options=GRPC_OPTIONS) as channel:
            try:
                channel.unary_unary(NOWHERE)(b"x", timeout=10)
            except grpc.RpcError as exc:
                return exc
        raise AssertionError("the call succeeded")

    error = await blocking(call)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    # the :authority is the first hop's address, passed on unchanged
    assert error.details() == f"no route for {target}{NOWHERE}"
    assert trailing(error).get("x-mosnpy-error") == "NoRoute"
    assert server.received_metadata == []


async def test_closed_upstream_port_is_unavailable(target: str, server: GrpcServer) -> None:
    def call() -> tuple[grpc.RpcError, float]:
        with grpc.insecure_channel(target, options=GRPC_OPTIONS) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            started = time.monotonic()
            try:
                channel.unary_unary(DEAD)(b"x", timeout=10)
            except grpc.RpcError as exc:
                return exc, time.monotonic() - started
        raise AssertionError("the call succeeded")

    error, elapsed = await blocking(call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert trailing(error).get("x-mosnpy-error") == ResetReason.CONNECTION_FAILED.value
    assert elapsed < 5
    assert server.received_metadata == []


async def test_route_timeout_is_deadline_exceeded(client: EchoClient, server: GrpcServer) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        await blocking(client.unary, b"sleep:2", (("x-route", "slow"),))  # no client deadline
    elapsed = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert trailing(info.value).get("x-mosnpy-error") == ResetReason.GLOBAL_TIMEOUT.value
    assert SLOW_ROUTE_TIMEOUT * 0.9 < elapsed < 1.5
    assert server.time_remaining == [None]  # the route timeout is not sent as grpc-timeout


async def test_overflow_is_resource_exhausted(client: EchoClient, server: GrpcServer) -> None:
    tight = (("x-route", "tight"),)
    first: list[bytes] = []
    done = threading.Event()

    def slow_call() -> None:
        try:
            first.append(client.unary(b"sleep:1.5", tight, 10))
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocking, slow_call)
        with trio.fail_after(5):
            while not server.time_remaining:  # the first call holds the cluster's only slot
                await trio.sleep(0.01)
        with pytest.raises(grpc.RpcError) as info:
            await blocking(client.unary, b"second", tight, 10)
        assert not done.is_set()
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing(error).get("x-mosnpy-error") == "UpstreamOverflow"
    assert "max_requests 1 reached" in (error.details() or "")
    assert first == [b"sleep:1.5"]
    assert len(server.received_metadata) == 1  # the second call never reached the server
    # the slot is free again
    assert await blocking(client.unary, b"third", tight, 10) == b"third"


# -- retries on grpc-status ---------------------------------------------------------------


async def test_unavailable_is_retried_by_the_route_policy(client: EchoClient, server: GrpcServer) -> None:
    """A trailers-only UNAVAILABLE maps to 503, which the route retries: the caller
    sees the second attempt's answer."""
    retry = (("x-route", "retry"),)
    assert await blocking(client.unary, b"flaky:once:1", retry, 10) == b"flaky:once:1"
    assert server.flaky_calls == {"once": 2}


async def test_retries_stop_at_num_retries_and_the_last_answer_goes_through(
    client: EchoClient, server: GrpcServer
) -> None:
    retry = (("x-route", "retry"),)
    with pytest.raises(grpc.RpcError) as info:
        await blocking(client.unary, b"flaky:always:9", retry, 10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "flaky always: call 3 fails"
    assert server.flaky_calls == {"always": 3}  # the first try and two retries


async def test_without_a_retry_policy_unavailable_goes_straight_back(
    client: EchoClient, server: GrpcServer
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        await blocking(client.unary, b"flaky:plain:1", (), 10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.flaky_calls == {"plain": 1}
