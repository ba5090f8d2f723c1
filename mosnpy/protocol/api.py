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
no change to the proxy.  The events, enums and :class:`Outbox` are defined in
:mod:`mosnpy.protocol.events` (compiled in a mypyc build); import them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mosnpy.protocol.events import (
    ConnectionTerminated,
    DataReceived,
    FlowResumed,
    Outbox,
    PoolMode,
    ProtocolConversionError,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.headers import HeaderMap, RequestHeaders

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


#: What a protocol descriptor names: factories taking the protocol's options.
ServerFactory = Callable[..., ServerStreamConnection]
ClientFactory = Callable[..., ClientStreamConnection]
