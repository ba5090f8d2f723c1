"""The gRPC test peer (tests/support/grpc_peer.py) checked directly, without mosnpy.

Later proxy tests run the same calls through mosnpy; these pin down what a call
looks like when nothing sits in between, so a failure there is the proxy's fault.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import grpc  # type: ignore[import-untyped]
import pytest

from tests.support.grpc_peer import (
    DETAILS_BIN_KEY,
    GRPC_OPTIONS,
    MIDWAY_DETAILS,
    SERVER_STREAM,
    TRAILER,
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


@pytest.fixture
def server() -> Iterator[GrpcServer]:
    """A fresh echo server (its ``time_remaining`` list starts empty)."""
    with GrpcServer() as srv:
        yield srv


@pytest.fixture
def client(server: GrpcServer) -> Iterator[EchoClient]:
    """A client connected straight to ``server``."""
    with EchoClient(server.address) as cli:
        cli.wait_ready(10)
        yield cli


def test_server_binds_localhost(server: GrpcServer) -> None:
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"


def test_unary_echo_1mib(client: EchoClient) -> None:
    payload = bytes(range(256)) * (MIB // 256)
    assert client.unary(payload) == payload


def test_unary_metadata_echo_and_trailer(client: EchoClient, server: GrpcServer) -> None:
    metadata = (("x-echo-one", "1"), ("x-echo-blob-bin", b"\x00\xff\x01"), ("x-other", "kept-here"))
    response, call = client.unary(b"hello", metadata=metadata, with_call=True)
    assert response == b"hello"
    assert call.code() == grpc.StatusCode.OK
    initial = list(call.initial_metadata() or ())
    assert ("x-echo-one", "1") in initial
    assert ("x-echo-blob-bin", b"\x00\xff\x01") in initial
    assert all(key != "x-other" for key, _ in initial)
    assert TRAILER in list(call.trailing_metadata() or ())
    assert ("x-other", "kept-here") in server.received_metadata[-1]


def test_details_bin_encoding() -> None:
    # google.rpc.Status{code: 5, message: "no such key"}, hand-encoded.
    assert status_details_bin(grpc.StatusCode.NOT_FOUND, "no such key") == b"\x08\x05\x12\x0bno such key"
    # A message longer than 127 bytes needs a two-byte length varint.
    assert status_details_bin(grpc.StatusCode.ABORTED, "x" * 200) == b"\x08\x0a\x12\xc8\x01" + b"x" * 200


@pytest.mark.parametrize(
    ("request_bytes", "code", "details", "details_bin"),
    [
        (
            b"fail:NOT_FOUND:no such key",
            grpc.StatusCode.NOT_FOUND,
            "no such key",
            b"\x08\x05\x12\x0bno such key",
        ),
        (b"fail:UNAVAILABLE:a:b", grpc.StatusCode.UNAVAILABLE, "a:b", b"\x08\x0e\x12\x03a:b"),
        (b"fail:INTERNAL", grpc.StatusCode.INTERNAL, "", b"\x08\x0d\x12\x00"),
    ],
)
def test_unary_error_with_details_bin(
    client: EchoClient, request_bytes: bytes, code: grpc.StatusCode, details: str, details_bin: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.unary(request_bytes, metadata=(("x-echo-ignored", "on-error"),))
    error = info.value
    assert error.code() == code
    assert (error.details() or "") == details
    trailing = dict(error.trailing_metadata() or ())
    assert trailing[DETAILS_BIN_KEY] == details_bin
    assert "x-trailer" not in trailing


def test_server_stream_5x1mib(client: EchoClient) -> None:
    messages = client.server_stream(5, MIB)
    assert len(messages) == 5
    for index, message in enumerate(messages):
        assert message == stream_message(index, MIB)


def test_server_stream_fails_midway(client: EchoClient) -> None:
    with pytest.raises(PartialStreamError) as info:
        client.server_stream(3, 1000, fail=True)
    assert info.value.received == [stream_message(i, 1000) for i in range(3)]
    assert info.value.code == grpc.StatusCode.ABORTED
    assert info.value.details == MIDWAY_DETAILS
    trailing = dict(info.value.error.trailing_metadata() or ())
    assert trailing[DETAILS_BIN_KEY] == status_details_bin(grpc.StatusCode.ABORTED, MIDWAY_DETAILS)


def test_server_stream_bad_request(server: GrpcServer) -> None:
    with grpc.insecure_channel(server.address, options=GRPC_OPTIONS) as channel:
        call = channel.unary_stream(SERVER_STREAM)(b"nonsense", timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_stream_length_and_hash(client: EchoClient) -> None:
    chunks = [bytes([i]) * (64 * 1024 + i) for i in range(20)]
    whole = b"".join(chunks)
    answer = client.client_stream(chunks)
    assert answer == f"{len(whole)}:{hashlib.sha256(whole).hexdigest()}".encode()
    assert answer == client_stream_digest(chunks)


def test_client_stream_empty(client: EchoClient) -> None:
    assert client.client_stream([]) == f"0:{hashlib.sha256(b'').hexdigest()}".encode()


def test_bidi_echo(client: EchoClient) -> None:
    chunks = [b"a", b"", b"ccc" * 1000, bytes(range(256)) * 4096]
    assert client.bidi(chunks) == chunks


def test_bidi_lockstep_is_full_duplex(client: EchoClient) -> None:
    chunks = [f"ping-{i}".encode() for i in range(10)]
    assert client.bidi_lockstep(chunks, timeout=10) == chunks


def test_deadline_exceeded(client: EchoClient, server: GrpcServer) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        client.unary(b"sleep:2", timeout=0.3)
    elapsed = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.5
    remaining = server.time_remaining[-1]
    assert remaining is not None and 0 < remaining <= deadline_upper_bound(0.3)


def test_sleep_within_deadline(client: EchoClient) -> None:
    assert client.unary(b"sleep:0.1", timeout=5) == b"sleep:0.1"


def test_time_remaining_recorded(client: EchoClient, server: GrpcServer) -> None:
    client.unary(b"no deadline")
    client.unary(b"with deadline", timeout=5.0)
    assert len(server.time_remaining) == 2
    assert server.time_remaining[0] is None
    remaining = server.time_remaining[1]
    # grpcio rounds the grpc-timeout it sends up a little (see deadline_upper_bound).
    assert remaining is not None and 4.0 < remaining <= deadline_upper_bound(5.0)
    assert deadline_upper_bound(5.0) < 5.06
