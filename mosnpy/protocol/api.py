"""The Protocol layer's public API: neutral stream events, stream connections, pool modes.

Theory of operation
-------------------
A *stream connection* maps one protocol onto streams, for one connection and one side
(MOSN's ``StreamConnection``; h2's ``H2Connection`` is the model).  It is sans-I/O: the
I/O side feeds it received bytes and sends what it queued; nothing here reads a clock
or a socket.

* :meth:`ServerStreamConnection.dispatch` (downstream) decodes requests and returns
  neutral events, each tagged with a stream id: :class:`RequestReceived` opens a stream,
  :class:`DataReceived` and :class:`TrailersReceived` continue it, ``end_stream`` on any
  of them ends it, :class:`StreamReset` aborts it and :class:`ConnectionTerminated` says
  the whole connection is unusable.  Protocol housekeeping — heartbeats, keep-alive,
  decode errors the protocol can answer — is handled inside and only shows up as bytes
  in the outbox.
* :meth:`ClientStreamConnection.new_stream` (upstream) allocates a stream (for
  xprotocol, a fresh request id on that connection: the id remapping lives here), and
  its ``dispatch`` turns responses into :class:`ResponseReceived` / data / trailers /
  resets for those streams.
* Both encode commands — send headers / data / trailers on stream N, reset stream N,
  and on the server side a *local reply* that each protocol renders in its own language
  (an HTTP status page, an xprotocol hijack frame) — into an outbox that
  :meth:`data_to_send` empties, so everything one batch of events produced leaves in
  one write.
* Timers are the caller's: a stream connection that needs one (heartbeats, HTTP/2's
  flood windows) says when in :meth:`next_deadline` and is told the time in
  :meth:`on_timer`, on either side.  A head that started arriving and never completes
  (``receiving_head``) is bounded by the listener, which calls ``head_timeout``.
* Flow control is neutral: the proxy says when received body bytes were passed on
  (:meth:`consumed`: HTTP/2 reopens its window; TCP-only protocols do nothing), asks how
  much waits for the peer's window (:meth:`buffered`), and hears :class:`FlowResumed`
  when it moves again, so a slow reader slows the writer on the other side.

The layers above import only this module (and :mod:`mosnpy.protocol.headers`,
:mod:`mosnpy.protocol.registry`): a protocol family is one more pair of stream
connections named by its :class:`~mosnpy.protocol.descriptor.ProtocolDescriptor`, with
no change to the proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Protocol, runtime_checkable

from mosnpy.protocol.headers import HeaderMap

__all__ = [
    "ClientStreamConnection",
    "Outbox",
    "ConnectionTerminated",
    "DataReceived",
    "FlowResumed",
    "HeaderMap",
    "PoolMode",
    "ProtocolConversionError",
    "RequestHeaders",
    "RequestReceived",
    "ResetReason",
    "ResponseReceived",
    "ServerStreamConnection",
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


class RequestHeaders(HeaderMap):
    """Request headers that carry their request line: ``method`` and ``target`` (path
    and query).  HTTP protocols hand these up, so a route can rewrite the target and
    the upstream stream connection writes what the route left there."""

    __slots__ = ("method", "target", "timeout")

    def __init__(self, items: Iterable[tuple[str, str]] = (), *, method: str = "", target: str = "") -> None:
        super().__init__(items)
        self.method = method
        self.target = target
        #: seconds the request has left, set by the proxy just before it goes upstream
        #: when the request carried its own deadline; a protocol that can say so
        #: (gRPC's ``grpc-timeout``) passes it on.  None: nothing to pass on.
        self.timeout: float | None = None


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


# -- stream connections ---------------------------------------------------------------


@runtime_checkable
class StreamConnection(Protocol):
    """What both sides share: bytes in, events out, commands in, bytes out.

    ``closing`` turns true when the connection must close once its outbox is sent (an
    HTTP/1 ``Connection: close``, a stream reset HTTP/1 can only express by closing).
    """

    closing: bool
    #: the protocol has flow control of its own (HTTP/2 windows): the proxy counts and
    #: acknowledges (:meth:`consumed`) the body it receives here only when this is true
    flow_controlled: bool

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        """Decode ``data`` (plus what was buffered) into events; ``b""`` means EOF."""
        ...

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None: ...

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """Abort a stream (forget it; tell the peer where the protocol can)."""
        ...

    def data_to_send(self) -> bytes:
        """Empty and return the outbox."""
        ...

    def consumed(self, stream_id: int, n: int) -> None:
        """``n`` bytes of the body received on ``stream_id`` were passed on: the peer
        may send that much more (HTTP/2 opens its window; protocols whose flow control
        is TCP's do nothing, the reader simply reads on)."""
        ...

    def buffered(self, stream_id: int) -> int:
        """Bytes accepted by :meth:`send_data` for ``stream_id`` that wait for the
        peer's flow-control window (not yet in the outbox).  While this is large the
        feeder holds back :meth:`consumed` on the stream it forwards from."""
        ...

    def next_deadline(self) -> float:
        """When :meth:`on_timer` wants to be called next (``inf``: never)."""
        ...

    def on_timer(self, now: float) -> list[StreamEvent]:
        """The time is ``now`` (at or after :meth:`next_deadline`): run timers."""
        ...

    def connection_lost(self, message: str) -> list[StreamEvent]:
        """The transport is gone: a reset for every open stream."""
        ...


@runtime_checkable
class ServerStreamConnection(StreamConnection, Protocol):
    """The downstream side: requests in, responses out."""

    def send_headers(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        """The response head (``status`` is the HTTP-style code a filter may have set)."""
        ...

    def send_local_reply(self, stream_id: int, status: int, body: bytes, headers: HeaderMap) -> None:
        """A response made by the proxy (no route 404, no upstream 502, overflow 503,
        timeout 504, ...), in the protocol's own language; it ends the stream."""
        ...

    def expects_response(self, stream_id: int) -> bool:
        """False for a oneway stream, or one the peer already gave up."""
        ...

    def request_body_wanted(self, stream_id: int) -> None:
        """The proxy is ready for the request body (HTTP/1: ``100 Continue``)."""
        ...

    def resume(self) -> list[StreamEvent]:
        """Events held back until the previous stream's response ended (HTTP/1's
        pipelined requests are served one at a time); ``[]`` for multiplexed protocols."""
        ...

    @property
    def read_paused(self) -> bool:
        """True while a held-back request waits: feed no more bytes until :meth:`resume`."""
        ...

    @property
    def linger(self) -> bool:
        """When closing: the peer may still be sending (an unread request body), so
        half-close and read until it stops, or its answer may be lost to a reset."""
        ...

    def shutdown(self) -> None:
        """Graceful drain: finish the streams in flight, accept no new ones (HTTP/1:
        ``Connection: close`` on the current response; closing now when idle)."""
        ...

    @property
    def receiving_head(self) -> bool:
        """Part of a request head (an RPC frame) has arrived, not all of it: the time
        this lasts is bounded by the listener (slowloris), see :meth:`head_timeout`."""
        ...

    def head_timeout(self) -> None:
        """A head did not complete in time: queue what the protocol says (HTTP/1:
        ``408``) and become ``closing``."""
        ...


@runtime_checkable
class ClientStreamConnection(StreamConnection, Protocol):
    """The upstream side: requests out, responses in."""

    @property
    def active_streams(self) -> int:
        """Streams open on this connection."""
        ...

    @property
    def stream_limit(self) -> int:
        """How many streams the peer lets this connection carry at once (0: no limit
        of its own; the pool's cap applies).  HTTP/2: its ``MAX_CONCURRENT_STREAMS``."""
        ...

    def new_stream(self) -> int:
        """Allocate a stream (for xprotocol, a fresh request id) and return its id."""
        ...

    def send_headers(self, stream_id: int, headers: HeaderMap, *, end_stream: bool) -> None:
        """The request head; a oneway request expects nothing back and closes the stream."""
        ...

    def start(self, now: float) -> None:
        """The connection is up (timers count from ``now``)."""
        ...


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
        out = bytes(self._out)
        self._out.clear()
        return out

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


#: What a protocol descriptor names: factories taking the protocol's options.
ServerFactory = Callable[..., ServerStreamConnection]
ClientFactory = Callable[..., ClientStreamConnection]
