"""HTTP/1.1 stream connections: the codecs as streams, one exchange at a time.

Theory of operation
-------------------
HTTP/1.1 carries one exchange at a time per connection, so a stream here is one
request/response.  Everything HTTP/1-specific that the proxy used to decide is decided
here, once: keep-alive, ``Connection: close``, HTTP/1.0 and HEAD framing, ``100
Continue``, pipelining order, the error page for a malformed request, and when a
connection must be closed (with a lingering close when the client may still be
sending).

Server side (:class:`Http1ServerStreamConnection`): ``dispatch`` feeds the server codec
and turns its events into neutral ones: a head becomes
:class:`~mosnpy.protocol.api.RequestReceived` (with ``end_stream`` when the request has
no body, so a GET walks the proxy without waiting), body pieces
:class:`~mosnpy.protocol.api.DataReceived`, the end an empty final piece or
:class:`~mosnpy.protocol.api.TrailersReceived`.  Pipelined requests are parsed as they
arrive but held back (``read_paused``) until the current response has ended; then
:meth:`~Http1ServerStreamConnection.resume` hands up the next one, so responses leave
in request order.  The response is written from the upstream response's own head when
it is an HTTP/1 one (raw header bytes forwarded unless edited: copy on write), with
the framing corrected for the client: HEAD and 1xx/204/304 carry no body, an HTTP/1.0
client gets a close-delimited body instead of chunks, and a close-delimited upstream
body is re-chunked for an HTTP/1.1 client.

Client side (:class:`Http1ClientStreamConnection`): one stream at a time per connection
(pool mode PING_PONG).  The request line comes from the
:class:`~mosnpy.protocol.api.RequestHeaders` (so a route's rewrite is what is sent); the
response is handed up as :class:`Http1ResponseHeaders`, which keep the parsed head.  A
connection that the server closes, or answers with ``Connection: close``, or that
broke mid-exchange is ``closing``: the pool drops it.  A reused connection that dies
before any byte of the answer resets the stream as ``unprocessed``: the request can be
resent for free if it is safe to repeat.
"""

from __future__ import annotations

from collections import deque
from types import EllipsisType
from typing import Final

from mosnpy.protocol.api import (
    ConnectionTerminated,
    DataReceived,
    Outbox,
    RequestHeaders,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1.client import Http1ClientCodec
from mosnpy.protocol.http1.errors import Http1ConnectionClosed, Http1Error
from mosnpy.protocol.http1.events import Body, BodyFraming, EndOfMessage, Event, RequestHead, ResponseHead
from mosnpy.protocol.http1.fields import Http1Fields, peek_lowered, split_raw
from mosnpy.protocol.http1.server import Http1ServerCodec

__all__ = [
    "Http1ClientStreamConnection",
    "Http1RequestHeaders",
    "Http1ResponseHeaders",
    "Http1ServerStreamConnection",
]

_NONE: Final = BodyFraming.NONE
_LENGTH: Final = BodyFraming.LENGTH
_CHUNKED: Final = BodyFraming.CHUNKED
_CLOSE: Final = BodyFraming.CLOSE
#: Statuses that carry no body.
_NO_BODY_STATUS: Final = frozenset({204, 304})


class Http1RequestHeaders(RequestHeaders):
    """A parsed request's headers, carrying its head (version, framing, length); its
    fields are split from the raw bytes only when read (:mod:`.fields`)."""

    __slots__ = ("_lowered", "head")

    def __init__(self, head: RequestHead) -> None:
        headers = head.headers
        self._items = headers._items  # still unsplit if the head's map is: split when read
        self.raw = headers.raw
        self.wire = None
        self.method = head.method
        self.target = head.target
        self.timeout = None
        self.head = head
        #: ``raw`` lower-cased, once a peek needed it (the proxy probes a request for
        #: several absent fields: ``x-mosn-*-timeout``, route header matchers)
        self._lowered: bytes | None = None

    def _load(self) -> list[tuple[str, str]]:
        return split_raw(self.raw)

    def _peek(self, name: str) -> str | EllipsisType | None:
        # (``raw`` cannot change while the map is unsplit: an edit splits it first.)
        lowered = self._lowered
        if lowered is None and self.raw is not None:
            lowered = self._lowered = self.raw.lower()
        return peek_lowered(lowered, name)


class Http1ResponseHeaders(Http1Fields):
    """A parsed response's headers, carrying its head (status, reason, framing); its
    fields are split from the raw bytes only when read (:mod:`.fields`)."""

    __slots__ = ("head",)

    def __init__(self, head: ResponseHead) -> None:
        headers = head.headers
        self._items = headers._items  # still unsplit if the head's map is: split when read
        self.raw = headers.raw
        self.wire = None
        self.head = head


def _request_host(head: RequestHead) -> str:
    host = head.host
    if host is None:
        host = head.headers.get("host")
    if host is not None:
        return host
    target = head.target
    if "://" in target:  # absolute-form
        rest = target.split("://", 1)[1]
        return rest.split("/", 1)[0]
    return ""


def _framing_of(headers: HeaderMap, end_stream: bool) -> tuple[BodyFraming, int | None]:
    """How to frame a message whose headers are not HTTP/1's own (protocol conversion)."""
    if end_stream:
        return _NONE, None
    cl = headers.get("content-length")
    if cl is not None and cl.isascii() and cl.isdigit():
        return _LENGTH, int(cl)
    return _CHUNKED, None


class Http1ServerStreamConnection(Outbox):
    """The downstream side of one HTTP/1.1 connection."""

    __slots__ = (
        "_body_framing",
        "_continue_sent",
        "_error",
        "_held",
        "_next_id",
        "_request",
        "_request_done",
        "_response_started",
        "closing",
        "codec",
        "current",
        "draining",
        "linger",
    )

    def __init__(self, *, max_header_size: int = 8192) -> None:
        self.codec = Http1ServerCodec(max_header_size=max_header_size)
        super().__init__()
        self._next_id = 0
        #: the stream being served (0: none)
        self.current = 0
        self._request: RequestHead | None = None
        self._request_done = True
        self._response_started = False
        self._body_framing = _NONE
        self._continue_sent = False
        #: parsed events of requests after the current one
        self._held: deque[Event] = deque()
        #: a malformed request waiting for the ones before it to be answered
        self._error: Http1Error | None = None
        self.closing = False
        self.linger = False
        self.draining = False

    @property
    def read_paused(self) -> bool:
        return bool(self._held) or self._error is not None

    # -- reading -----------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        if self.closing or not data:
            return []
        try:
            events = self.codec.receive_data(data)
        except Http1Error as exc:
            error: Http1Error | None = exc
        else:
            # The codec hands up the complete requests before bad bytes and keeps
            # the error for later: it is ours to answer now.
            error = self.codec.error
            if (
                len(events) == 2
                and error is None
                and not self.current
                and not self._held
                and events[1].__class__ is EndOfMessage
                and events[0].__class__ is RequestHead
                and events[0].framing is _NONE
            ):
                # The common case, straight through: one whole bodiless request.
                out: list[StreamEvent] = []
                self._start(events[0], out)
                return out
            self._held.extend(events)
        out = self._release()
        if error is not None:
            if self.current and not self._request_done:
                # The request being served is malformed (its body): answer it now.
                sid = self.current
                self._refuse(error)
                out.append(StreamReset(sid, ResetReason.REMOTE_RESET, f"bad request: {error.reason}"))
            else:
                self._error = error  # answered once the requests before it are
                out.extend(self._release())
        return out

    def resume(self) -> list[StreamEvent]:
        if self.current or self.closing:
            return []
        return self._release()

    def _release(self) -> list[StreamEvent]:
        """Hand up the current request's events, and the next request's if none is
        being served; hold everything after that."""
        out: list[StreamEvent] = []
        held = self._held
        while held:
            event = held[0]
            if not self.current:
                if not isinstance(event, RequestHead):
                    held.popleft()  # the end of a bodiless request already handed up
                    continue
                held.popleft()
                self._start(event, out)
            elif not self._request_done:
                held.popleft()
                sid = self.current
                if isinstance(event, Body):
                    end = bool(held) and _plain_end(held[0])
                    if end:
                        held.popleft()
                        self._request_done = True
                    out.append(DataReceived(sid, event.data, end_stream=end))
                elif isinstance(event, EndOfMessage):
                    self._request_done = True
                    if event.trailers:
                        out.append(TrailersReceived(sid, event.trailers))
                    else:
                        out.append(DataReceived(sid, b"", end_stream=True))
            else:
                break  # the next request waits for this response
        if not self.current and not held and self._error is not None:
            exc, self._error = self._error, None
            self._refuse(exc)
        return out

    def _start(self, head: RequestHead, out: list[StreamEvent]) -> None:
        self._next_id += 1
        sid = self.current = self._next_id
        self._request = head
        self._response_started = False
        self._continue_sent = False
        held = self._held
        end = head.framing is _NONE
        if not end and held and _plain_end(held[0]) and head.content_length == 0:
            end = True
        if end and held and isinstance(held[0], EndOfMessage):
            held.popleft()
        self._request_done = end
        target = head.target
        q = target.find("?")
        out.append(
            RequestReceived(
                sid,
                Http1RequestHeaders(head),
                end_stream=end,
                method=head.method,
                host=head.host if head.host is not None else _request_host(head),
                path=target if q < 0 else target[:q],
            )
        )

    def _refuse(self, exc: Http1Error) -> None:
        """Answer a malformed request with its status and close (lingering)."""
        if not (self.current and self._response_started):
            self._out += self.codec.error_response(exc.status, exc.reason)
        self._held.clear()
        self.current = 0
        self.closing = True
        self.linger = True

    def expects_response(self, stream_id: int) -> bool:
        return stream_id == self.current and not self._response_started

    def request_body_wanted(self, stream_id: int) -> None:
        request = self._request
        if (
            stream_id == self.current
            and request is not None
            and request.expect_continue
            and not self._request_done
            and not self._continue_sent
        ):
            self._continue_sent = True
            self._out += self.codec.continue_response()

    # -- writing -----------------------------------------------------------------------

    def _keep_alive(self) -> bool:
        request = self._request
        return (
            self._request_done
            and not self.draining
            and not self.closing
            and (request is None or request.keep_alive)
        )

    def send_headers(self, stream_id: int, headers: HeaderMap, *, status: int, end_stream: bool) -> None:
        if stream_id != self.current or self._response_started:
            return
        request = self._request
        assert request is not None
        if isinstance(headers, Http1ResponseHeaders):
            # The map goes out with whatever filters and routes edited in it; its head
            # is not pointed back at it (that would be a reference cycle per response,
            # left to the cyclic GC).
            head = headers.head
            if status != head.status:  # a sender filter changed it
                head.status, head.reason = status, ""
            upstream = head.framing
        else:
            upstream, length = _framing_of(headers, end_stream)
            head = ResponseHead(status, headers, framing=upstream, content_length=length)
        framing = self._framing(request, head.status, upstream)
        self._response_started = True
        self._body_framing = framing
        self._out += self.codec.encode_response_head(
            head, framing, keep_alive=self._keep_alive(), headers=headers
        )
        if end_stream:
            self._end_response(None)

    def _framing(self, request: RequestHead, status: int, upstream: BodyFraming) -> BodyFraming:
        """The response framing for this client (the codec corrects HEAD and 1.0 too)."""
        if request.method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            return upstream
        if upstream is _CLOSE or (upstream is _CHUNKED and request.version == "1.0"):
            return _CLOSE if request.version == "1.0" else _CHUNKED
        return upstream

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if stream_id != self.current or not self._response_started:
            return
        if data:
            self._out += self.codec.encode_body(data, self._body_framing)
        if end_stream:
            self._end_response(None)

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        if stream_id == self.current and self._response_started:
            self._end_response(trailers)

    def _end_response(self, trailers: HeaderMap | None) -> None:
        self._out += self.codec.encode_end(self._body_framing, trailers)
        if self._body_framing is _CLOSE or self.codec.must_close or not self._keep_alive():
            self.closing = True
            self.linger = not self._request_done
        self.current = 0

    def send_local_reply(self, stream_id: int, status: int, body: bytes, headers: HeaderMap) -> None:
        """A whole response made by the proxy, head and body in one write."""
        if stream_id != self.current or self._response_started:
            return
        request = self._request
        assert request is not None
        if status < 200:
            # An interim status cannot end a request: answer with the proxy's own error.
            status, body = 500, f"invalid local reply status {status}\n".encode()
        self._response_started = True
        keep_alive = self._keep_alive()
        if status in _NO_BODY_STATUS:
            head = ResponseHead(status, headers)
            data = self.codec.encode_response_head(head, _NONE, keep_alive=keep_alive)
        else:
            if body and "content-type" not in headers:
                headers["content-type"] = "text/plain; charset=utf-8"
            head = ResponseHead(status, headers, content_length=len(body))
            data = self.codec.encode_response_head(head, _LENGTH, keep_alive=keep_alive)
            if request.method != "HEAD":
                data += body
        self._out += data
        self._body_framing = _NONE
        if self.codec.must_close or not keep_alive:
            self.closing = True
            self.linger = not self._request_done
        self.current = 0

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """HTTP/1 can only abort an exchange by closing the connection."""
        if stream_id == self.current:
            self.current = 0
            self.closing = True
            self.linger = not self._request_done and not self._response_started

    def shutdown(self) -> None:
        self.draining = True
        if not self.current:
            self.closing = True

    @property
    def receiving_head(self) -> bool:
        return self.codec.receiving_head and not self.closing

    def head_timeout(self) -> None:
        """408 for the head that never completed, then close."""
        if self.current and self._response_started:
            self.closing = True  # a response is under way: nothing more can be said
            return
        self._out += self.codec.error_response(408, "request head not received in time")
        self._held.clear()
        self.current = 0
        self.closing = True

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sid, self.current = self.current, 0
        self._held.clear()
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message)] if sid else []


def _plain_end(event: Event) -> bool:
    """An end of message without trailers (folded into the piece before it)."""
    return isinstance(event, EndOfMessage) and not event.trailers


class Http1ClientStreamConnection(Outbox):
    """The upstream side of one HTTP/1.1 connection (one stream at a time)."""

    __slots__ = (
        "_framing",
        "_next_id",
        "closing",
        "codec",
        "current",
        "exchanges",
        "received_any",
    )

    #: requests go one at a time; nothing is held back
    read_paused = False

    def __init__(self, *, max_header_size: int = 65536) -> None:
        self.codec = Http1ClientCodec(max_header_size=max_header_size)
        super().__init__()
        self._next_id = 0
        self.current = 0
        self._framing = _NONE
        #: exchanges started on this connection (more than one: it was reused)
        self.exchanges = 0
        #: some byte of the current answer arrived
        self.received_any = False
        self.closing = False

    @property
    def active_streams(self) -> int:
        return 1 if self.current else 0

    #: one exchange at a time
    stream_limit = 1

    def start(self, now: float) -> None:
        """No timers: idle connections are checked by the pool."""

    def new_stream(self) -> int:
        if self.current:
            raise RuntimeError("HTTP/1 carries one stream at a time")
        self._next_id += 1
        self.current = self._next_id
        self.exchanges += 1
        self.received_any = False
        return self.current

    # -- writing -----------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: HeaderMap, *, end_stream: bool) -> None:
        if isinstance(headers, Http1RequestHeaders):
            head = headers.head  # (not pointed back at the map: see send_headers above)
            head.target = headers.target  # what a route's rewrite left there
            framing = head.framing
        else:
            method = headers.method if isinstance(headers, RequestHeaders) else "GET"
            target = headers.target if isinstance(headers, RequestHeaders) else "/"
            framing, length = _framing_of(headers, end_stream)
            head = RequestHead(method, target, headers, framing=framing, content_length=length)
        self._framing = framing
        self._out += self.codec.encode_request_head(head, framing, headers=headers)
        if end_stream and framing is _CHUNKED:
            self._out += self.codec.encode_end(framing, None)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if data:
            self._out += self.codec.encode_body(data, self._framing)
        if end_stream:
            self._out += self.codec.encode_end(self._framing, None)

    def send_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        self._out += self.codec.encode_end(self._framing, trailers)

    def reset(self, stream_id: int, reason: ResetReason) -> None:
        """Abandoning an exchange midway leaves the connection unusable."""
        if stream_id == self.current:
            self.current = 0
            self.closing = True

    # -- reading -----------------------------------------------------------------------

    def dispatch(self, data: bytes) -> list[StreamEvent]:
        sid = self.current
        if data and sid:
            self.received_any = True
        try:
            events = self.codec.receive_data(data)
        except Http1Error as exc:
            self.closing = True
            if not sid:
                return [ConnectionTerminated(f"upstream: {exc.reason}")]
            self.current = 0
            unprocessed = (
                isinstance(exc, Http1ConnectionClosed)
                and exc.before_response
                and self.exchanges > 1
                and not self.received_any
            )
            return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, exc.reason, unprocessed=unprocessed)]
        if not events:
            if not data and not sid:
                self.closing = True  # the server closed an idle connection
            return []
        out: list[StreamEvent] = []
        n = len(events)
        i = 0
        while i < n:
            event = events[i]
            i += 1
            if isinstance(event, ResponseHead):
                end = i < n and events[i].__class__ is EndOfMessage and not events[i].trailers  # type: ignore[union-attr]
                if end:
                    i += 1
                out.append(
                    ResponseReceived(sid, Http1ResponseHeaders(event), status=event.status, end_stream=end)
                )
                if end:
                    self._finish(i == n)
            elif isinstance(event, Body):
                end = i < n and events[i].__class__ is EndOfMessage and not events[i].trailers  # type: ignore[union-attr]
                if end:
                    i += 1
                out.append(DataReceived(sid, event.data, end_stream=end))
                if end:
                    self._finish(i == n)
            elif isinstance(event, EndOfMessage):
                if event.trailers:
                    out.append(TrailersReceived(sid, event.trailers))
                else:
                    out.append(DataReceived(sid, b"", end_stream=True))
                self._finish(i == n)
        return out

    def _finish(self, last: bool) -> None:
        """The response ended: reuse the connection only if it can carry another."""
        self.current = 0
        if not last or not self.codec.reusable:
            self.closing = True  # bytes after the response, or the server said close

    def connection_lost(self, message: str) -> list[StreamEvent]:
        sid, self.current = self.current, 0
        self.closing = True
        if not sid:
            return []
        unprocessed = self.exchanges > 1 and not self.received_any
        return [StreamReset(sid, ResetReason.CONNECTION_TERMINATION, message, unprocessed=unprocessed)]
