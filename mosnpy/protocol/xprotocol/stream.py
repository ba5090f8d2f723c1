"""xprotocol stream connections: any :class:`~mosnpy.protocol.xprotocol.XCodec` as streams.

Theory of operation
-------------------
An RPC frame is a whole message, so an xprotocol stream is one frame each way: a
request frame becomes :class:`~mosnpy.protocol.api.RequestReceived` with
``end_stream=True``, and the response frame goes back as one ``send_headers``.  The
headers the proxy sees are an :class:`XHeaders`: the frame's header view (service,
method, ... — what routes read) that also carries the frame itself, so forwarding
re-encodes the very frame received, with only its request id changed.

Server side (:class:`XServerStreamConnection`): every request gets a stream id of this
connection's own (clients choose their request ids, and a buggy one may reuse an id
still in flight); the caller's id is kept per stream and put back on whatever answers
it.  Heartbeats are answered here and never become streams; a frame the codec could
only half read gets the protocol's error reply (when the codec can build one) and
anything unreadable ends the connection with :class:`ConnectionTerminated`.

Client side (:class:`XClientStreamConnection`): the stream id *is* the upstream request
id, allocated per connection (wrapping within the codec's ``id_bits``, never 0, never
one still in flight).  Responses are matched to their stream by id; one for a stream
nobody waits for (it timed out, it was reset) is a stray, counted and dropped.
Keepalive: when the codec can build heartbeats and ``keepalive_interval`` > 0, an idle
connection sends one every interval; ``keepalive_failures`` consecutive heartbeats
unanswered within ``keepalive_timeout`` terminate the connection.  The clock is the
caller's (:meth:`next_deadline` / :meth:`on_timer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import EllipsisType
from typing import Final

from mosnpy.protocol.api import (
    ConnectionTerminated,
    Outbox,
    ProtocolConversionError,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.xprotocol.codec import (
    DecodeError,
    HeartbeatCodec,
    HijackCodec,
    StreamType,
    XCodec,
    XFrame,
)

__all__ = ["DECODE_ERROR_STATUS", "XClientStreamConnection", "XHeaders", "XServerStreamConnection"]

#: Framework status for a request whose body could not be decoded (MOSN: codec error).
DECODE_ERROR_STATUS: Final = 0

_INF: Final = float("inf")
_RESPONSE: Final = StreamType.RESPONSE
_ONEWAY: Final = StreamType.ONEWAY


class XHeaders(HeaderMap):
    """A frame's header view as a header map, carrying the frame it came from.

    Lazy: the frame's view is asked for only when the map is read (a response that
    goes back as it came never decodes its headers), and while nobody iterates or edits
    the map, :meth:`get` asks the view directly, so a route that reads one key
    (``service``) makes a lazy view (dubbo's) decode only that much.  A view that is a
    plain ``dict`` was decoded already: it is looked up through a lower-cased copy.  Any
    other mapping must use lower-case keys, as header maps do.

    Edits change the map (filters and routes read them) but not the frame: an xprotocol
    codec has no general way to write header fields back, so the frame is forwarded as
    it came, as MOSN does for protocols without header setters.
    """

    __slots__ = ("_view", "codec_name", "frame")

    def __init__(self, frame: XFrame, codec_name: str) -> None:
        self.raw = self.wire = None
        self.frame = frame
        self.codec_name = codec_name
        #: the frame's view while the items are not built (None: not asked for yet)
        self._view: Mapping[str, str] | None = None
        self._items = None

    def _load(self) -> list[tuple[str, str]]:
        return [(k.lower(), v) for k, v in self.frame.header_view().items()]

    def _peek(self, name: str) -> str | EllipsisType | None:
        view = self._view
        if view is None:
            view = self.frame.header_view()
            if type(view) is dict:
                # Decoded already: look names up lower-cased, the first one winning
                # (built from the end, so an earlier key overwrites a later one).
                view = {k.lower(): v for k, v in reversed(view.items())}
            self._view = view
        return view.get(name)


def _frame_of(headers: HeaderMap, codec: XCodec) -> XFrame:
    # (``type() is`` first: an isinstance on a HeaderMap class goes through ABCMeta.)
    if (type(headers) is XHeaders or isinstance(headers, XHeaders)) and headers.codec_name == codec.name:
        return headers.frame
    raise ProtocolConversionError(f"{codec.name} cannot send headers that are not a {codec.name} frame")


class XServerStreamConnection(Outbox):
    """The downstream side of one xprotocol connection."""

    __slots__ = ("_next_id", "buffer", "closing", "codec", "frames", "hijack", "stray")

    #: frames are whole and multiplexed: nothing is ever held back or lingered over
    read_paused = False
    linger = False

    def __init__(self, codec: XCodec) -> None:
        self.codec = codec
        #: the codec again if it can build error replies (checked once per connection:
        #: an isinstance against a runtime_checkable Protocol is slow per request)
        self.hijack = codec if isinstance(codec, HijackCodec) else None
        self.buffer = bytearray()
        super().__init__()
        self._next_id = 0
        #: stream id → (the request frame, the caller's request id), while unanswered
        self.frames: dict[int, tuple[XFrame, int]] = {}
        self.stray = 0
        self.closing = False

    @property
    def active_streams(self) -> int:
        return len(self.frames)

    # -- reading ---------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not data:
            return events
        buf = self.buffer
        buf += data
        codec = self.codec
        name = codec.name
        while buf:
            try:
                frame = codec.decode(buf)
            except DecodeError as exc:
                if exc.request is not None and exc.consumed and self.hijack is not None:
                    del buf[: exc.consumed]
                    reply = self.hijack.hijack(exc.request, DECODE_ERROR_STATUS, f"decode error: {exc}")
                    self._out += codec.encode(reply)
                    continue
                buf.clear()
                events.append(ConnectionTerminated(f"undecodable {name} bytes: {exc}"))
                break
            if frame is None:
                break
            kind = frame.stream_type
            if frame.is_heartbeat and kind is not _RESPONSE:
                if isinstance(codec, HeartbeatCodec):
                    self._out += codec.encode(codec.reply(frame))
                continue
            if kind is _RESPONSE:
                self.stray += 1  # a client does not send responses; drop it
                continue
            self._next_id += 1
            sid = self._next_id
            oneway = kind is _ONEWAY
            if not oneway:
                self.frames[sid] = (frame, codec.get_request_id(frame))
            headers = XHeaders(frame, name)
            timeout_ms = frame.timeout_ms
            events.append(
                RequestReceived(
                    sid,
                    headers,
                    end_stream=True,
                    method=headers.get("method", ""),
                    host=headers.get("service", ""),
                    oneway=oneway,
                    timeout=None if timeout_ms == 0 else (timeout_ms / 1000 if timeout_ms > 0 else _INF),
                )
            )
        return events

    def expects_response(self, stream_id: int) -> bool:
        return stream_id in self.frames

    def request_body_wanted(self, stream_id: int) -> None:
        """Frames are whole: the body came with the request."""

    def resume(self) -> list[StreamEvent]:
        return []

    def shutdown(self) -> None:
        """Nothing to tell the peer: xprotocols have no GOAWAY; the server drains."""

    @property
    def receiving_head(self) -> bool:
        """Part of a frame has arrived, not all of it."""
        return bool(self.buffer) and not self.closing

    def head_timeout(self) -> None:
        """A frame that never completes: there is no answer to a frame never read."""
        self.buffer.clear()
        self.closing = True

    # -- writing ---------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        entry = self.frames.pop(stream_id, None)
        if entry is None:
            return  # oneway, or already answered
        frame = _frame_of(headers, self.codec)
        self.codec.set_request_id(frame, entry[1])
        self._out += self.codec.encode(frame)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Frames are whole: a body never follows the headers."""

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        """Frames are whole: trailers never follow."""

    def send_local_reply(self, stream_id: int, status: int, body: bytes, headers: HeaderMap) -> None:
        """The codec's hijack frame for ``status``; without one there is no way to
        answer in this protocol, so the connection is asked to close (raises)."""
        entry = self.frames.pop(stream_id, None)
        if entry is None:
            return
        if self.hijack is None:
            raise ProtocolConversionError(f"{self.codec.name} cannot build error replies")
        request, caller_id = entry
        codec = self.codec
        codec.set_request_id(request, caller_id)
        frame = self.hijack.hijack(request, status, body.decode(errors="replace").strip())
        codec.set_request_id(frame, caller_id)
        self._out += codec.encode(frame)

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """Forget the stream: xprotocol has no reset frame, the caller times out."""
        self.frames.pop(stream_id, None)

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sids = list(self.frames)
        self.frames.clear()
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message) for sid in sids]


class XClientStreamConnection(Outbox):
    """The upstream side of one xprotocol connection."""

    __slots__ = (
        "_hb_id",
        "_hb_sent",
        "_mask",
        "_next",
        "_next_heartbeat",
        "buffer",
        "closing",
        "codec",
        "heartbeat_failures",
        "heartbeats",
        "hijack",
        "keepalive_failures",
        "keepalive_interval",
        "keepalive_timeout",
        "stray",
        "streams",
    )

    def __init__(
        self,
        codec: XCodec,
        *,
        keepalive_interval: float = 15.0,
        keepalive_timeout: float = 1.0,
        keepalive_failures: int = 6,
    ) -> None:
        self.codec = codec
        self.hijack = codec if isinstance(codec, HijackCodec) else None
        self.heartbeats = codec if isinstance(codec, HeartbeatCodec) and keepalive_interval > 0 else None
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_failures = keepalive_failures
        self.buffer = bytearray()
        super().__init__()
        self._mask = (1 << codec.id_bits) - 1
        self._next = 0
        #: ids of streams waiting for a response
        self.streams: set[int] = set()
        self.stray = 0
        self.closing = False
        self.heartbeat_failures = 0
        self._hb_id = 0  # the heartbeat in flight (0: none)
        self._hb_sent = 0.0
        self._next_heartbeat = _INF

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    #: as many calls in flight as ids allow (the pool's cap applies)
    stream_limit = 0

    def start(self, now: float) -> None:
        if self.heartbeats is not None:
            self._next_heartbeat = now + self.keepalive_interval

    def _next_id(self) -> int:
        """1, 2, ... wrapping within ``id_bits``, skipping 0 and ids still in use."""
        streams = self.streams
        while True:
            self._next = (self._next + 1) & self._mask or 1
            if self._next not in streams and self._next != self._hb_id:
                return self._next

    def new_stream(self) -> int:
        sid = self._next_id()
        self.streams.add(sid)
        return sid

    # -- writing ---------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: HeaderMap, *, end_stream: bool) -> None:
        frame = _frame_of(headers, self.codec)
        self.codec.set_request_id(frame, stream_id)
        self._out += self.codec.encode(frame)
        if frame.stream_type is _ONEWAY:
            self.streams.discard(stream_id)  # nothing will come back

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Frames are whole: a body never follows the headers."""

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        """Frames are whole: trailers never follow."""

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """Stop waiting for the stream; a late response is a stray."""
        self.streams.discard(stream_id)

    # -- reading ---------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not data:
            return events
        buf = self.buffer
        buf += data
        codec = self.codec
        name = codec.name
        streams = self.streams
        hijack = self.hijack
        while buf:
            try:
                frame = codec.decode(buf)
            except DecodeError as exc:
                buf.clear()
                events.append(ConnectionTerminated(f"upstream sent an undecodable {name} frame: {exc}"))
                break
            if frame is None:
                break
            kind = frame.stream_type
            if kind is not _RESPONSE:
                if frame.is_heartbeat and isinstance(codec, HeartbeatCodec):
                    self._out += codec.encode(codec.reply(frame))  # the server probes us
                else:
                    self.stray += 1  # an upstream request on a client connection: not supported
                continue
            rid = codec.get_request_id(frame)
            if rid == self._hb_id and frame.is_heartbeat:
                self._hb_id = 0
                self.heartbeat_failures = 0
                continue
            if rid not in streams:
                self.stray += 1
                continue
            streams.discard(rid)
            status = hijack.response_code(frame) if hijack is not None else 200
            events.append(ResponseReceived(rid, XHeaders(frame, name), status=status, end_stream=True))
        return events

    # -- keepalive ---------------------------------------------------------------------

    def next_deadline(self) -> float:
        if self._hb_id:
            return self._hb_sent + self.keepalive_timeout
        return self._next_heartbeat

    def on_timer(self, now: float) -> list[StreamEvent]:
        hb = self.heartbeats
        if hb is None:
            return []
        if self._hb_id:
            if now < self._hb_sent + self.keepalive_timeout:
                return []
            self._hb_id = 0  # unanswered: a late answer is a stray
            self.heartbeat_failures += 1
            if self.heartbeat_failures >= self.keepalive_failures:
                return [ConnectionTerminated(f"{self.heartbeat_failures} heartbeats unanswered")]
            self._next_heartbeat = now + self.keepalive_interval
            return []
        if now < self._next_heartbeat:
            return []
        self._next_heartbeat = now + self.keepalive_interval
        if self.streams:
            return []  # busy connections prove themselves alive
        self._hb_id = self._next_id()
        self._hb_sent = now
        self._out += self.codec.encode(hb.trigger(self._hb_id))
        return []

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sids = sorted(self.streams)
        self.streams.clear()
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message) for sid in sids]
