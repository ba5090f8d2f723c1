"""HTTP/2 stream connections on h2: multiplexed streams both ways, flow control, gRPC.

Theory of operation
-------------------
h2's :class:`~h2.connection.H2Connection` is already a sans-I/O stream connection
(bytes in, events out, ``data_to_send()``); this module maps it onto the neutral API
(:mod:`mosnpy.protocol.api`) almost one to one and adds what a proxy needs on top:

* **Headers.**  Pseudo headers become attributes (:mod:`.headers`); connection-specific
  headers from an HTTP/1 peer are dropped on the way out; ``:authority`` ↔ ``host``.
  What peers send is checked here in one pass (:mod:`.validate`, h2's rules; a
  malformed block resets its stream, RFC 9113 §8.1.1) and h2's own inbound checks are
  off; what we send is built valid, so h2's outbound validation and normalisation are
  off too (they cost as much as the rest of a request).  An unedited received map goes
  on as its received field pairs (``HeaderMap.wire``).
* **Flow control end to end.**  Received DATA is acknowledged (the window reopened)
  only when the proxy says it was passed on (:meth:`consumed`), so a slow reader on
  the other side slows this peer down instead of filling memory.  What we send beyond
  the peer's window waits in a per-stream queue (:meth:`buffered` says how much) and
  moves when a WINDOW_UPDATE arrives, which is reported as
  :class:`~mosnpy.protocol.api.FlowResumed` so the proxy can acknowledge in turn.
* **GOAWAY.**  A peer's GOAWAY stops new streams but lets the ones it accepted finish
  (h2 would refuse every later frame: its state is put back to open); streams it did
  not accept are reset as *unprocessed*, so a safe request is sent again elsewhere.
  Our own graceful GOAWAY (:meth:`H2ServerStreamConnection.shutdown`) is written
  here for the same reason, and streams the client opens after it are refused.
* **gRPC.**  A local reply to a gRPC call is a trailers-only response with the
  matching ``grpc-status``; a trailers-only failure from upstream is mapped to an
  HTTP-style status for retries; ``grpc-timeout`` is the call's deadline and goes
  upstream reduced by the time spent (:mod:`.grpc`).
* **Abuse.**  Rapid reset (CVE-2023-44487), PING / SETTINGS / PRIORITY floods and
  empty-frame floods are counted per one-second window (the server's timer); past a
  bound the connection gets GOAWAY(ENHANCE_YOUR_CALM).  CONTINUATION floods and HPACK
  bombs are bounded by h2 and hpack themselves (at most 64 CONTINUATION frames, the
  decoded header list at ``max_header_list_size``) and end the connection the same way.
  A stream whose peer keeps its window shut longer than ``stall_timeout`` is reset.

Timers take ``now`` from the caller (:meth:`next_deadline` / :meth:`on_timer`), like
every stream connection: nothing here reads a clock or a socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from mosnpy.protocol.api import (
    ConnectionTerminated,
    DataReceived,
    FlowResumed,
    ProtocolConversionError,
    RequestHeaders,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http2 import grpc
from mosnpy.protocol.http2.headers import (
    H2RequestHeaders,
    H2ResponseHeaders,
    Pairs,
    regular_pairs,
)
from mosnpy.protocol.http2.validate import MalformedHeaders, request_block, response_block, trailer_block

__all__ = ["H2ClientStreamConnection", "H2ServerStreamConnection", "H2Settings"]

_INF = float("inf")
_Codes = h2.errors.ErrorCodes
_S = h2.settings.SettingCodes
_OPEN_STATES = {
    True: h2.connection.ConnectionState.CLIENT_OPEN,
    False: h2.connection.ConnectionState.SERVER_OPEN,
}
#: Streams a client opens before the server's SETTINGS say how many it allows (RFC
#: 9113 §6.5.2 recommends servers allow at least 100).
_ASSUMED_STREAMS = 100
#: The default connection window is 65,535 bytes whatever the settings say.
_DEFAULT_WINDOW = 65535

#: Reset reason → RST_STREAM code sent to the peer.
_CODE_FOR_RESET = {
    ResetReason.LOCAL_RESET: _Codes.CANCEL,
    ResetReason.OVERFLOW: _Codes.REFUSED_STREAM,
}


@dataclass(frozen=True, slots=True)
class H2Settings:
    """What we announce and enforce (config keys of the same names under
    ``extend_config.Http2``).  The defaults are safe for an edge."""

    #: streams a peer may have open on one connection at once
    max_concurrent_streams: int = 100
    #: per-stream receive window: what one stream may have in flight unacknowledged
    initial_window_size: int = 1 << 20
    #: connection receive window (all streams together)
    connection_window_size: int = 4 << 20
    max_frame_size: int = 16384
    #: decoded header list bound (HPACK bombs)
    max_header_list_size: int = 65536
    #: a stream whose peer keeps its window shut this long is reset (seconds)
    stall_timeout: float = 30.0
    #: per second, per connection: RST_STREAMs received before GOAWAY (rapid reset)
    max_resets_per_second: int = 200
    #: per second, per connection: PING, SETTINGS, PRIORITY, empty DATA, unknown frames
    max_control_frames_per_second: int = 1000
    #: client side: PING an idle-looking connection this often (0: never)
    keepalive_interval: float = 30.0

    OPTIONS = frozenset(
        {
            "max_concurrent_streams",
            "initial_window_size",
            "connection_window_size",
            "max_frame_size",
            "max_header_list_size",
            "stall_timeout",
            "max_resets_per_second",
            "max_control_frames_per_second",
            "keepalive_interval",
        }
    )

    def __post_init__(self) -> None:
        if not 1 <= self.max_concurrent_streams <= 2**31 - 1:
            raise ValueError(f"max_concurrent_streams {self.max_concurrent_streams}: must be 1 .. 2^31-1")
        if not _DEFAULT_WINDOW <= self.initial_window_size <= 2**31 - 1:
            raise ValueError(f"initial_window_size {self.initial_window_size}: must be 65535 .. 2^31-1")
        if not _DEFAULT_WINDOW <= self.connection_window_size <= 2**31 - 1:
            raise ValueError(f"connection_window_size {self.connection_window_size}: must be 65535 .. 2^31-1")
        if not 16384 <= self.max_frame_size <= 2**24 - 1:
            raise ValueError(f"max_frame_size {self.max_frame_size}: must be 16384 .. 2^24-1")
        if self.max_header_list_size < 1024:
            raise ValueError(f"max_header_list_size {self.max_header_list_size}: at least 1024")


@dataclass(slots=True)
class _Stream:
    """Our side's view of one stream."""

    #: we may still send on it
    local_open: bool = True
    #: the peer may still send on it
    remote_open: bool = True
    #: data waiting for the peer's window, and what ends the direction after it
    queue: deque[bytes] = field(default_factory=deque)
    queued: int = 0
    end_queued: bool = False
    trailers_queued: Pairs | None = None
    #: when the queue was first seen blocked (set by the timer), for stall_timeout
    blocked_since: float | None = None
    #: server side: the request is a gRPC call
    grpc: bool = False
    #: client side: the response head arrived
    head_received: bool = False


class _H2Base:
    """What both sides share: h2 set up, the send queue, resets and GOAWAY."""

    __slots__ = (
        "_deadline",
        "_goaway_received",
        "closing",
        "h2",
        "settings",
        "stray",
        "streams",
    )

    client_side = False
    #: windows per stream and per connection: received body is acknowledged when passed on
    flow_controlled = True

    def __init__(self, settings: H2Settings) -> None:
        self.settings = settings
        config = h2.config.H2Configuration(
            client_side=self.client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # received blocks are checked (and decoded) by .validate, in one pass
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        conn = h2.connection.H2Connection(config)
        initial = {
            _S.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            _S.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            _S.MAX_FRAME_SIZE: settings.max_frame_size,
            _S.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
        }
        if self.client_side:
            initial[_S.ENABLE_PUSH] = 0
        conn.local_settings = h2.settings.Settings(client=self.client_side, initial_values=initial)
        conn.max_inbound_frame_size = settings.max_frame_size
        conn.decoder.max_header_list_size = settings.max_header_list_size
        conn.initiate_connection()
        extra = settings.connection_window_size - _DEFAULT_WINDOW
        if extra > 0:
            conn.increment_flow_control_window(extra)
        self.h2 = conn
        self.streams: dict[int, _Stream] = {}
        self.closing = False
        #: frames for streams we no longer know (reset, finished): dropped
        self.stray = 0
        self._goaway_received = False
        self._deadline = _INF

    # -- the outbox ----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self.h2.data_to_send()

    # -- flow control --------------------------------------------------------------------

    def consumed(self, stream_id: int, n: int) -> None:
        if n > 0:
            try:
                self.h2.acknowledge_received_data(n, stream_id)
            except h2.exceptions.ProtocolError:
                pass  # the connection is going away

    def buffered(self, stream_id: int) -> int:
        stream = self.streams.get(stream_id)
        return stream.queued if stream is not None else 0

    def _pump(self, sid: int, stream: _Stream) -> None:
        """Send as much of ``stream``'s queue as the peer's windows allow."""
        conn = self.h2
        try:
            window = conn.local_flow_control_window(sid)
        except h2.exceptions.StreamClosedError:
            stream.queue.clear()
            stream.queued = 0
            return
        frame = conn.max_outbound_frame_size
        queue = stream.queue
        if window > 0:
            stream.blocked_since = None  # moving: only a window shut all along is a stall
        while queue and window > 0:
            chunk = queue[0]
            n = min(len(chunk), window, frame)
            if n < len(chunk):
                queue[0] = chunk[n:]
                chunk = chunk[:n]
            else:
                queue.popleft()
            stream.queued -= n
            window -= n
            last = not queue and stream.end_queued and stream.trailers_queued is None
            conn.send_data(sid, chunk, end_stream=last)
        if queue:
            return
        if stream.trailers_queued is not None:
            conn.send_headers(sid, stream.trailers_queued, end_stream=True)
            stream.trailers_queued = None
            self._end_local(sid, stream)
        elif stream.end_queued:
            self._end_local(sid, stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open or stream.end_queued:
            return
        if data:
            stream.queue.append(data)
            stream.queued += len(data)
        stream.end_queued = end_stream
        if not data and not stream.queue:
            if end_stream:
                self.h2.send_data(stream_id, b"", end_stream=True)
                self._end_local(stream_id, stream)
            return
        self._pump(stream_id, stream)

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open or stream.end_queued:
            return
        stream.trailers_queued = regular_pairs(trailers, trailers_ok=False)
        stream.end_queued = True
        self._pump(stream_id, stream)

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        if self.streams.pop(stream_id, None) is None:
            return
        if stream_id in self.h2.streams:  # a stream whose head never went out: just forget it
            try:
                self.h2.reset_stream(stream_id, _CODE_FOR_RESET.get(reason, _Codes.INTERNAL_ERROR))
            except h2.exceptions.ProtocolError:
                pass  # already closed on h2's side
        self._stream_gone()

    def _end_local(self, sid: int, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            self._forget(sid)

    def _end_remote(self, sid: int, stream: _Stream) -> None:
        stream.remote_open = False
        if not stream.local_open:
            self._forget(sid)

    def _forget(self, sid: int) -> None:
        if self.streams.pop(sid, None) is not None:
            self._stream_gone()

    def _stream_gone(self) -> None:
        """A stream ended: after a GOAWAY the connection closes with its last one."""
        if self._goaway_received and not self.streams:
            self.closing = True

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sids = sorted(self.streams)
        self.streams.clear()
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message) for sid in sids]

    # -- reading -------------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        if not data:
            return []  # EOF: the connection closes, connection_lost resets what is open
        events: list[StreamEvent] = []
        try:
            received = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued its GOAWAY with the matching error code.
            self.closing = True
            events.append(ConnectionTerminated(f"HTTP/2 protocol error: {exc}"))
            return events
        for event in received:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(self, event, events)
                if events and events[-1].__class__ is ConnectionTerminated:
                    break  # the connection is done: nothing after this counts
        return events

    #: h2 event type → handler (each side fills its own)
    _handlers: ClassVar[dict[type, Callable[[Any, Any, list[StreamEvent]], None]]] = {}

    def _on_window(self, event: h2.events.WindowUpdated, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream.queue:
                self._pump(sid, stream)
        else:
            for sid, stream in list(self.streams.items()):
                if stream.queue:
                    self._pump(sid, stream)
        events.append(FlowResumed(sid))

    def _on_settings(self, event: h2.events.RemoteSettingsChanged, events: list[StreamEvent]) -> None:
        """A larger INITIAL_WINDOW_SIZE opens every stream's window with no
        WINDOW_UPDATE (RFC 9113 §6.9.2): move what waits."""
        if _S.INITIAL_WINDOW_SIZE in event.changed_settings:
            waiting = [(sid, stream) for sid, stream in self.streams.items() if stream.queue]
            for sid, stream in waiting:
                self._pump(sid, stream)
            if waiting:
                events.append(FlowResumed(0))

    def _on_stream_reset(self, event: h2.events.StreamReset, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        if self.streams.pop(sid, None) is None:
            self.stray += 1
            return
        code = event.error_code
        name = code.name if isinstance(code, _Codes) else str(code)
        refused = code == _Codes.REFUSED_STREAM
        events.append(StreamReset(sid, ResetReason.REMOTE_RESET, f"RST_STREAM {name}", unprocessed=refused))
        self._stream_gone()

    def _on_goaway(self, event: h2.events.ConnectionTerminated, events: list[StreamEvent]) -> None:
        """The peer goes away: streams it accepted may finish; h2 would refuse their
        frames from here on, so its state goes back to open (no new stream is started
        on a connection that is ``closing`` or has received GOAWAY)."""
        self._goaway_received = True
        self.h2.state_machine.state = _OPEN_STATES[self.client_side]
        last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        code = event.error_code
        name = code.name if isinstance(code, _Codes) else str(code)
        for sid in sorted(self.streams):
            if sid > last and (sid % 2 == 1) == self.client_side:
                del self.streams[sid]
                events.append(
                    StreamReset(
                        sid, ResetReason.REMOTE_RESET, f"GOAWAY {name}: not processed", unprocessed=True
                    )
                )
        if not self.streams:
            self.closing = True

    def _on_data(self, event: h2.events.DataReceived, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self._stray_data(event)
            return
        data = event.data or b""
        padding = (event.flow_controlled_length or 0) - len(data)
        if padding > 0:
            self.consumed(sid, padding)  # padding is nobody's body: its window reopens now
        end = event.stream_ended is not None
        if not data and not end:
            self._on_empty_data(events)
        events.append(DataReceived(sid, data, end_stream=end))
        if end:
            self._remote_ended(sid, stream)

    def _on_trailers(self, event: h2.events.TrailersReceived, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self.stray += 1
            return
        try:
            trailers = trailer_block(event.headers or [])
        except MalformedHeaders as exc:
            self._malformed(sid, exc, events)
            return
        events.append(TrailersReceived(sid, HeaderMap(trailers)))
        self._remote_ended(sid, stream)

    def _malformed(self, sid: int, exc: MalformedHeaders, events: list[StreamEvent]) -> None:
        """A malformed header block is a stream error (RFC 9113 §8.1.1): the stream is
        reset with PROTOCOL_ERROR; the connection's other streams go on."""
        try:
            self.h2.reset_stream(sid, _Codes.PROTOCOL_ERROR)
        except h2.exceptions.ProtocolError:
            pass  # already closed on h2's side
        if self.streams.pop(sid, None) is not None:
            reason = ResetReason.UPSTREAM_RESET if self.client_side else ResetReason.REMOTE_RESET
            events.append(StreamReset(sid, reason, f"malformed HTTP/2 headers: {exc}"))
            self._stream_gone()

    def _on_empty_data(self, events: list[StreamEvent]) -> None:
        """An empty DATA frame that ends nothing (the server counts it as abuse)."""

    def _remote_ended(self, sid: int, stream: _Stream) -> None:
        """The peer's side of the stream ended (the client's: the response is whole)."""
        self._end_remote(sid, stream)

    def _stray_data(self, event: h2.events.DataReceived) -> None:
        self.stray += 1
        if event.flow_controlled_length:  # keep the connection window open
            self.consumed(event.stream_id, event.flow_controlled_length)


# -- server side -----------------------------------------------------------------------------


class H2ServerStreamConnection(_H2Base):
    """The downstream side of one HTTP/2 connection: requests in, responses out."""

    __slots__ = (
        "_controls",
        "_goaway_sent",
        "_last_stream",
        "_resets",
        "_window_end",
    )

    client_side = False
    #: multiplexed: nothing is held back
    read_paused = False
    #: every stream is framed: closing never garbles a request
    linger = False

    def __init__(self, **options: object) -> None:
        super().__init__(H2Settings(**options))  # type: ignore[arg-type]
        #: the highest client stream seen (what a graceful GOAWAY names)
        self._last_stream = 0
        self._goaway_sent = False
        self._resets = 0
        self._controls = 0
        #: end of the current one-second counting window (inf: no window running)
        self._window_end = _INF

    # -- commands --------------------------------------------------------------------------

    def expects_response(self, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and stream.local_open

    def request_body_wanted(self, stream_id: int) -> None:
        """Bodies flow within the window: there is no ``100 Continue`` to send."""

    def resume(self) -> list[StreamEvent]:
        return []

    def send_headers(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        if isinstance(headers, H2ResponseHeaders) and status != headers.status:
            code = headers.get("grpc-status")
            if code is not None and grpc.http_status(code) == status:
                status = headers.status  # a gRPC failure keeps its wire status (200)
        if status < 200:
            raise ProtocolConversionError(f"an interim status {status} cannot start an HTTP/2 response")
        pairs: Pairs = [(b":status", str(status).encode())]
        pairs += regular_pairs(headers, trailers_ok=False)
        self.h2.send_headers(stream_id, pairs, end_stream=end_stream)
        if end_stream:
            self._end_local(stream_id, stream)

    def send_local_reply(self, stream_id: int, status: int, body: bytes, headers: HeaderMap) -> None:
        """A proxy-made response: for a gRPC call trailers-only with the matching
        ``grpc-status``; otherwise a head with ``:status`` and the text in DATA."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        if stream.grpc:
            code = grpc.local_reply_code(status, headers.get("x-mosnpy-error"))
            message = body.decode("utf-8", "replace").strip()
            pairs: Pairs = [
                (b":status", b"200"),
                (b"content-type", b"application/grpc"),
                (b"grpc-status", str(code).encode()),
                (b"grpc-message", grpc.percent_encode(message).encode()),
            ]
            pairs += regular_pairs(headers, trailers_ok=False)
            self.h2.send_headers(stream_id, pairs, end_stream=True)
            self._end_local(stream_id, stream)
            return
        if status < 200:
            status, body = 500, f"invalid local reply status {status}\n".encode()
        reply = HeaderMap(headers.items_all())
        if body:
            if "content-type" not in reply:
                reply["content-type"] = "text/plain; charset=utf-8"
            reply["content-length"] = str(len(body))
        self.send_headers(stream_id, reply, status=status, end_stream=not body)
        if body:
            self.send_data(stream_id, body, True)

    #: h2 bounds what a header block may hold and how many frames it spans; a stalled
    #: peer's streams are bounded by the route timeouts and stall_timeout
    receiving_head = False

    def head_timeout(self) -> None:
        """Never asked (``receiving_head`` is never true)."""

    def shutdown(self) -> None:
        """Graceful drain: GOAWAY naming the last stream we accept; those finish."""
        if self._goaway_sent:
            return
        self._goaway_sent = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._last_stream
        frame.error_code = 0
        # Written beside h2, which would otherwise refuse to send anything more.
        self.h2._data_to_send += frame.serialize()
        if not self.streams:
            self.closing = True

    def _stream_gone(self) -> None:
        super()._stream_gone()
        if self._goaway_sent and not self.streams:
            self.closing = True

    def _calm_down(self, what: str, events: list[StreamEvent]) -> None:
        """An abusive peer: GOAWAY(ENHANCE_YOUR_CALM) and close."""
        if self.closing:
            return
        self.h2.close_connection(_Codes.ENHANCE_YOUR_CALM, additional_data=what.encode())
        self.closing = True
        events.append(ConnectionTerminated(f"HTTP/2 abuse: {what}"))

    # -- timers: the counting window and stalled streams -------------------------------------

    def next_deadline(self) -> float:
        if self._window_end < _INF:
            return self._window_end
        if self._resets or self._controls or any(s.queue for s in self.streams.values()):
            return 0.0  # start a window now
        return _INF

    def on_timer(self, now: float) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if now >= self._window_end:
            self._resets = self._controls = 0
            self._window_end = _INF
        stall = self.settings.stall_timeout
        for sid, stream in list(self.streams.items()):
            if not stream.queue:
                continue
            if stream.blocked_since is None:
                stream.blocked_since = now
            elif now - stream.blocked_since >= stall:
                self.reset(sid, ResetReason.LOCAL_RESET)
                events.append(
                    StreamReset(sid, ResetReason.LOCAL_RESET, f"peer kept its window shut for {stall:g}s")
                )
        if self._window_end == _INF and (
            self._resets or self._controls or any(s.queue for s in self.streams.values())
        ):
            self._window_end = now + 1.0
        return events

    def _count_control(self, events: list[StreamEvent]) -> None:
        self._controls += 1
        if self._controls > self.settings.max_control_frames_per_second:
            self._calm_down("too many control frames", events)

    # -- events ------------------------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        if sid > self._last_stream and not self._goaway_sent:
            self._last_stream = sid
        if self._goaway_sent and sid > self._last_stream:
            self.h2.reset_stream(sid, _Codes.REFUSED_STREAM)  # opened after our GOAWAY
            return
        raw = event.headers or []
        try:
            pseudo, regular = request_block(raw)
        except MalformedHeaders as exc:
            self._resets += 1  # answered with a reset: it counts as one (rapid reset)
            if self._resets > self.settings.max_resets_per_second:
                self._calm_down("too many malformed requests", events)
            else:
                self._malformed(sid, exc, events)
            return
        method = pseudo.get(":method", "")
        authority = pseudo.get(":authority", "")
        if authority:
            if not any(name == "host" for name, _ in regular):
                regular.append(("host", authority))
        else:
            authority = next((v for k, v in regular if k == "host"), "")
        target = pseudo.get(":path", "")
        headers = H2RequestHeaders.received(
            regular, list(raw[len(pseudo) :]), method=method, target=target, scheme=pseudo.get(":scheme", "")
        )
        stream = _Stream()
        stream.grpc = grpc.is_grpc(headers.get("content-type"))
        end = event.stream_ended is not None
        if end:
            stream.remote_open = False
        self.streams[sid] = stream
        timeout = grpc.parse_timeout(headers.get("grpc-timeout")) if stream.grpc else None
        events.append(
            RequestReceived(
                sid, headers, end_stream=end, method=method, host=authority, path=target, timeout=timeout
            )
        )

    def _on_empty_data(self, events: list[StreamEvent]) -> None:
        self._count_control(events)  # an empty DATA frame costs what a control frame does

    def _on_server_reset(self, event: h2.events.StreamReset, events: list[StreamEvent]) -> None:
        self._resets += 1
        if self._resets > self.settings.max_resets_per_second:
            self._calm_down("too many stream resets (rapid reset)", events)
            return
        self._on_stream_reset(event, events)

    def _on_control(self, event: object, events: list[StreamEvent]) -> None:
        self._count_control(events)

    def _on_server_settings(self, event: h2.events.RemoteSettingsChanged, events: list[StreamEvent]) -> None:
        self._count_control(events)
        if not self.closing:
            self._on_settings(event, events)

    _handlers: ClassVar[dict[type, Callable[[Any, Any, list[StreamEvent]], None]]] = {
        h2.events.RequestReceived: _on_request,
        h2.events.DataReceived: _H2Base._on_data,
        h2.events.TrailersReceived: _H2Base._on_trailers,
        h2.events.StreamReset: _on_server_reset,
        h2.events.WindowUpdated: _H2Base._on_window,
        h2.events.ConnectionTerminated: _H2Base._on_goaway,
        h2.events.PingReceived: _on_control,
        h2.events.RemoteSettingsChanged: _on_server_settings,
        h2.events.PriorityUpdated: _on_control,
        h2.events.UnknownFrameReceived: _on_control,
    }


# -- client side -----------------------------------------------------------------------------


class H2ClientStreamConnection(_H2Base):
    """The upstream side of one HTTP/2 connection: requests out, responses in.

    Stream ids are h2's (odd, increasing); the pool asks :attr:`stream_limit` (the
    server's ``MAX_CONCURRENT_STREAMS``) before opening one more.
    """

    __slots__ = ("_next_id", "_ping_due", "_ping_outstanding", "_settings_seen")

    client_side = True

    def __init__(self, **options: object) -> None:
        super().__init__(H2Settings(**options))  # type: ignore[arg-type]
        self._next_id = 1
        self._settings_seen = False
        self._ping_due = _INF
        self._ping_outstanding = False

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    @property
    def stream_limit(self) -> int:
        if self._goaway_received:
            return len(self.streams) or 1  # no room: GOAWAY allows no new stream
        if not self._settings_seen:
            return _ASSUMED_STREAMS  # until the server says, assume what RFC 9113 asks
        limit = self.h2.remote_settings.max_concurrent_streams
        return limit if limit < 2**31 else 0

    def start(self, now: float) -> None:
        interval = self.settings.keepalive_interval
        if interval > 0:
            self._ping_due = now + interval

    def new_stream(self) -> int:
        if self._goaway_received or self.closing:
            raise RuntimeError("the server sent GOAWAY: no new streams on this connection")
        sid = self._next_id
        self._next_id += 2
        self.streams[sid] = _Stream()
        return sid

    def send_headers(self, stream_id: int, headers: HeaderMap, *, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        if isinstance(headers, RequestHeaders) and headers.method:
            method, target = headers.method, headers.target or "/"
        else:
            method = headers.get(":method") or ""
            target = headers.get(":path") or "/"
            if not method:
                raise ProtocolConversionError("an HTTP/2 request needs a method and a path")
        scheme = headers.scheme if isinstance(headers, H2RequestHeaders) and headers.scheme else "http"
        authority = headers.get("host") or headers.get(":authority") or ""
        pairs: Pairs = [
            (b":method", method.encode("latin-1")),
            (b":scheme", scheme.encode("latin-1")),
            (b":authority", authority.encode("latin-1")),
            (b":path", target.encode("latin-1")),
        ]
        pairs += regular_pairs(headers)
        is_grpc = grpc.is_grpc(headers.get("content-type"))
        timeout = headers.timeout if isinstance(headers, RequestHeaders) else None
        if is_grpc and timeout is not None and timeout < _INF:
            pairs = [p for p in pairs if p[0] != b"grpc-timeout"]
            pairs.append((b"grpc-timeout", grpc.format_timeout(timeout).encode()))
        try:
            self.h2.send_headers(stream_id, pairs, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            del self.streams[stream_id]
            raise ProtocolConversionError(f"HTTP/2 refused the request head: {exc}") from None
        stream.grpc = is_grpc
        if end_stream:
            self._end_local(stream_id, stream)

    # -- timers: PING keepalive ---------------------------------------------------------------

    def next_deadline(self) -> float:
        return self._ping_due

    def on_timer(self, now: float) -> list[StreamEvent]:
        if now < self._ping_due:
            return []
        if self._ping_outstanding:
            self.closing = True
            return [ConnectionTerminated("HTTP/2 PING unanswered: the server is gone")]
        self._ping_outstanding = True
        self.h2.ping(b"mosnpy\x00\x00")
        self._ping_due = now + self.settings.keepalive_interval
        return []

    # -- events ------------------------------------------------------------------------------

    def _on_response(self, event: h2.events.ResponseReceived, events: list[StreamEvent]) -> None:
        sid = event.stream_id
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self.stray += 1
            return
        raw = event.headers or []
        try:
            wire, regular = response_block(raw)
        except MalformedHeaders as exc:
            self._malformed(sid, exc, events)
            return
        headers = H2ResponseHeaders.received(regular, list(raw[1:]), status=wire)
        end = event.stream_ended is not None
        status = wire
        if end and wire == 200 and grpc.is_grpc(headers.get("content-type")):
            status = grpc.http_status(headers.get("grpc-status"))  # trailers-only
        stream.head_received = True
        events.append(ResponseReceived(sid, headers, status=status, end_stream=end))
        if end:
            self._response_ended(sid, stream)

    def _remote_ended(self, sid: int, stream: _Stream) -> None:
        self._response_ended(sid, stream)

    def _response_ended(self, sid: int, stream: _Stream) -> None:
        """The response is whole.  A request body still going up is cut (RFC 9113
        §8.1: the server answered early; NO_ERROR tells it we stop on purpose)."""
        stream.remote_open = False
        if stream.local_open:
            try:
                self.h2.reset_stream(sid, _Codes.NO_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            stream.local_open = False
        self._forget(sid)

    def _on_ping_ack(self, event: object, events: list[StreamEvent]) -> None:
        self._ping_outstanding = False

    def _on_client_settings(self, event: h2.events.RemoteSettingsChanged, events: list[StreamEvent]) -> None:
        self._settings_seen = True
        self._on_settings(event, events)

    _handlers: ClassVar[dict[type, Callable[[Any, Any, list[StreamEvent]], None]]] = {
        h2.events.ResponseReceived: _on_response,
        h2.events.DataReceived: _H2Base._on_data,
        h2.events.TrailersReceived: _H2Base._on_trailers,
        h2.events.StreamReset: _H2Base._on_stream_reset,
        h2.events.WindowUpdated: _H2Base._on_window,
        h2.events.ConnectionTerminated: _H2Base._on_goaway,
        h2.events.PingAckReceived: _on_ping_ack,
        h2.events.RemoteSettingsChanged: _on_client_settings,
    }
