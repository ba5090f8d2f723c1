"""The reading half shared by both HTTP/1.1 codecs: framing state machine and field scan.

:class:`MessageReader` cuts a byte stream into messages.  It finds every boundary itself
with C-level ``bytes.find`` calls (the blank line ending a head, the CRLF ending a chunk
size line, a byte count for bodies) and feeds llhttp (through ``httptools``) exactly
the same bytes, in the same order, purely as a validator: llhttp refuses bad request
lines, bad header names and values, CL+TE, duplicate Content-Length, bad chunk sizes
and so on, long before our own scan looks at those bytes.  Because we always know
where a message ends, llhttp is never fed past a boundary we have not yet handled, so
an error in a later pipelined message cannot hide the events of an earlier one.

The server and client codecs subclass the reader and supply only ``_on_head`` (turn a
complete head into an event and choose the body framing) and ``_receive_eof``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from httptools import HttpParserError, HttpParserUpgrade

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1.errors import Http1Error
from mosnpy.protocol.http1.events import Body, EndOfMessage, Event

__all__ = [
    "CHUNK_DATA",
    "CHUNK_END",
    "CHUNK_SIZE",
    "CLOSE",
    "DONE",
    "HEAD",
    "LENGTH",
    "TRAILERS",
    "MessageReader",
    "http_version",
    "is_keep_alive",
    "NO_CALLBACKS",
    "parse_fields",
    "REQUEST_FIELDS",
    "RESPONSE_FIELDS",
    "TRAILER_FIELDS",
]

# Reader states (plain ints: compared on every loop turn of the hot path).
HEAD: Final = 0  # waiting for / inside a head
LENGTH: Final = 1  # inside a Content-Length body; ``_remaining`` bytes to go
CHUNK_SIZE: Final = 2  # waiting for a chunk-size line
CHUNK_DATA: Final = 3  # inside a chunk; ``_remaining`` bytes to go
CHUNK_END: Final = 4  # waiting for the CRLF after a chunk's data
TRAILERS: Final = 5  # after the last chunk: trailer lines or the final CRLF
CLOSE: Final = 6  # (responses only) body runs until EOF
DONE: Final = 7  # a non-keep-alive message ended, or EOF: ignore further bytes

#: Longest chunk-size line (size plus extensions) we buffer before calling it abuse.
MAX_CHUNK_LINE: Final = 4096

#: httptools calls back only the methods its protocol object has; this one has none,
#: so llhttp runs as a pure validator with no Python callbacks at all.
NO_CALLBACKS: Final = object()

_CRLF_RUN: Final = re.compile(rb"[\r\n]*")

#: Part of a buffer up to this size goes to llhttp as a copy: below it a slice costs
#: less than building a memoryview and slicing that.
_COPY_BELOW: Final = 4096


# What the field scan does with a header name (names absent from the table are kept).
# Plain module ints rather than an Enum: they are compared once per special header.
K_CONNECTION: Final = 1  # hop-by-hop; its tokens decide keep-alive and name more hop-by-hop fields
K_HOP: Final = 2  # hop-by-hop: dropped from map and raw
K_TRANSFER_ENCODING: Final = 3  # hop-by-hop; decides framing
K_CONTENT_LENGTH: Final = 4  # kept; decides framing
K_EXPECT: Final = 5  # kept in the map, left out of ``raw`` (the proxy answers 100-continue itself)
K_HOST: Final = 6  # kept; must not repeat
K_UPGRADE: Final = 7  # hop-by-hop; its tokens decide whether an upgrade can be ignored
K_TE: Final = 8  # hop-by-hop, left out of ``raw``; kept in the map as ``te: trailers`` when it
#: says so, the one TE an HTTP/2 upstream may receive (gRPC needs it)

_HOP_FIELDS: Final = {
    "connection": K_CONNECTION,
    "keep-alive": K_HOP,
    "proxy-connection": K_HOP,
    "te": K_HOP,
    "trailer": K_HOP,
    "upgrade": K_UPGRADE,
    "transfer-encoding": K_TRANSFER_ENCODING,
    "content-length": K_CONTENT_LENGTH,
}
REQUEST_FIELDS: Final[dict[str, int]] = {**_HOP_FIELDS, "expect": K_EXPECT, "host": K_HOST, "te": K_TE}
RESPONSE_FIELDS: Final[dict[str, int]] = dict(_HOP_FIELDS)
#: Framing and routing fields make no sense in trailers; drop them with the hop-by-hop ones.
TRAILER_FIELDS: Final[dict[str, int]] = {
    **{name: K_HOP for name in _HOP_FIELDS},
    "host": K_HOP,
    "expect": K_HOP,
}

#: Connection values that name no other header (by far the most common ones).
_PLAIN_CONNECTION: Final = frozenset({"keep-alive", "close"})
#: Connection tokens that never remove a header of the same name (smuggling guard).
_PROTECTED: Final = frozenset({"close", "keep-alive", "content-length", "host", "te", ""})

Fields = tuple[
    list[tuple[str, str]],  # kept (name, value) pairs, lower-case names
    bytes,  # raw: wire bytes of the kept lines (minus Expect), each with CRLF
    str | None,  # Content-Length value
    str | None,  # Transfer-Encoding values, comma-joined
    str | None,  # Connection values, comma-joined
    str | None,  # Expect value
    str | None,  # Upgrade values, comma-joined
]


def parse_fields(
    block: bytes, lines: list[str], first: int, raw_start: int, kinds: dict[str, int], bad: int
) -> Fields:
    """Scan header lines ``lines[first:-1]`` (llhttp already validated them).

    ``block`` is the bytes the lines were split from (latin-1, so str and byte offsets
    agree) and ``raw_start`` the offset of the first header line in it.  Returns the
    kept fields, their raw bytes and the values of the fields that steer framing and
    keep-alive.  Raises ``Http1Error(bad)`` on a repeated Content-Length or Host.
    """
    items: list[tuple[str, str]] = []
    append = items.append
    get = kinds.get
    kept: list[str] | None = None  # becomes a list once a line is cut from raw
    cl: str | None = None
    te: str | None = None
    conn: str | None = None
    expect: str | None = None
    upgrade: str | None = None
    hosts = 0
    for line in lines[first:-1]:
        name, _, value = line.partition(":")
        name = name.lower()
        kind = get(name)
        if kind is None:  # the common case, kept as short as possible
            append((name, value.strip(" \t")))
            if kept is not None:
                kept.append(line)
            continue
        value = value.strip(" \t")
        if kind in (K_CONTENT_LENGTH, K_HOST):
            if kind == K_HOST:
                hosts += 1
                if hosts > 1:
                    raise Http1Error(bad, "repeated Host")
            elif cl is not None:
                raise Http1Error(bad, "repeated Content-Length")
            else:
                cl = value
            append((name, value))
            if kept is not None:
                kept.append(line)
            continue
        if kept is None:
            # Every line so far went both to items and to raw.
            kept = lines[first : first + len(items)]
        if kind == K_CONNECTION:
            conn = value if conn is None else f"{conn}, {value}"
        elif kind == K_TRANSFER_ENCODING:
            te = value if te is None else f"{te}, {value}"
        elif kind == K_UPGRADE:
            upgrade = value if upgrade is None else f"{upgrade}, {value}"
        elif kind == K_EXPECT:
            expect = value
            append((name, value))
        elif kind == K_TE and "trailers" in connection_tokens(value):
            append(("te", "trailers"))
    if conn is not None and conn.lower() not in _PLAIN_CONNECTION:
        named = connection_tokens(conn) - _PROTECTED
        if named and any(k in named for k, _ in items):
            # Connection: foo makes foo hop-by-hop too; rare, so rebuild from scratch.
            items = [(k, v) for k, v in items if k not in named]
            kept = [
                ln
                for ln in (lines[first:-1] if kept is None else kept)
                if ln.partition(":")[0].lower() not in named
            ]
    if kept is None:
        raw = block[raw_start:]
    elif kept:
        raw = ("\r\n".join(kept) + "\r\n").encode("latin-1")
    else:
        raw = b""
    return items, raw, cl, te, conn, expect, upgrade


def connection_tokens(conn: str) -> set[str]:
    """The lower-cased tokens of a (comma-joined) Connection value."""
    return {t.strip().lower() for t in conn.split(",")}


def is_keep_alive(version: str, conn: str | None) -> bool:
    """Whether a message of ``version`` with Connection value ``conn`` keeps the connection."""
    if conn is None:
        return version == "1.1"
    lowered = conn.lower()
    if lowered == "keep-alive":
        return True
    if lowered == "close":
        return False
    tokens = connection_tokens(lowered)
    return "close" not in tokens and (version == "1.1" or "keep-alive" in tokens)


def http_version(proto: str) -> str | None:
    """``"1.1"`` or ``"1.0"`` for the start line's protocol, None for any other."""
    if proto == "HTTP/1.1":
        return "1.1"
    if proto == "HTTP/1.0":
        return "1.0"
    return None


def content_length(value: str, bad: int) -> int:
    """Parse a Content-Length value that llhttp already accepted (digits only)."""
    if not (value.isascii() and value.isdigit()):
        raise Http1Error(bad, f"invalid Content-Length {value!r}")
    return int(value)


class MessageReader:
    """Cuts a byte stream into heads, de-chunked body pieces and ends of message.

    Subclasses set ``_parser`` (an httptools parser built with :data:`NO_CALLBACKS`),
    and implement ``_on_head`` and ``_receive_eof``.
    """

    __slots__ = ("_bad", "_buf", "_error", "_keep_alive", "_limit", "_parser", "_remaining", "_state")

    #: Status and wording for a head over the limit (server: 431; client: 502).
    _too_large_status = 431

    def __init__(self, max_header_size: int, bad: int) -> None:
        if max_header_size <= 0:
            raise ValueError(f"max_header_size must be positive, not {max_header_size}")
        self._limit = max_header_size
        self._bad = bad  # status for malformed input: 400 (server) or 502 (client)
        self._parser: Any = None
        self._state = HEAD
        self._buf = bytearray()  # an incomplete head / chunk line / trailers, already fed
        self._remaining = 0  # bytes left in a Content-Length body or in a chunk
        self._keep_alive = True  # of the message being read
        self._error: Http1Error | None = None

    # -- hooks ------------------------------------------------------------------------

    def _on_head(self, data: bytes, start: int, end: int, upgrade: bool, events: list[Event]) -> int:
        """Handle the complete head ``data[start:end]`` (ending CRLFCRLF); return the next state."""
        raise NotImplementedError

    def _receive_eof(self) -> list[Event]:
        raise NotImplementedError

    def _head_too_large(self, partial: bytes | bytearray | None) -> Http1Error:
        """The error for a head over the limit (``partial``: the incomplete head, if any)."""
        return Http1Error(self._too_large_status, f"header block larger than {self._limit} bytes")

    def _llhttp_error(self, exc: Exception) -> Http1Error:
        return Http1Error(self._bad, f"malformed message: {exc}")

    # -- the reader -------------------------------------------------------------------

    @property
    def error(self) -> Http1Error | None:
        """The error already found in received bytes, if any.

        :meth:`receive_data` hands up the events that were complete before bad bytes
        and raises on its next call; a caller about to wait for more bytes checks this
        first, since the peer may have nothing more to send.
        """
        return self._error

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means EOF.  See the codec classes."""
        if self._error is not None:
            raise self._error
        if not data:
            return self._receive_eof()
        state = self._state
        if state >= CLOSE:
            if state == CLOSE:
                return [Body(bytes(data))]
            return []
        if type(data) is not bytes:
            data = bytes(data)
        fed = 0
        buf = self._buf
        if buf:
            # Bytes held over from earlier calls (already fed to llhttp).  Before copying
            # them into one buffer, check that what we wait for has arrived, so that a
            # peer trickling a head byte by byte costs O(n), not O(n^2).
            fed = len(buf)
            buf += data
            if state == CHUNK_SIZE:
                complete = buf.find(b"\r\n", fed - 1) >= 0
            elif state == CHUNK_END:
                complete = len(buf) >= 2
            else:  # HEAD or TRAILERS
                complete = buf.find(b"\r\n\r\n", max(0, fed - 3)) >= 0 or (
                    state == TRAILERS and buf[:2] == b"\r\n"
                )
            if not complete:
                try:
                    # llhttp first: bytes that are not HTTP at all are a 400, whatever
                    # their length, before the size limit says 431.
                    self._feed(data, 0, len(data))
                    self._check_partial(buf)
                except Http1Error as exc:
                    self._error = exc
                    raise
                return []
            data = bytes(buf)
            buf.clear()
        events: list[Event] = []
        try:
            self._run(data, fed, events)
        except Http1Error as exc:
            self._error = exc
            if events:
                # Deliver what was complete before the bad bytes; raise on the next call.
                return events
            raise
        return events

    @property
    def receiving_head(self) -> bool:
        """Part of a head has arrived, not all of it (what a head timeout bounds)."""
        return self._state == HEAD and bool(self._buf)

    def _on_partial_head(self, partial: bytes | bytearray) -> None:
        """An incomplete head arrived (a hook: the server refuses HTTP/0.9 here)."""

    def _check_partial(self, partial: bytes | bytearray) -> None:
        """Refuse an incomplete head/line/trailer block that can no longer fit its limit."""
        state = self._state
        if state == HEAD:
            self._on_partial_head(partial)
        if state in (HEAD, TRAILERS):
            # Complete size would be at least len + 1, so len >= limit already exceeds.
            if len(partial) >= self._limit:
                raise self._head_too_large(partial if state == HEAD else None)
        elif state == CHUNK_SIZE and len(partial) > MAX_CHUNK_LINE:
            raise Http1Error(self._bad, "chunk size line too long")

    def _feed(self, data: bytes, start: int, stop: int) -> bool:
        """Validate ``data[start:stop]`` with llhttp; True if it reported an upgrade."""
        try:
            if start == 0 and stop == len(data):
                self._parser.feed_data(data)
            elif stop - start <= _COPY_BELOW:
                self._parser.feed_data(data[start:stop])
            else:
                self._parser.feed_data(memoryview(data)[start:stop])
        except HttpParserUpgrade:
            return True
        except HttpParserError as exc:
            raise self._llhttp_error(exc) from None
        return False

    def _run(self, data: bytes, fed: int, events: list[Event]) -> None:
        """Turn ``data`` into events; llhttp has already seen ``data[:fed]``."""
        n = len(data)
        pos = 0
        state = self._state
        while pos < n:
            if state == HEAD:
                c = data[pos]
                if c == 13 or c == 10:  # blank lines between messages are ignored
                    m = _CRLF_RUN.match(data, pos)
                    assert m is not None
                    pos = m.end()
                    if pos == n:
                        break
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                end += 4
                if end - pos > self._limit:
                    raise self._head_too_large(None)
                upgrade = False
                if end > fed:
                    upgrade = self._feed(data, fed, end)
                    fed = end
                self._state = state  # _on_head may look at it
                state = self._on_head(data, pos, end, upgrade, events)
                pos = end
            elif state in (LENGTH, CHUNK_DATA):
                remaining = self._remaining
                stop = pos + remaining
                if stop > n:
                    stop = n
                if stop > fed:
                    self._feed(data, fed, stop)
                    fed = stop
                events.append(Body(data if pos == 0 and stop == n else data[pos:stop]))
                remaining -= stop - pos
                pos = stop
                self._remaining = remaining
                if remaining == 0:
                    if state == LENGTH:
                        events.append(EndOfMessage())
                        state = HEAD if self._keep_alive else DONE
                    else:
                        state = CHUNK_END
            elif state == CHUNK_SIZE:
                i = data.find(b"\r\n", pos)
                if i < 0:
                    break
                stop = i + 2
                if stop > fed:
                    self._feed(data, fed, stop)
                    fed = stop
                size = data[pos:i].partition(b";")[0].rstrip(b" \t")
                try:
                    self._remaining = int(size, 16)
                except ValueError:
                    raise Http1Error(self._bad, f"invalid chunk size {size!r}") from None
                pos = stop
                state = CHUNK_DATA if self._remaining else TRAILERS
            elif state == CHUNK_END:
                stop = pos + 2
                if stop > n:
                    break
                if stop > fed:
                    self._feed(data, fed, stop)
                    fed = stop
                if data[pos:stop] != b"\r\n":
                    raise Http1Error(self._bad, "missing CRLF after chunk data")
                pos = stop
                state = CHUNK_SIZE
            elif state == TRAILERS:
                trailers: HeaderMap | None = None
                if data.startswith(b"\r\n", pos):
                    stop = pos + 2
                else:
                    i = data.find(b"\r\n\r\n", pos)
                    if i < 0:
                        break
                    stop = i + 4
                    if stop - pos > self._limit:
                        raise self._head_too_large(None)
                if stop > fed:
                    self._feed(data, fed, stop)
                    fed = stop
                if stop - pos > 2:
                    trailers = self._parse_trailers(data[pos : stop - 2])
                events.append(EndOfMessage(trailers))
                pos = stop
                state = HEAD if self._keep_alive else DONE
            elif state == CLOSE:
                events.append(Body(data[pos:]))
                pos = fed = n
            else:  # DONE: the peer promised to close; ignore what follows
                pos = fed = n
        self._state = state
        if pos < n:
            # An incomplete head, chunk line or trailer block: keep it for next time,
            # but let llhttp see it now so that garbage is refused at once.
            partial = data[pos:]
            if n > fed:
                self._feed(data, fed, n)  # garbage is refused (400) before the size limit
            self._check_partial(partial)
            self._buf += partial

    def _parse_trailers(self, block: bytes) -> HeaderMap:
        """Build the trailer map of ``block`` (trailer lines, each with CRLF)."""
        lines = block.decode("latin-1").split("\r\n")
        items, raw, *_ = parse_fields(block, lines, 0, 0, TRAILER_FIELDS, self._bad)
        return HeaderMap.from_raw(items, raw)
