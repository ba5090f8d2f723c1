"""A real gRPC peer (grpcio) for end-to-end tests: an echo server and a client for it.

No protoc and no generated code: the service is registered with
``grpc.method_handlers_generic_handler`` and every message is raw ``bytes`` (no
serializer), so tests control the exact payloads that cross the proxy.

Service ``mosnpy.test.Echo``:

* ``Unary`` (unary-unary) echoes the request.  ``b"fail:<CODE>[:<details>]"`` fails
  with that status and a ``grpc-status-details-bin`` trailer (see
  :func:`status_details_bin`); ``b"sleep:<seconds>"`` waits before answering (for
  deadline tests); ``b"flaky:<key>:<n>"`` fails with ``UNAVAILABLE`` the first ``n``
  times a key is asked, then echoes (for retry tests; :attr:`GrpcServer.flaky_calls`
  counts the calls per key).  Client metadata whose key starts with ``x-echo-`` comes back as
  initial metadata, and a successful call always ends with the trailer
  ``x-trailer: done``.
* ``ServerStream`` (unary-stream): ``b"<n>:<size>"`` answers with ``n`` messages of
  ``size`` bytes (:func:`stream_message`); ``b"<n>:<size>:fail"`` then fails with
  ``ABORTED`` / ``"midway"``.
* ``ClientStream`` (stream-unary) answers ``b"<total length>:<sha256 hex>"`` of the
  concatenated requests (:func:`client_stream_digest`).
* ``Bidi`` (stream-stream) echoes each message as soon as it arrives.

Every handler records what the server saw (:attr:`GrpcServer.time_remaining`,
:attr:`GrpcServer.received_metadata`) so tests can check what a proxy passed on.
:class:`EchoClient` works against any target: the server directly, or a proxy.
Everything binds and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent import futures
from types import TracebackType
from typing import Any, Literal, NoReturn, Protocol, TypeAlias, overload

import grpc  # type: ignore[import-untyped]

LOCALHOST = "127.0.0.1"
SERVICE = "mosnpy.test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"

#: metadata keys with this prefix are echoed back as initial metadata
ECHO_PREFIX = "x-echo-"
#: the trailer every successful ``Unary`` call ends with
TRAILER = ("x-trailer", "done")
DETAILS_BIN_KEY = "grpc-status-details-bin"
#: status and details of a failing ``ServerStream`` (after all its messages)
MIDWAY_CODE = "ABORTED"
MIDWAY_DETAILS = "midway"
#: both ends accept messages up to this size (grpc's default receive limit is 4 MiB)
MAX_MESSAGE = 64 * 1024 * 1024
#: a remaining time above this means the client sent no deadline (grpc reports ~infinity)
_NO_DEADLINE = 365 * 24 * 3600.0

Metadata: TypeAlias = Sequence[tuple[str, str | bytes]]

#: channel and server options: large messages, and never an HTTP proxy from the environment
GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.enable_http_proxy", 0),
]


class RpcCall(Protocol):
    """What a finished call (``with_call``'s second value, or a ``grpc.RpcError``) offers."""

    def code(self) -> Any: ...

    def details(self) -> str | None: ...

    def initial_metadata(self) -> Metadata | None: ...

    def trailing_metadata(self) -> Metadata | None: ...


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def status_details_bin(code: grpc.StatusCode, details: str) -> bytes:
    """The ``grpc-status-details-bin`` value the server sends for a failed ``Unary``.

    A hand-encoded ``google.rpc.Status`` message (field 1 ``code``, field 2
    ``message``), i.e. what ``grpc_status.rpc_status.to_status`` would send, without
    needing protobuf: ``NOT_FOUND``/``"no such key"`` is
    ``b"\\x08\\x05\\x12\\x0bno such key"``.  It is binary metadata, so it crosses the
    wire base64-encoded without padding (``CAUSC25vIHN1Y2gga2V5``) and a proxy must pass
    it through unchanged.
    """
    message = details.encode()
    numeric = int(code.value[0])
    return b"\x08" + _varint(numeric) + b"\x12" + _varint(len(message)) + message


def deadline_upper_bound(timeout: float) -> float:
    """The most ``time_remaining`` a server may record for a client ``timeout``.

    grpcio's client rounds the ``grpc-timeout`` it sends *up* (measured: +9 ms for 1 s
    and 5 s, +99 ms for 30 s, +1 % from 100 s), and the server's clock conversion adds
    well under a millisecond, so a direct call can record slightly more than
    ``timeout``; this bounds that: 1 % plus 5 ms.
    """
    return timeout * 1.01 + 0.005


def stream_message(index: int, size: int) -> bytes:
    """Message ``index`` of a ``ServerStream`` answer: ``size`` bytes of ``index % 256``."""
    return bytes([index % 256]) * size


def client_stream_digest(chunks: Iterable[bytes]) -> bytes:
    """What ``ClientStream`` answers for ``chunks``: ``b"<total length>:<sha256 hex>"``."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)
    return f"{total}:{digest.hexdigest()}".encode()


class GrpcServer:
    """A grpcio server on 127.0.0.1 with the ``mosnpy.test.Echo`` service.

    Bound (``.port`` / ``.address`` known) on construction, serving after
    :meth:`start` or ``with``; :meth:`stop` (grace 0 by default) cancels what is still
    running.  Handlers run on a 32-thread pool, so slow calls do not block others.
    """

    def __init__(self, *, max_workers: int = 32) -> None:
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers)
        self._server = grpc.server(self._executor, options=GRPC_OPTIONS)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self._server_stream),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self._client_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        port = int(self._server.add_insecure_port(f"{LOCALHOST}:0"))
        if port == 0:
            raise RuntimeError(f"grpc could not bind {LOCALHOST}:0")
        self.port: int = port
        self.address: str = f"{LOCALHOST}:{port}"
        #: per call, in arrival order: the seconds left before the client's deadline
        #: (from ``grpc-timeout``) when the handler started, or None without a deadline
        self.time_remaining: list[float | None] = []
        #: per call, in arrival order: the invocation metadata the handler saw
        self.received_metadata: list[tuple[tuple[str, str | bytes], ...]] = []
        #: ``flaky:<key>:<n>`` calls seen per key
        self.flaky_calls: dict[str, int] = {}
        self._flaky_lock = threading.Lock()
        self._started = False

    def start(self) -> GrpcServer:
        """Start serving (idempotent); returns self."""
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving, cancelling calls still running after ``grace`` seconds; waits."""
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> GrpcServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(0)

    # -- handlers -------------------------------------------------------------------

    def _begin(self, context: grpc.ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
        """Record the deadline and metadata of a call; return its ``x-echo-`` pairs."""
        remaining = float(context.time_remaining())
        self.time_remaining.append(None if remaining > _NO_DEADLINE else remaining)
        metadata = tuple((str(k), v) for k, v in context.invocation_metadata())
        self.received_metadata.append(metadata)
        return tuple((k, v) for k, v in metadata if k.startswith(ECHO_PREFIX))

    @staticmethod
    def _abort(context: grpc.ServicerContext, code_name: str, details: str) -> NoReturn:
        """Fail the call with ``code_name``/``details`` and a details-bin trailer (raises)."""
        try:
            code = grpc.StatusCode[code_name]
        except KeyError:
            code = grpc.StatusCode.INVALID_ARGUMENT
            details = f"unknown status code {code_name!r}"
        context.set_trailing_metadata(((DETAILS_BIN_KEY, status_details_bin(code, details)),))
        context.abort(code, details)  # raises
        raise AssertionError("grpc's abort() returned")

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        echo = self._begin(context)
        if request.startswith(b"fail:"):
            # No initial metadata, so grpc answers trailers-only: one HEADERS frame with
            # END_STREAM holding :status, grpc-status, grpc-message and the details-bin.
            _, code_name, *rest = request.decode("utf-8", "replace").split(":", 2)
            self._abort(context, code_name, rest[0] if rest else "")
        if request.startswith(b"flaky:"):
            _, key, times = request.decode().split(":", 2)
            with self._flaky_lock:
                seen = self.flaky_calls[key] = self.flaky_calls.get(key, 0) + 1
            if seen <= int(times):
                self._abort(context, "UNAVAILABLE", f"flaky {key}: call {seen} fails")
        if request.startswith(b"sleep:"):
            seconds = float(request[len(b"sleep:") :].split(b":", 1)[0])
            finished = threading.Event()
            if context.add_callback(finished.set):  # released early when the call ends
                finished.wait(seconds)
            if not context.is_active():
                return b""  # cancelled or past its deadline: nobody reads this
        if echo:
            context.send_initial_metadata(echo)
        context.set_trailing_metadata((TRAILER,))
        return request

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        echo = self._begin(context)
        if echo:
            context.send_initial_metadata(echo)
        parts = request.split(b":")
        fail = len(parts) == 3 and parts[2] == b"fail"
        try:
            if len(parts) not in (2, 3) or (len(parts) == 3 and not fail):
                raise ValueError
            count, size = int(parts[0]), int(parts[1])
        except ValueError:
            self._abort(context, "INVALID_ARGUMENT", f"want b'<n>:<size>[:fail]', got {request[:64]!r}")
        for index in range(count):
            yield stream_message(index, size)
        if fail:
            self._abort(context, MIDWAY_CODE, MIDWAY_DETAILS)

    def _client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        echo = self._begin(context)
        if echo:
            context.send_initial_metadata(echo)
        return client_stream_digest(requests)

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        echo = self._begin(context)
        if echo:
            context.send_initial_metadata(echo)
        yield from requests


class PartialStreamError(Exception):
    """A server stream failed after ``received`` messages; ``error`` is the grpc error."""

    def __init__(self, received: list[bytes], error: Any) -> None:
        super().__init__(f"stream failed after {len(received)} messages: {error.code()} {error.details()!r}")
        self.received = received
        self.error: RpcCall = error

    @property
    def code(self) -> grpc.StatusCode:
        """The status code the stream ended with."""
        return self.error.code()

    @property
    def details(self) -> str | None:
        """The status message the stream ended with."""
        return self.error.details()


class EchoClient:
    """A blocking client for ``mosnpy.test.Echo`` over an insecure channel to ``target``.

    ``target`` is any ``host:port`` (the server, or a proxy in front of it).  Failed
    calls raise ``grpc.RpcError`` (which is also an :class:`RpcCall`), except
    :meth:`server_stream`, which raises :class:`PartialStreamError` so the messages
    received before the failure are not lost.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        self._unary = self._channel.unary_unary(UNARY)
        self._server_stream = self._channel.unary_stream(SERVER_STREAM)
        self._client_stream = self._channel.stream_unary(CLIENT_STREAM)
        self._bidi = self._channel.stream_stream(BIDI)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected (raises ``grpc.FutureTimeoutError``)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    @overload
    def unary(
        self,
        data: bytes,
        metadata: Metadata = (),
        timeout: float | None = None,
        with_call: Literal[False] = False,
    ) -> bytes: ...

    @overload
    def unary(
        self,
        data: bytes,
        metadata: Metadata = (),
        timeout: float | None = None,
        *,
        with_call: Literal[True],
    ) -> tuple[bytes, RpcCall]: ...

    def unary(
        self,
        data: bytes,
        metadata: Metadata = (),
        timeout: float | None = None,
        with_call: bool = False,
    ) -> bytes | tuple[bytes, RpcCall]:
        """Call ``Unary``; with ``with_call`` also return the call (status and metadata)."""
        if with_call:
            response, call = self._unary.with_call(data, metadata=tuple(metadata), timeout=timeout)
            return bytes(response), call
        return bytes(self._unary(data, metadata=tuple(metadata), timeout=timeout))

    def server_stream(
        self,
        n: int,
        size: int,
        fail: bool = False,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[bytes]:
        """Call ``ServerStream`` for ``n`` messages of ``size`` bytes; return them all.

        With ``fail`` the server fails after the ``n`` messages; any failure raises
        :class:`PartialStreamError` carrying what did arrive.
        """
        request = f"{n}:{size}".encode() + (b":fail" if fail else b"")
        call = self._server_stream(request, metadata=tuple(metadata), timeout=timeout)
        received: list[bytes] = []
        try:
            for message in call:
                received.append(bytes(message))
        except grpc.RpcError as exc:
            raise PartialStreamError(received, exc) from exc
        return received

    def client_stream(
        self, chunks: Iterable[bytes], timeout: float | None = None, metadata: Metadata = ()
    ) -> bytes:
        """Call ``ClientStream`` with ``chunks``; returns ``b"<length>:<sha256 hex>"``."""
        return bytes(self._client_stream(iter(chunks), metadata=tuple(metadata), timeout=timeout))

    def bidi(
        self, chunks: Iterable[bytes], timeout: float | None = None, metadata: Metadata = ()
    ) -> list[bytes]:
        """Call ``Bidi`` sending all ``chunks``; returns every echoed message."""
        call = self._bidi(iter(chunks), metadata=tuple(metadata), timeout=timeout)
        return [bytes(message) for message in call]

    def bidi_lockstep(
        self, chunks: Iterable[bytes], timeout: float | None = None, metadata: Metadata = ()
    ) -> list[bytes]:
        """Call ``Bidi`` sending each chunk only after the previous one came back.

        Proves the stream is really full duplex: a hop that buffered the request until
        the client half-closed would make this hang until ``timeout``.
        """
        outbox: queue.Queue[bytes | None] = queue.Queue()

        def requests() -> Iterator[bytes]:
            while (item := outbox.get()) is not None:
                yield item

        call = self._bidi(requests(), metadata=tuple(metadata), timeout=timeout)
        received: list[bytes] = []
        try:
            for chunk in chunks:
                outbox.put(chunk)
                received.append(bytes(next(call)))
        except BaseException:
            call.cancel()
            raise
        finally:
            outbox.put(None)
        for rest in call:  # drain to the status (raises grpc.RpcError on failure)
            received.append(bytes(rest))
        return received

    def close(self) -> None:
        """Close the channel (and every call still open on it)."""
        self._channel.close()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "BIDI",
    "CLIENT_STREAM",
    "DETAILS_BIN_KEY",
    "ECHO_PREFIX",
    "GRPC_OPTIONS",
    "MAX_MESSAGE",
    "MIDWAY_CODE",
    "MIDWAY_DETAILS",
    "SERVER_STREAM",
    "SERVICE",
    "TRAILER",
    "UNARY",
    "EchoClient",
    "GrpcServer",
    "Metadata",
    "PartialStreamError",
    "RpcCall",
    "client_stream_digest",
    "deadline_upper_bound",
    "status_details_bin",
    "stream_message",
]
