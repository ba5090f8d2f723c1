"""The server side of an HTTP/1.1 connection: parses requests, encodes responses.

Theory of operation
===================

The codec is sans-I/O, like h11: the connection's reader task hands it whatever bytes
``recv`` returned and gets back a list of events; to answer, it asks for bytes and sends
them itself.  Nothing here knows about sockets, tasks or clocks.

Reading
-------
A request is read as ``RequestHead``, zero or more ``Body`` pieces (already
de-chunked), then ``EndOfMessage``.  Everything complete in the bytes at hand is
returned at once, so a client that pipelines ten requests into one packet gets ten
heads from one call.  Bodies are streamed: every piece of body that arrives becomes a
``Body`` event straight away, nothing waits for the whole body, and a 1 GiB upload
costs no more memory than the packet being handled.

Boundaries are found by our own scan with C-level ``bytes.find`` (``_parse.py``): the
blank line that ends the head, the Content-Length count, the chunk-size lines.  The
very same bytes are fed to llhttp (through ``httptools``), one parser per connection
with *no* Python callbacks, purely as a validator: llhttp rejects malformed request
lines, bad header names and values, bare LFs, obs-folds, Content-Length together with
Transfer-Encoding, duplicate Content-Lengths, a non-chunked final transfer coding and
bad chunk sizes, in C, before our scan reads those bytes.  Our scan then only has to
split lines that are known to be good.  Because we always know where the current
message ends, llhttp is never fed across a boundary we have not handled yet: when the
third of three pipelined requests is garbage, the first two are still delivered and
the error is raised by the next ``receive_data`` call.  After any error the codec is
dead and keeps raising the same ``Http1Error``; its ``status`` is the answer to send.

A plain head (no hop-by-hop field but a plain ``Connection``, no Expect or Upgrade)
is scanned once by one regular expression that finds only its framing fields and Host
(:mod:`.fields`); its other lines are split only if someone reads the map.  Any other
head's lines are split at once (decoded as latin-1 in one call, then
``str.split``/``partition``).  Either way, hop-by-hop fields (Connection, Keep-Alive,
Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade and whatever Connection
names) never reach the ``HeaderMap``; their meaning is in the head's ``keep_alive``,
``framing`` and ``content_length`` fields.  The map remembers the wire bytes of the
lines it kept (``HeaderMap.raw``): when no hop-by-hop line had to go, that is a single
slice of the received head.  Expect stays in the map but is left out of ``raw``,
because the proxy answers ``100 Continue`` itself and never forwards Expect.

The header block (request line included) is limited to ``max_header_size`` bytes,
enforced while it is still arriving: a client cannot make us buffer more than that
before it is refused with 431 (414 when even the request line does not fit).

Writing
-------
``encode_response_head`` writes ``HeaderMap.raw`` unchanged when nobody edited the map
(copy on write: the common proxy case costs one ``bytes.join``), and re-serialises,
checking every name and value (no CR/LF smuggling), when a filter did.  It writes the
framing it is given, with the corrections a proxy should not have to think about,
mirroring h11: the body of a response to HEAD, and of 1xx/204/304, is suppressed; an
HTTP/1.0 client, which cannot read chunked bodies, gets a close-delimited body instead;
and a bodiless (NONE) response whose status allows a body says ``content-length: 0``
so that the client does not read until close.  The framing actually used is
remembered until ``encode_end``, so ``encode_body``/``encode_end`` follow it.

Responses go out in request order, so the codec keeps one small record (HTTP/1.0?,
HEAD?, did the client ask to close?) per request read and not yet answered.  When the
response is sent with ``Connection: close`` -- asked for, or implied by the request or
by close-delimited framing -- ``must_close`` becomes true: the caller closes the
connection after writing the body.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from httptools import HttpRequestParser

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import _encode
from mosnpy.protocol.http1._parse import (
    CHUNK_SIZE,
    DONE,
    HEAD,
    LENGTH,
    NO_CALLBACKS,
    REQUEST_FIELDS,
    MessageReader,
    content_length,
    http_version,
    is_keep_alive,
    parse_fields,
)
from mosnpy.protocol.http1.errors import Http1ConnectionClosed, Http1Error
from mosnpy.protocol.http1.events import BodyFraming, EndOfMessage, Event, RequestHead, ResponseHead
from mosnpy.protocol.http1.fields import Http1Fields, scan_plain

__all__ = ["Http1ServerCodec"]

# Bits of the record kept per request awaiting its response.
_HTTP10: Final = 1
_HEAD_METHOD: Final = 2
_CLOSE: Final = 4

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CONNECTION_CLOSE: Final = b"connection: close\r\n"
_CONNECTION_KEEP_ALIVE: Final = b"connection: keep-alive\r\n"
_ERROR_FIELDS: Final = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
)

_NONE: Final = BodyFraming.NONE
_LENGTH: Final = BodyFraming.LENGTH
_CHUNKED: Final = BodyFraming.CHUNKED
_CLOSE_FRAMING: Final = BodyFraming.CLOSE


class Http1ServerCodec(MessageReader):
    """The server side of one HTTP/1.1 connection (see the module docstring).

    Args:
        max_header_size: limit on the request line plus header block, in bytes (MOSN's
            ``extend_config`` ``Http1.max_header_size``).  Trailers get the same limit.
    """

    __slots__ = ("_must_close", "_out", "_pending")

    def __init__(self, *, max_header_size: int = 8192) -> None:
        super().__init__(max_header_size, 400)
        self._parser = HttpRequestParser(NO_CALLBACKS)
        self._pending: deque[int] = deque()  # one record per request not yet answered
        self._out: BodyFraming | None = None  # framing of the response being written
        self._must_close = False

    @property
    def must_close(self) -> bool:
        """True once a response was written with ``Connection: close``: close after it."""
        return self._must_close

    # -- reading ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse everything complete in ``data`` plus what was buffered.

        Returns, for each request, ``RequestHead``, ``Body``* (de-chunked, streamed as it
        arrives), ``EndOfMessage``; no head is returned until it is complete.  ``b""``
        means EOF: between requests that returns ``[]``; in the middle of one it raises
        :class:`Http1ConnectionClosed` (400).  After a request without keep-alive, later
        bytes are ignored.

        Raises:
            Http1Error: malformed input, with the status to answer (400, 414, 417, 431,
                501, 505).  When earlier requests in the same data were complete, their
                events are returned first and the error is raised by the next call.
        """
        return MessageReader.receive_data(self, data)

    def _on_partial_head(self, partial: bytes | bytearray) -> None:
        """An HTTP/0.9 request line (``GET /``, no version) never gets a header block:
        refuse it as soon as its line is there instead of waiting for a blank line."""
        eol = partial.find(b"\r\n")
        if eol > 0 and partial.count(b" ", 0, eol) == 1:
            raise Http1Error(505, "HTTP/0.9 is not supported")

    def _on_head(self, data: bytes, start: int, end: int, upgrade: bool, events: list[Event]) -> int:
        block = data[start : end - 2]
        eol = block.find(b"\r\n")
        line0 = block[:eol].decode("latin-1")
        parts = line0.split(" ")
        if len(parts) != 3:
            if len(parts) == 2:
                raise Http1Error(505, "HTTP/0.9 is not supported")
            raise Http1Error(400, f"malformed request line {line0[:100]!r}")
        method, target, proto = parts
        version = http_version(proto)
        if version is None:
            raise Http1Error(505, f"HTTP version {proto!r} is not supported")
        plain = None if upgrade else scan_plain(block, eol + 2, True)
        headers: HeaderMap
        if plain is not None:
            raw, cl, te, conn, host = plain
            headers = Http1Fields(raw)
            expect = upgrade_value = None
        else:
            lines = block.decode("latin-1").split("\r\n")
            items, raw, cl, te, conn, expect, upgrade_value = parse_fields(
                block, lines, 1, eol + 2, REQUEST_FIELDS, 400
            )
            headers = HeaderMap.from_raw(items, raw)
            host = None
        keep_alive = is_keep_alive(version, conn)
        if upgrade:
            self._refuse_or_ignore_upgrade(method, upgrade_value, cl, te)

        # Framing (llhttp has already refused CL+TE, repeats and bad final codings).
        n: int | None = None
        if te is not None:
            if te.strip().lower() != "chunked":
                raise Http1Error(501, f"transfer coding {te!r} is not supported")
            framing = _CHUNKED
        elif cl is not None:
            framing = _LENGTH
            n = content_length(cl, 400)
        else:
            framing = _NONE

        expect_continue = False
        if expect is not None and version == "1.1":
            if expect.lower() != "100-continue":
                raise Http1Error(417, f"unsupported expectation {expect!r}")
            expect_continue = framing is not _NONE and n != 0

        events.append(
            RequestHead(
                method,
                target,
                headers,
                host=host,
                version=version,
                keep_alive=keep_alive,
                framing=framing,
                content_length=n,
                expect_continue=expect_continue,
            )
        )
        record = 0
        if version == "1.0":
            record = _HTTP10
        if method == "HEAD":
            record |= _HEAD_METHOD
        if not keep_alive:
            record |= _CLOSE
        self._pending.append(record)
        self._keep_alive = keep_alive
        if framing is _CHUNKED:
            return CHUNK_SIZE
        if n:
            self._remaining = n
            return LENGTH
        events.append(EndOfMessage())
        return HEAD if keep_alive else DONE

    def _refuse_or_ignore_upgrade(
        self, method: str, upgrade_value: str | None, cl: str | None, te: str | None
    ) -> None:
        """llhttp saw CONNECT or ``Connection: upgrade``: refuse it, or ignore an h2c offer.

        A server may ignore an Upgrade offer and answer in HTTP/1.1 (RFC 9110 7.8), which
        is what we do for a bodiless ``h2c`` offer (curl ``--http2`` on ``http://``).  The
        paused llhttp parser is replaced by a fresh one for the next request.
        """
        if method == "CONNECT":
            raise Http1Error(501, "CONNECT is not supported")
        tokens = {t.strip().lower() for t in (upgrade_value or "").split(",")}
        if tokens != {"h2c"} or te is not None or (cl is not None and cl.strip("0 \t") != ""):
            raise Http1Error(501, f"Upgrade to {upgrade_value!r} is not supported")
        self._parser = HttpRequestParser(NO_CALLBACKS)

    def _receive_eof(self) -> list[Event]:
        state = self._state
        self._state = DONE
        if state == DONE or (state == HEAD and not self._buf):
            return []
        exc = Http1ConnectionClosed(
            400,
            "connection closed in the middle of a request head"
            if state == HEAD
            else "request body incomplete",
        )
        self._error = exc
        raise exc

    def _head_too_large(self, partial: bytes | bytearray | None) -> Http1Error:
        if partial is not None and b"\r\n" not in partial:
            return Http1Error(414, f"request line longer than {self._limit} bytes")
        return Http1Error(431, f"request header block larger than {self._limit} bytes")

    def _llhttp_error(self, exc: Exception) -> Http1Error:
        text = str(exc)
        if text == "Invalid HTTP version":
            return Http1Error(505, f"unsupported HTTP version: {text}")
        return Http1Error(400, f"malformed request: {text}")

    # -- writing ----------------------------------------------------------------------

    def encode_response_head(
        self,
        head: ResponseHead,
        framing: BodyFraming,
        *,
        keep_alive: bool = True,
        headers: HeaderMap | None = None,
    ) -> bytes:
        """Status line, headers, framing header, Connection when needed, blank line.

        ``framing`` LENGTH writes ``content-length: head.content_length`` (once: a value
        already in the map is reused); CHUNKED writes ``transfer-encoding: chunked`` and
        drops any content-length; CLOSE drops any content-length; NONE writes
        ``content-length: 0``.  Unedited parsed maps are written from
        ``head.headers.raw``.  ``headers``, when given, is written instead of
        ``head.headers`` (a proxy's edited map; the head is left as it is, so a map
        that refers to its head makes no reference cycle).

        A response to HEAD, and a 1xx/204/304, keeps the map's content-length (it
        describes what a GET would get), gets the framing field asked for (none for
        NONE) and never a body.  An HTTP/1.0 client gets CLOSE instead of CHUNKED.
        ``Connection: close`` is added when ``keep_alive`` is false, when the request
        asked for it, or for CLOSE framing; ``Connection: keep-alive`` for a keep-alive
        HTTP/1.0 client.

        Raises:
            Http1Error: (500) a header, reason or status that cannot be written.
        """
        status = head.status
        record = 0
        if status >= 200 and self._pending:
            record = self._pending.popleft()
        if record & _HTTP10 and framing is _CHUNKED and not record & _HEAD_METHOD:
            framing = _CLOSE_FRAMING
        if framing is _CLOSE_FRAMING or record & _CLOSE:
            keep_alive = False
        # What parsing told of the unedited raw block: its Content-Length (or none).
        if headers is None:
            headers = head.headers
        raw = head.raw
        raw_length = head.content_length if raw is not None and headers.raw is raw else _encode.UNKNOWN
        if status < 200 or status == 204 or status == 304:
            fields = _encode.fields_as_is(headers, request=False)
            out = _NONE
        elif record & _HEAD_METHOD:
            # The head describes the GET response; no body follows whatever it says.
            if framing is _NONE:
                fields = _encode.fields_as_is(headers, request=False)
            else:
                fields = _encode.encode_fields(
                    headers, framing, head.content_length, request=False, raw_length=raw_length
                )
            out = _NONE
        elif framing is _NONE:
            # A response that may have a body but has none must say so, or the client
            # would read until the connection closes.
            fields = _encode.encode_fields(headers, _LENGTH, 0, request=False, raw_length=raw_length)
            out = _NONE
        else:
            fields = _encode.encode_fields(
                headers, framing, head.content_length, request=False, raw_length=raw_length
            )
            out = framing
        if status >= 200:
            self._out = out
        line = _encode.status_line(status, head.reason)
        if not keep_alive:
            if status >= 200:
                self._must_close = True
            return b"".join((line, fields, _CONNECTION_CLOSE, b"\r\n"))
        if record & _HTTP10:
            return b"".join((line, fields, _CONNECTION_KEEP_ALIVE, b"\r\n"))
        return b"".join((line, fields, b"\r\n"))

    def encode_body(self, data: bytes, framing: BodyFraming) -> bytes:
        """Body bytes as they go on the wire: one chunk for CHUNKED, else ``data`` itself.

        ``framing`` should be what was given to :meth:`encode_response_head`; the codec
        follows what it actually wrote there (nothing for HEAD/204/304 responses,
        unframed bytes where it fell back to CLOSE for an HTTP/1.0 client).
        """
        out = self._out
        if out is None:
            out = framing
        if out is _CHUNKED:
            return _encode.chunk(data)
        if out is _NONE:
            return b""
        return data

    def encode_end(self, framing: BodyFraming, trailers: HeaderMap | None = None) -> bytes:
        """End the response body: ``0\\r\\n`` + trailers + ``\\r\\n`` for CHUNKED, else ``b""``.

        Trailers cannot be sent with any other framing and are then dropped.
        """
        out = self._out
        self._out = None
        if out is None:
            out = framing
        if out is _CHUNKED:
            return _encode.last_chunk(trailers)
        return b""

    def continue_response(self) -> bytes:
        """The interim ``100 Continue`` answering ``expect_continue``."""
        return _CONTINUE

    def error_response(self, status: int, message: str) -> bytes:
        """A whole response for a request that gets no upstream answer (or for bad input).

        text/plain UTF-8 body, Content-Length, ``Connection: close`` (``must_close``
        becomes true); no body if the request being answered was HEAD.
        """
        record = self._pending.popleft() if self._pending else 0
        body = message.encode("utf-8")
        self._out = None
        self._must_close = True
        head = _encode.status_line(status, "") + _ERROR_FIELDS % len(body)
        if record & _HEAD_METHOD or status == 204 or status == 304:
            return head
        return head + body
