"""The Protocol layer's neutral stream events, reset reasons, pool modes, and the
outbox every stream connection has.

:mod:`mosnpy.protocol.api` is where the layers above import these from (with the
stream-connection contracts); this module holds the concrete types so that a mypyc
build (``setup.py``) compiles them: every request makes a few events, and every
stream connection of ours derives from :class:`Outbox`.  Third-party stream
connections may derive from it too: it stays open to subclasses in plain Python.
"""

from __future__ import annotations

from enum import Enum

from mosnpy.native import mypyc_attr
from mosnpy.protocol.headers import HeaderMap

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "FlowResumed",
    "Outbox",
    "PoolMode",
    "ProtocolConversionError",
    "RequestReceived",
    "ResetReason",
    "ResponseReceived",
    "StreamEvent",
    "StreamReset",
    "TrailersReceived",
]


class ResetReason(Enum):
    """Why a stream ended without a normal response (MOSN's StreamResetReason)."""

    CONNECTION_FAILED = "ConnectionFailed"
    CONNECTION_TERMINATION = "ConnectionTermination"
    LOCAL_RESET = "StreamLocalReset"
    OVERFLOW = "StreamOverflow"
    REMOTE_RESET = "StreamRemoteReset"
    UPSTREAM_RESET = "UpstreamReset"
    GLOBAL_TIMEOUT = "UpstreamGlobalTimeout"
    PER_TRY_TIMEOUT = "UpstreamPerTryTimeout"


class PoolMode(Enum):
    """How upstream connections of a protocol are shared (MOSN's PoolMode)."""

    MULTIPLEX = "multiplex"  # many streams in flight per connection
    PING_PONG = "ping_pong"  # one stream at a time per connection


class ProtocolConversionError(ValueError):
    """A stream connection was asked to send headers it cannot express (e.g. another
    protocol's frame): the pair of protocols cannot be converted."""


# -- events ---------------------------------------------------------------------------


class StreamEvent:
    """Something that happened on one stream (``stream_id``)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._repr_fields())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self) -> tuple[str, ...]:
        return ("stream_id",)


class RequestReceived(StreamEvent):
    """A new stream with its request headers (server side).

    ``method``, ``host`` and ``path`` are what routing reads (an RPC protocol puts its
    service name in ``host`` and leaves ``path`` empty).  ``oneway`` requests expect no
    response.  ``timeout`` is the request's own deadline in seconds when the protocol
    carries one (bolt's timeout field, later gRPC's ``grpc-timeout``): None means the
    route's, ``inf`` means none.
    """

    __slots__ = ("end_stream", "headers", "host", "method", "oneway", "path", "timeout")

    def __init__(
        self,
        stream_id: int,
        headers: HeaderMap,
        *,
        end_stream: bool,
        method: str = "",
        host: str = "",
        path: str = "",
        oneway: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream
        self.method = method
        self.host = host
        self.path = path
        self.oneway = oneway
        self.timeout = timeout

    def _repr_fields(self) -> tuple[str, ...]:
        return ("stream_id", "method", "host", "path", "end_stream")


class ResponseReceived(StreamEvent):
    """A stream's response headers (client side), with the response's status mapped to
    an HTTP-style code (200 ok, 5xx failures) for retries and statistics."""

    __slots__ = ("end_stream", "headers", "status")

    def __init__(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.status = status
        self.end_stream = end_stream

    def _repr_fields(self) -> tuple[str, ...]:
        return ("stream_id", "status", "end_stream")


class DataReceived(StreamEvent):
    """A piece of a stream's body."""

    __slots__ = ("data", "end_stream")

    def __init__(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream

    def _repr_fields(self) -> tuple[str, ...]:
        return ("stream_id", "end_stream")


class TrailersReceived(StreamEvent):
    """A stream's trailers; they always end it."""

    __slots__ = ("trailers",)

    def __init__(self, stream_id: int, trailers: HeaderMap) -> None:
        self.stream_id = stream_id
        self.trailers = trailers


class StreamReset(StreamEvent):
    """The peer (or the connection's loss) aborted the stream.

    ``unprocessed``: the peer cannot have acted on the request (HTTP/1: a reused
    connection died before any byte of the answer; HTTP/2: REFUSED_STREAM), so a
    request that is safe to repeat may be sent again at no cost.
    """

    __slots__ = ("message", "reason", "unprocessed")

    def __init__(
        self, stream_id: int, reason: ResetReason, message: str = "", *, unprocessed: bool = False
    ) -> None:
        self.stream_id = stream_id
        self.reason = reason
        self.message = message
        self.unprocessed = unprocessed

    def _repr_fields(self) -> tuple[str, ...]:
        return ("stream_id", "reason", "message")


class FlowResumed(StreamEvent):
    """The peer opened its flow-control window: data queued for ``stream_id`` (0: for
    every stream) is moving again, so whoever held back acknowledging the data it
    forwards there (:meth:`StreamConnection.consumed`) may catch up."""

    __slots__ = ()


class ConnectionTerminated(StreamEvent):
    """The connection cannot carry streams any more (garbage, too many missed
    heartbeats, a GOAWAY): send what is queued, then close.  ``stream_id`` is 0."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.stream_id = 0
        self.message = message

    def _repr_fields(self) -> tuple[str, ...]:
        return ("message",)


@mypyc_attr(allow_interpreted_subclasses=True)
class Outbox:
    """What every stream connection has alike: the outbox and no timers by default.

    A base for implementations (optional: the contracts above are structural)."""

    __slots__ = ("_out",)

    #: flow control is TCP's
    flow_controlled = False

    def __init__(self) -> None:
        self._out = bytearray()

    def data_to_send(self) -> bytes:
        """Empty and return the outbox."""
        out = self._out
        if not out:
            return b""  # (a batch flushes every connection it touched, most with nothing)
        data = bytes(out)
        out.clear()
        return data

    def next_deadline(self) -> float:
        """No timers: never."""
        return float("inf")

    def on_timer(self, now: float) -> list[StreamEvent]:
        return []

    def consumed(self, stream_id: int, n: int) -> None:
        """Flow control is TCP's: nothing to acknowledge."""

    def buffered(self, stream_id: int) -> int:
        """Everything sent goes straight to the outbox."""
        return 0
