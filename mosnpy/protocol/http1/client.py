"""The client side of an HTTP/1.1 connection: encodes requests, parses responses.

It is the mirror of :mod:`mosnpy.protocol.http1.server` and reads with the same
machinery (our own boundary scan, llhttp fed the same bytes as a validator; see the
theory of operation there).  What differs is what only a client knows: which requests
are outstanding and whether each was HEAD (whose response has no body whatever its
headers say), that interim 1xx responses are consumed here, and that a response with
neither Content-Length nor chunked coding runs until the connection closes.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from httptools import HttpResponseParser

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import _encode
from mosnpy.protocol.http1._parse import (
    CHUNK_SIZE,
    CLOSE,
    DONE,
    HEAD,
    LENGTH,
    NO_CALLBACKS,
    RESPONSE_FIELDS,
    MessageReader,
    content_length,
    http_version,
    is_keep_alive,
    parse_fields,
)
from mosnpy.protocol.http1.errors import Http1ConnectionClosed, Http1Error
from mosnpy.protocol.http1.events import BodyFraming, EndOfMessage, Event, RequestHead, ResponseHead
from mosnpy.protocol.http1.fields import Http1Fields, scan_plain

__all__ = ["Http1ClientCodec"]

_NONE: Final = BodyFraming.NONE
_LENGTH: Final = BodyFraming.LENGTH
_CHUNKED: Final = BodyFraming.CHUNKED
_CLOSE: Final = BodyFraming.CLOSE


def _status_line(line: bytes) -> tuple[int, str, str]:
    """(status, version, reason) of a status line (llhttp has accepted it).

    The common ``HTTP/1.x ddd reason`` is read byte by byte, with no decoding until
    the reason; anything else goes the general way, which says what is wrong.
    """
    n = len(line)
    if (
        n >= 12
        and line.startswith(b"HTTP/1.")
        and (line[7] == 49 or line[7] == 48)  # 1 or 0
        and line[8] == 32
        and 49 <= line[9] <= 57  # no leading zero
        and 48 <= line[10] <= 57
        and 48 <= line[11] <= 57
        and (n == 12 or line[12] == 32)
    ):
        status = (line[9] - 48) * 100 + (line[10] - 48) * 10 + line[11] - 48
        return status, "1.1" if line[7] == 49 else "1.0", line[13:].decode("latin-1")
    proto, _, rest = line.decode("latin-1").partition(" ")
    code, _, reason = rest.partition(" ")
    version = http_version(proto)
    if version is None:
        raise Http1Error(502, f"upstream answered with unsupported version {proto!r}")
    if not (len(code) == 3 and code.isascii() and code.isdigit()) or code[0] == "0":
        raise Http1Error(502, f"invalid status code {code!r}")
    return int(code), version, reason


class Http1ClientCodec(MessageReader):
    """The client side of one HTTP/1.1 connection, e.g. a pooled upstream connection.

    Args:
        max_header_size: limit on the status line plus header block of a response (and
            on its trailers), in bytes; a bigger one is refused with status 502.
    """

    __slots__ = ("_pending",)

    _too_large_status = 502

    def __init__(self, *, max_header_size: int = 65536) -> None:
        super().__init__(max_header_size, 502)
        self._parser = HttpResponseParser(NO_CALLBACKS)
        self._pending: deque[bool] = deque()  # per outstanding request: was it HEAD?

    def reset(self) -> None:
        """Forget all state, as if new (e.g. before reusing it for a fresh connection)."""
        self._parser = HttpResponseParser(NO_CALLBACKS)
        self._pending.clear()
        self._state = HEAD
        self._buf.clear()
        self._remaining = 0
        self._keep_alive = True
        self._error = None

    @property
    def reusable(self) -> bool:
        """True when every request was answered, nothing is buffered and the last
        response allowed keep-alive: the connection may carry another request."""
        return not self._pending and self._state == HEAD and not self._buf and self._error is None

    # -- writing ----------------------------------------------------------------------

    def encode_request_head(
        self, head: RequestHead, framing: BodyFraming, *, headers: HeaderMap | None = None
    ) -> bytes:
        """Request line (always ``HTTP/1.1``), headers, framing header, blank line.

        Framing as for :meth:`Http1ServerCodec.encode_response_head` (CLOSE is not
        possible for a request).  Expect is never written: the proxy answers
        ``100-continue`` to its client itself.  Host is whatever the map holds.  The
        method is remembered so that a response to HEAD is read without a body.
        ``headers`` as for :meth:`Http1ServerCodec.encode_response_head`.

        Raises:
            Http1Error: (500) a method, target or header that cannot be written.
        """
        if framing is _CLOSE:
            raise Http1Error(500, "a request body cannot be delimited by closing the connection")
        line = _encode.request_line(head.method, head.target)
        if headers is None:
            headers = head.headers
        raw = head.raw
        raw_length = head.content_length if raw is not None and headers.raw is raw else _encode.UNKNOWN
        fields = _encode.encode_fields(
            headers, framing, head.content_length, request=True, raw_length=raw_length
        )
        self._pending.append(head.method == "HEAD")
        return b"".join((line, fields, b"\r\n"))

    def encode_body(self, data: bytes, framing: BodyFraming) -> bytes:
        """Body bytes as they go on the wire: one chunk for CHUNKED, else ``data`` itself."""
        if framing is _CHUNKED:
            return _encode.chunk(data)
        return data

    def encode_end(self, framing: BodyFraming, trailers: HeaderMap | None = None) -> bytes:
        """End the request body: ``0\\r\\n`` + trailers + ``\\r\\n`` for CHUNKED, else ``b""``."""
        if framing is _CHUNKED:
            return _encode.last_chunk(trailers)
        return b""

    # -- reading ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse response bytes: ``ResponseHead``, ``Body``*, ``EndOfMessage`` per response.

        Interim 1xx responses are consumed, not returned.  No body is read for a
        response to HEAD, nor for 1xx, 204 and 304.  A response with neither
        Content-Length nor chunked coding has CLOSE framing: its body runs until
        ``b""`` (EOF), which then yields its ``EndOfMessage``.

        Raises:
            Http1ConnectionClosed: EOF inside a response, or before the response to a
                sent request (``before_response`` true then).
            Http1Error: (502) a malformed response, a 101 Switching Protocols, or a
                response when no request is outstanding.
        """
        if (
            data
            and not self._pending
            and self._state == HEAD
            and not self._buf
            and self._error is None
            and data.strip(b"\r\n")
        ):
            self._error = Http1Error(502, "response received with no request outstanding")
            raise self._error
        return MessageReader.receive_data(self, data)

    def _on_head(self, data: bytes, start: int, end: int, upgrade: bool, events: list[Event]) -> int:
        if not self._pending:
            raise Http1Error(502, "response received with no request outstanding")
        block = data[start : end - 2]
        eol = block.find(b"\r\n")
        status, version, reason = _status_line(block[:eol])
        if status < 200:
            if status == 101 or upgrade:
                raise Http1Error(502, "protocol upgrade (101) is not supported")
            return HEAD  # interim response: consumed; llhttp reads it as a whole message too
        plain = scan_plain(block, eol + 2, False)
        headers: HeaderMap
        if plain is not None:
            raw, cl, te, conn, _ = plain
            headers = Http1Fields(raw)
        else:
            lines = block.decode("latin-1").split("\r\n")
            items, raw, cl, te, conn, _, _ = parse_fields(block, lines, 1, eol + 2, RESPONSE_FIELDS, 502)
            headers = HeaderMap.from_raw(items, raw)
        keep_alive = is_keep_alive(version, conn)
        head_request = self._pending.popleft()
        n = None if cl is None else content_length(cl, 502)
        if head_request or status == 204 or status == 304:
            framing = _NONE
            if head_request:
                # llhttp cannot be told that this response has no body; start a fresh one.
                self._parser = HttpResponseParser(NO_CALLBACKS)
        elif te is not None:
            if te.strip().lower() != "chunked":
                raise Http1Error(502, f"upstream used unsupported transfer coding {te!r}")
            framing = _CHUNKED
        elif n is not None:
            framing = _LENGTH
        else:
            framing = _CLOSE
            keep_alive = False
        events.append(
            ResponseHead(
                status,
                headers,
                reason=reason,
                version=version,
                keep_alive=keep_alive,
                framing=framing,
                content_length=n,
            )
        )
        self._keep_alive = keep_alive
        if framing is _LENGTH and n:
            self._remaining = n
            return LENGTH
        if framing is _CHUNKED:
            return CHUNK_SIZE
        if framing is _CLOSE:
            return CLOSE
        events.append(EndOfMessage())
        return HEAD if keep_alive else DONE

    def _receive_eof(self) -> list[Event]:
        state = self._state
        self._state = DONE
        if state == CLOSE:
            return [EndOfMessage()]
        if state == DONE or (state == HEAD and not self._buf and not self._pending):
            return []
        if state == HEAD:
            if self._buf:
                exc = Http1ConnectionClosed(
                    502, "upstream closed the connection in the middle of a response head"
                )
            else:
                exc = Http1ConnectionClosed(
                    502, "upstream closed the connection without responding", before_response=True
                )
        else:
            exc = Http1ConnectionClosed(
                502, "upstream closed the connection before the response body was complete"
            )
        self._error = exc
        raise exc

    def _llhttp_error(self, exc: Exception) -> Http1Error:
        return Http1Error(502, f"malformed response: {exc}")
