"""The writing half shared by both HTTP/1.1 codecs: start lines, header blocks, chunks.

The fast path writes ``HeaderMap.raw`` (the parsed bytes of an unedited map) as they
are.  Only an edited map, or one whose Content-Length disagrees with the framing being
written, is serialised again; that slower path checks the whole block with one regular
expression, so a filter cannot smuggle CR/LF (response splitting) or a bad name into
the output.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1.errors import Http1Error
from mosnpy.protocol.http1.events import BodyFraming

__all__ = [
    "HOP_BY_HOP",
    "REQUEST_SKIP",
    "RESPONSE_SKIP",
    "chunk",
    "encode_fields",
    "fields_as_is",
    "last_chunk",
    "request_line",
    "status_line",
]

#: Headers that describe one connection, not the message; never forwarded as they are.
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
#: Names left out when serialising a request head (Expect: the proxy answers 100 itself).
REQUEST_SKIP: Final = HOP_BY_HOP | {"expect"}
RESPONSE_SKIP: Final = HOP_BY_HOP
_CL: Final = frozenset({"content-length"})
_TRAILER_SKIP: Final = HOP_BY_HOP | {"content-length", "host", "expect"}

# One serialised header block: lower-case token names, values without CTLs (HTAB and
# obs-text allowed).  Matching the whole block at once keeps this a single C call.
_BLOCK_RE: Final = re.compile(r"(?:[-!#$%&'*+.^_`|~0-9a-z]+: [\t\x20-\x7e\x80-\xff]*\r\n)*")
_LINE_RE: Final = re.compile(r"([-!#$%&'*+.^_`|~0-9a-z]+): ([\t\x20-\x7e\x80-\xff]*)")
_REQUEST_LINE_RE: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.1\r\n")
#: Methods the request-line fast path knows to be tokens.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_REASON_RE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

_PHRASES: Final[dict[int, str]] = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: Final[dict[int, bytes]] = {
    code: f"HTTP/1.1 {code} {phrase}\r\n".encode() for code, phrase in _PHRASES.items()
}


def status_line(status: int, reason: str) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; the standard phrase when ``reason`` is empty."""
    if not reason or reason == _PHRASES.get(status):
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
    if not 100 <= status <= 999:
        raise Http1Error(500, f"invalid status code {status}")
    if not _REASON_RE.fullmatch(reason):
        raise Http1Error(500, f"invalid reason phrase {reason!r}")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def request_line(method: str, target: str) -> bytes:
    """``<method> <target> HTTP/1.1\\r\\n``, refusing a method or target that would break it."""
    if method in _METHODS and target.isascii() and target.isprintable() and target and " " not in target:
        # What the pattern below accepts, for the common methods, in a few C calls:
        # visible ASCII (``isprintable`` is false for controls and DEL), no space.
        return f"{method} {target} HTTP/1.1\r\n".encode("ascii")
    line = f"{method} {target} HTTP/1.1\r\n"
    if not _REQUEST_LINE_RE.fullmatch(line):
        raise Http1Error(500, f"invalid request line {line[:-2]!r}")
    return line.encode("ascii")


def serialize(headers: HeaderMap, skip: frozenset[str]) -> bytes:
    """Write every field of ``headers`` whose name is not in ``skip`` (slow path)."""
    text = "".join([f"{k}: {v}\r\n" for k, v in headers.items_all() if k not in skip])
    if not _BLOCK_RE.fullmatch(text):
        for k, v in headers.items_all():
            if k not in skip and not _LINE_RE.fullmatch(f"{k}: {v}"):
                raise Http1Error(500, f"invalid header field {k!r}: {v!r}")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise Http1Error(
            500, f"header value not encodable as latin-1: {exc.object[exc.start : exc.end]!r}"
        ) from None


def fields_as_is(headers: HeaderMap, *, request: bool) -> bytes:
    """The map's header lines as they are (no framing fields added or removed)."""
    raw = headers.raw
    if raw is not None:
        return raw
    return serialize(headers, REQUEST_SKIP if request else RESPONSE_SKIP)


def _may_have_content_length(headers: HeaderMap, raw: bytes | None) -> bool:
    """Cheap test; a false positive only sends us down the (still correct) slow path."""
    if raw is not None:
        return raw.lower().find(b"content-length:") >= 0  # (find: see fields.peek_lowered)
    return "content-length" in headers


#: ``encode_fields(raw_length=...)`` when nothing is known of the raw block's length field.
UNKNOWN: Final = -1


def encode_fields(
    headers: HeaderMap,
    framing: BodyFraming,
    content_length: int | None,
    *,
    request: bool,
    raw_length: int | None = UNKNOWN,
) -> bytes:
    """The header lines of a head sent with ``framing``, minus the blank line.

    LENGTH: exactly one ``content-length`` equal to ``content_length`` (taken from the
    map when ``content_length`` is None); CHUNKED: ``transfer-encoding: chunked`` and no
    content-length; NONE and CLOSE: no framing field at all (a content-length in the map
    is left out).  Hop-by-hop fields (and Expect on requests) are never written.
    Unedited parsed maps are written from ``raw`` whenever that is already right.

    ``raw_length`` is what the codec knows of ``headers.raw`` from parsing it: the value
    of its one Content-Length line, or None when it has none; then no field needs to be
    looked up (a lazily split map stays unsplit).
    """
    raw = headers.raw
    if raw is not None and raw_length != UNKNOWN:
        if framing is BodyFraming.LENGTH:
            if raw_length is not None and (content_length is None or content_length == raw_length):
                return raw
            if raw_length is None and content_length is not None:
                return raw + b"content-length: %d\r\n" % content_length
        elif raw_length is None:
            return raw + b"transfer-encoding: chunked\r\n" if framing is BodyFraming.CHUNKED else raw
    skip = REQUEST_SKIP if request else RESPONSE_SKIP
    if framing is BodyFraming.LENGTH:
        if raw is not None and content_length is not None and not _may_have_content_length(headers, raw):
            return raw + b"content-length: %d\r\n" % content_length
        have = headers.get_all("content-length")
        if content_length is None:
            if len(have) != 1 or not (have[0].isascii() and have[0].isdigit()):
                raise Http1Error(500, "LENGTH framing without a content length")
            content_length = int(have[0])
        if not have:
            block = raw if raw is not None else serialize(headers, skip)
            return block + b"content-length: %d\r\n" % content_length
        if len(have) == 1 and have[0] == str(content_length):
            return raw if raw is not None else serialize(headers, skip)
        return serialize(headers, skip | _CL) + b"content-length: %d\r\n" % content_length
    if _may_have_content_length(headers, raw):
        block = serialize(headers, skip | _CL)
    else:
        block = raw if raw is not None else serialize(headers, skip)
    if framing is BodyFraming.CHUNKED:
        return block + b"transfer-encoding: chunked\r\n"
    return block


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (nothing for empty data: an empty chunk would end it)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: HeaderMap | None) -> bytes:
    """The zero-size chunk that ends a chunked body, with its trailer fields if any."""
    if trailers is None or not trailers:
        return b"0\r\n\r\n"
    raw = trailers.raw
    block = raw if raw is not None else serialize(trailers, _TRAILER_SKIP)
    return b"0\r\n" + block + b"\r\n"
