"""``tstream``: a whole protocol *family* from a plugin — a tiny multiplexed stream protocol.

Where ``codec.py`` plugs a codec into mosnpy's xprotocol engine (one frame each way),
this module brings its own pair of stream connections, like HTTP/2 does: streamed
request and response bodies, trailers both ways and resets, many streams on one
connection.  It registers a :class:`~mosnpy.protocol.descriptor.ProtocolDescriptor`
under the ``mosnpy.protocols`` entry-point group, and the proxy serves it without a
line of core code knowing it exists.

Wire format (big-endian).  The client opens the connection with the magic ``b"TS"``
(the preface the matcher sniffs), then both sides send frames::

    type u8 | flags u8 | stream_id u32 | length u32 | payload (length bytes)

* ``HEADERS`` (1): ``"name: value\\n"`` lines (UTF-8).  A request carries the pseudo
  lines ``:method``, ``:path`` and ``:authority``, a response ``:status``; they become
  the event's ``method`` / ``path`` / ``host`` (``status``) and are not in its header
  map.  Opens a stream (the client picks its id: ``1, 2, ...``, never 0).
* ``DATA`` (2): a piece of the body.
* ``TRAILERS`` (3): header lines after the body; always end the stream's direction.
* ``RESET`` (4): abort the stream; the payload is a reason text.

``flags`` bit ``END_STREAM`` (1) on HEADERS or DATA ends that direction of the stream.
Frame-level garbage (bad magic, unknown type, stream id 0, an oversized or malformed
frame) ends the connection; a frame that breaks a stream's order (DATA before a
response head, a second request head on an open stream) resets that stream.

Sans-I/O like every stream connection: bytes in, events out, commands in, bytes out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from mosnpy.protocol.api import (
    ConnectionTerminated,
    DataReceived,
    PoolMode,
    ProtocolConversionError,
    RequestHeaders,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.matcher import MatchResult

__all__ = [
    "DATA",
    "DESCRIPTOR",
    "END_STREAM",
    "HEADERS",
    "MAGIC",
    "RESET",
    "TRAILERS",
    "Frame",
    "FrameError",
    "TStreamClientConnection",
    "TStreamHeaders",
    "TStreamServerConnection",
    "decode_frame",
    "decode_headers",
    "encode_frame",
    "encode_headers",
    "match",
]

MAGIC = b"TS"
HEADERS, DATA, TRAILERS, RESET = 1, 2, 3, 4
END_STREAM = 1
#: the largest payload one frame may carry (bigger bodies go in several DATA frames)
MAX_PAYLOAD = 1 << 20
_HEAD = struct.Struct(">BBII")
_INF = float("inf")
_MAX_ID = (1 << 32) - 1


# -- frames ----------------------------------------------------------------------------


class FrameError(ValueError):
    """Bytes that are not tstream frames: the connection cannot go on."""


class Frame(NamedTuple):
    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def end_stream(self) -> bool:
        return bool(self.flags & END_STREAM)


def encode_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack(type_, flags, stream_id, len(payload)) + payload


def decode_frame(buf: bytearray) -> Frame | None:
    """One whole frame from the front of ``buf`` (deleting its bytes), or None when
    ``buf`` holds less than a frame.

    Raises:
        FrameError: an unknown type, stream id 0 or a payload over :data:`MAX_PAYLOAD`.
    """
    if len(buf) < _HEAD.size:
        return None
    type_, flags, sid, length = _HEAD.unpack_from(buf)
    if not HEADERS <= type_ <= RESET:
        raise FrameError(f"unknown frame type {type_}")
    if sid == 0:
        raise FrameError("stream id 0")
    if length > MAX_PAYLOAD:
        raise FrameError(f"frame of {length} bytes (at most {MAX_PAYLOAD})")
    end = _HEAD.size + length
    if len(buf) < end:
        return None
    payload = bytes(buf[_HEAD.size : end])
    del buf[:end]
    return Frame(type_, flags, sid, payload)


def encode_headers(pairs: list[tuple[str, str]]) -> bytes:
    """``"name: value\\n"`` lines.

    Raises:
        ProtocolConversionError: a name or value tstream cannot carry (a newline, or a
            name with ``": "`` in it).
    """
    out = []
    for name, value in pairs:
        if "\n" in name or "\n" in value or ": " in name or not name:
            raise ProtocolConversionError(f"tstream cannot carry header {name!r}: {value!r}")
        out.append(f"{name}: {value}\n")
    return "".join(out).encode()


def decode_headers(payload: bytes) -> list[tuple[str, str]]:
    """The (lower-cased name, value) pairs of a header block.

    Raises:
        FrameError: not UTF-8, or a line without ``": "``.
    """
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise FrameError(f"header block is not UTF-8: {exc}") from None
    pairs = []
    for line in text.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep or not name:
            raise FrameError(f"bad header line {line!r}")
        pairs.append((name.lower(), value))
    return pairs


def match(data: bytes) -> MatchResult:
    """Protocol detection: a tstream connection starts with the magic."""
    if len(data) < len(MAGIC):
        return MatchResult.AGAIN if MAGIC.startswith(data) else MatchResult.FAILED
    return MatchResult.MATCH if data.startswith(MAGIC) else MatchResult.FAILED


class TStreamHeaders(RequestHeaders):
    """A request's headers plus its request line (the pseudo headers: ``method``,
    ``target`` for ``:path``, and ``authority``), so forwarding a tstream request
    upstream keeps them — and a route's rewrite of the target."""

    __slots__ = ("authority",)

    def __init__(
        self, items: Iterable[tuple[str, str]] = (), *, method: str, target: str, authority: str
    ) -> None:
        super().__init__(items, method=method, target=target)
        self.authority = authority


def _regular(headers: HeaderMap) -> list[tuple[str, str]]:
    """The header pairs that are not pseudo headers (those come from arguments)."""
    return [(k, v) for k, v in headers.items_all() if not k.startswith(":")]


def _split_pseudo(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    pseudo: dict[str, str] = {}
    regular = []
    for name, value in pairs:
        if name.startswith(":"):
            pseudo.setdefault(name, value)
        else:
            regular.append((name, value))
    return pseudo, regular


def _request_line(headers: HeaderMap) -> tuple[str, str, str]:
    """(method, path, authority) for a request head: from the request line a
    :class:`RequestHeaders` carries (an HTTP one's authority is its ``host``), else
    from pseudo headers in the map."""
    if isinstance(headers, TStreamHeaders):
        return headers.method, headers.target, headers.authority
    if isinstance(headers, RequestHeaders) and headers.method:
        return headers.method, headers.target or "/", headers.get("host", "")
    method = headers.get(":method")
    if method is None:
        raise ProtocolConversionError("tstream needs a request line (:method, :path, :authority)")
    return method, headers.get(":path", "/"), headers.get(":authority", "")


# -- both sides --------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    #: the peer may still send on it (its request / our response has not ended)
    remote_open: bool = True
    #: we may still send on it
    local_open: bool = True
    #: client side: the response head arrived
    head_received: bool = False


class _Base:
    __slots__ = ("_buf", "_out", "closing", "stray", "streams")

    def __init__(self) -> None:
        #: never set: tstream ends streams with frames, not by closing the connection
        self.closing = False
        self._buf = bytearray()
        self._out = bytearray()
        #: stream id → state, while either direction is open
        self.streams: dict[int, _Stream] = {}
        #: frames for streams nobody knows (finished, reset): dropped
        self.stray = 0

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    #: no limit of its own
    stream_limit = 0
    #: no flow control of its own: TCP's is enough for a toy
    flow_controlled = False

    def consumed(self, stream_id: int, n: int) -> None:
        """No flow control of its own: TCP's is enough for a toy."""

    def buffered(self, stream_id: int) -> int:
        return 0

    def _frame(self, type_: int, flags: int, sid: int, payload: bytes = b"") -> None:
        self._out += _HEAD.pack(type_, flags, sid, len(payload))
        self._out += payload

    def _end_local(self, sid: int, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            del self.streams[sid]

    def _end_remote(self, sid: int, stream: _Stream) -> None:
        stream.remote_open = False
        if not stream.local_open:
            del self.streams[sid]

    def _stream_error(self, sid: int, message: str, events: list[StreamEvent]) -> None:
        """The peer broke a stream's order: reset it both ways."""
        self.streams.pop(sid, None)
        self._frame(RESET, 0, sid, f"protocol error: {message}".encode())
        events.append(StreamReset(sid, ResetReason.REMOTE_RESET, f"protocol error: {message}"))

    # -- commands shared by both sides -------------------------------------------------

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return  # reset, or already ended: nothing more goes out on it
        view = memoryview(data)
        while len(view) > MAX_PAYLOAD:
            self._frame(DATA, 0, stream_id, bytes(view[:MAX_PAYLOAD]))
            view = view[MAX_PAYLOAD:]
        self._frame(DATA, END_STREAM if end_stream else 0, stream_id, bytes(view))
        if end_stream:
            self._end_local(stream_id, stream)

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        self._frame(TRAILERS, END_STREAM, stream_id, encode_headers(_regular(trailers)))
        self._end_local(stream_id, stream)

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._frame(RESET, 0, stream_id, reason.value.encode())

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float:
        return _INF

    def on_timer(self, now: float) -> list[StreamEvent]:
        return []

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sids = sorted(self.streams)
        self.streams.clear()
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message) for sid in sids]

    # -- reading -------------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not data:
            return events
        buf = self._buf
        buf += data
        try:
            if not self._preface(buf):
                return events
            while (frame := decode_frame(buf)) is not None:
                self._on_frame(frame, events)
        except FrameError as exc:
            buf.clear()
            events.append(ConnectionTerminated(f"bad tstream bytes: {exc}"))
        return events

    def _preface(self, buf: bytearray) -> bool:
        return True

    def _on_frame(self, frame: Frame, events: list[StreamEvent]) -> None:
        raise NotImplementedError

    def _on_body(self, frame: Frame, stream: _Stream, events: list[StreamEvent]) -> None:
        """A DATA or TRAILERS frame on a stream whose peer side is open."""
        sid = frame.stream_id
        if frame.type == DATA:
            events.append(DataReceived(sid, frame.payload, end_stream=frame.end_stream))
            if frame.end_stream:
                self._remote_ended(sid, stream)
        else:  # TRAILERS
            trailers = HeaderMap(_split_pseudo(decode_headers(frame.payload))[1])
            events.append(TrailersReceived(sid, trailers))
            self._remote_ended(sid, stream)

    def _remote_ended(self, sid: int, stream: _Stream) -> None:
        """The peer's side ended (the client's: the response is whole)."""
        self._end_remote(sid, stream)

    def _on_reset(self, frame: Frame, events: list[StreamEvent]) -> None:
        if self.streams.pop(frame.stream_id, None) is None:
            self.stray += 1
            return
        message = frame.payload.decode(errors="replace")
        events.append(StreamReset(frame.stream_id, ResetReason.REMOTE_RESET, message))


# -- server side -------------------------------------------------------------------------


class TStreamServerConnection(_Base):
    """The downstream side of one tstream connection: requests in, responses out."""

    __slots__ = ("_preface_seen",)

    #: multiplexed: every request is dispatched as it arrives, nothing is held back
    read_paused = False
    #: every request is framed, so an unread body never garbles the next one
    linger = False

    def __init__(self) -> None:
        super().__init__()
        self._preface_seen = False

    def request_body_wanted(self, stream_id: int) -> None:
        """Bodies stream without asking (there is no ``100 Continue``)."""

    def resume(self) -> list[StreamEvent]:
        return []

    def shutdown(self) -> None:
        """Nothing to tell the peer (tstream has no GOAWAY): the server drains."""

    @property
    def receiving_head(self) -> bool:
        """Part of a frame has arrived, not all of it."""
        return bool(self._buf) and not self.closing

    def head_timeout(self) -> None:
        """A frame that never completes ends the connection."""
        self._buf.clear()
        self.closing = True

    def _preface(self, buf: bytearray) -> bool:
        if self._preface_seen:
            return True
        if len(buf) < len(MAGIC):
            if MAGIC.startswith(buf):
                return False
            raise FrameError(f"no tstream magic: {bytes(buf)!r}")
        if buf[: len(MAGIC)] != MAGIC:
            raise FrameError(f"no tstream magic: {bytes(buf[:8])!r}")
        del buf[: len(MAGIC)]
        self._preface_seen = True
        return True

    def _on_frame(self, frame: Frame, events: list[StreamEvent]) -> None:
        type_, sid = frame.type, frame.stream_id
        if type_ == RESET:
            self._on_reset(frame, events)
            return
        stream = self.streams.get(sid)
        if type_ == HEADERS:
            if stream is not None:
                self._stream_error(sid, "a request head on a stream in use", events)
                return
            pseudo, regular = _split_pseudo(decode_headers(frame.payload))
            method = pseudo.get(":method")
            if not method:
                self._frame(RESET, 0, sid, b"protocol error: request without :method")
                return
            self.streams[sid] = stream = _Stream()
            end = frame.end_stream
            if end:
                stream.remote_open = False
            headers = TStreamHeaders(
                regular,
                method=method,
                target=pseudo.get(":path", "/"),
                authority=pseudo.get(":authority", ""),
            )
            events.append(
                RequestReceived(
                    sid, headers, end_stream=end, method=method, host=headers.authority, path=headers.target
                )
            )
            return
        if stream is None:
            self.stray += 1
            return
        if not stream.remote_open:
            self._stream_error(sid, "frames after the request ended", events)
            return
        self._on_body(frame, stream, events)

    def expects_response(self, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and stream.local_open

    def send_headers(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        payload = encode_headers([(":status", str(status)), *_regular(headers)])
        self._frame(HEADERS, END_STREAM if end_stream else 0, stream_id, payload)
        if end_stream:
            self._end_local(stream_id, stream)

    def send_local_reply(self, stream_id: int, status: int, body: bytes, headers: HeaderMap) -> None:
        """A proxy-made response: a head with ``:status`` and the body (text) in DATA."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        reply = HeaderMap(_regular(headers))
        if body:
            if "content-type" not in reply:
                reply["content-type"] = "text/plain; charset=utf-8"
            reply["content-length"] = str(len(body))
        self.send_headers(stream_id, reply, status=status, end_stream=not body)
        if body:
            self.send_data(stream_id, body, True)


# -- client side -------------------------------------------------------------------------


class TStreamClientConnection(_Base):
    """The upstream side of one tstream connection: requests out, responses in.

    Stream ids are this connection's own: ``1, 2, ...`` wrapping within 32 bits and
    skipping ids still open.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        super().__init__()
        self._out += MAGIC  # the preface leaves with the first request
        self._next = 0

    def start(self, now: float) -> None:
        """No timers: tstream has no keepalive."""

    def new_stream(self) -> int:
        streams = self.streams
        while True:
            self._next = self._next + 1 if self._next < _MAX_ID else 1
            if self._next not in streams:
                streams[self._next] = _Stream()
                return self._next

    def send_headers(self, stream_id: int, headers: HeaderMap, *, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        method, path, authority = _request_line(headers)
        payload = encode_headers(
            [(":method", method), (":path", path), (":authority", authority), *_regular(headers)]
        )
        self._frame(HEADERS, END_STREAM if end_stream else 0, stream_id, payload)
        if end_stream:
            self._end_local(stream_id, stream)

    def _on_frame(self, frame: Frame, events: list[StreamEvent]) -> None:
        type_, sid = frame.type, frame.stream_id
        if type_ == RESET:
            self._on_reset(frame, events)
            return
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self.stray += 1  # reset or finished on our side: a late frame
            return
        if type_ == HEADERS:
            if stream.head_received:
                self._stream_error(sid, "a second response head", events)
                return
            pseudo, regular = _split_pseudo(decode_headers(frame.payload))
            try:
                status = int(pseudo.get(":status", ""))
            except ValueError:
                self._stream_error(sid, f"bad :status {pseudo.get(':status')!r}", events)
                return
            stream.head_received = True
            events.append(
                ResponseReceived(sid, HeaderMap(regular), status=status, end_stream=frame.end_stream)
            )
            if frame.end_stream:
                self._response_ended(sid, stream)
            return
        if not stream.head_received:
            self._stream_error(sid, "a body before the response head", events)
            return
        self._on_body(frame, stream, events)

    def _remote_ended(self, sid: int, stream: _Stream) -> None:
        self._response_ended(sid, stream)

    def _response_ended(self, sid: int, stream: _Stream) -> None:
        """The response is whole: the stream is done.  A request still being sent is
        cut short (its answer is already in) and the server told to forget it."""
        del self.streams[sid]
        if stream.local_open:
            self._frame(RESET, 0, sid, b"response complete")


DESCRIPTOR = ProtocolDescriptor(
    name="tstream",
    matcher=match,
    server_factory=TStreamServerConnection,
    client_factory=TStreamClientConnection,
    pool_mode=PoolMode.MULTIPLEX,
    server_stream_connection=TStreamServerConnection,
    client_stream_connection=TStreamClientConnection,
)
