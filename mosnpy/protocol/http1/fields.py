"""Header fields of an HTTP/1 head, split only when someone reads them.

Theory of operation
-------------------
A proxy forwards most heads without reading most of their fields: the route looks at
the path and Host, the framing at Content-Length, Transfer-Encoding and Connection, and
the rest travel on as the bytes they came in (``HeaderMap.raw``).  So the common head
is scanned once, in C, by one regular expression that finds only the lines of those
few fields (:func:`scan_plain`), and every other line stays unsplit until a filter, a
header route or a log reads the map.  Then :class:`Http1Fields` splits ``raw`` exactly
as the full scan (:func:`~mosnpy.protocol.http1._parse.parse_fields`) would have, and
the map behaves like any other from there on.  A head with anything unusual in it (a
hop-by-hop field besides a plain ``Connection``, ``Expect``, ``Upgrade``, ``TE``, a
repeated framing field, a Connection that names other fields) goes the full scan's
way instead: :func:`scan_plain` says so by returning None.  A property test holds the
two scans equal on every head the fast one accepts.

A lazy map answers ``get`` (:func:`peek_raw`) for a field whose name does not even
occur in the raw bytes without splitting anything: the proxy asks for headers that are
usually absent (``x-mosn-global-timeout``) on every request.
"""

from __future__ import annotations

import re
from types import EllipsisType
from typing import Final

from mosnpy.protocol.headers import HeaderMap

__all__ = ["Http1Fields", "Plain", "peek_raw", "scan_plain", "split_raw"]

#: One pass over a head block (request or status line first): every line of a field
#: that steers framing, keep-alive or hop-by-hop handling, with its value.  Each match
#: spans the CRLF before the line and the line itself, so cutting a span removes the
#: line.  llhttp has already validated the block (token names, no obs-fold, no bare
#: CR or LF), so ``[^\r\n]*`` is exactly the value with its surrounding whitespace.
_SPECIAL: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|host|keep-alive|proxy-connection"
    rb"|te|trailer|upgrade|expect):[ \t]*([^\r\n]*)",
    re.IGNORECASE,
)
_findall: Final = _SPECIAL.findall
_PLAIN_CONNECTION: Final = frozenset({"keep-alive", "close"})

#: What a plain scan found: (raw, content-length, transfer-encoding, connection, host),
#: the values as ``str`` (latin-1) with surrounding whitespace removed, or None.
Plain = tuple[bytes, "str | None", "str | None", "str | None", "str | None"]


def scan_plain(block: bytes, raw_start: int, request: bool) -> Plain | None:
    """Find the framing fields of ``block`` (a head without its final blank line).

    ``raw_start`` is where the first header line starts (after the request or status
    line's CRLF).  Returns None when the head needs the full scan; else the raw bytes of
    the lines that go on (Connection and Transfer-Encoding lines cut) and the values.
    Host is read for requests only (a response's Host is an ordinary field).
    """
    cl = te = conn = host = None
    cut: list[bytes] | None = None
    for name, raw_value in _findall(block, raw_start - 2):
        lname = name.lower()
        value = raw_value.rstrip(b" \t").decode("latin-1")
        if lname == b"content-length":
            if cl is not None:
                return None  # repeated: the full scan refuses it
            cl = value
            continue
        if lname == b"host":
            if not request:
                continue
            if host is not None:
                return None
            host = value
            continue
        if lname == b"connection":
            if conn is not None or value.lower() not in _PLAIN_CONNECTION:
                return None  # several, or naming other fields: the full scan sorts it out
            conn = value
        elif lname == b"transfer-encoding":
            if te is not None:
                return None
            te = value
        else:
            return None  # Upgrade, Expect, TE and the other hop-by-hop fields
        if cut is None:
            cut = []
        cut.append(name)
    if cut is None:
        return block[raw_start:], cl, te, conn, host
    # Each cut name starts one line (a repeat went the full scan's way).  From the start
    # line's CRLF on, every line follows a CRLF: cutting that CRLF and the line's text
    # leaves the line's own CRLF to end the line before it.
    raw = block[raw_start - 2 :]
    for name in cut:
        start = raw.find(b"\r\n" + name + b":")
        end = raw.find(b"\r\n", start + 2)
        raw = raw[:start] + raw[end:]
    return raw[2:], cl, te, conn, host


def split_raw(raw: bytes | None) -> list[tuple[str, str]]:
    """The (lower-case name, value) pairs of ``raw`` header lines, each with CRLF
    (none for None)."""
    if not raw:
        return []
    items: list[tuple[str, str]] = []
    for line in raw.decode("latin-1").split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        items.append((name.lower(), value.strip(" \t")))
    return items


def peek_raw(raw: bytes | None, name: str) -> str | EllipsisType | None:
    """What a lazy HTTP/1 map knows of lower-case ``name`` before splitting ``raw``:
    None when not even its bytes occur there, else ``...`` (splitting tells)."""
    if raw is None:
        return ...
    try:
        needle = name.encode("latin-1")
    except UnicodeEncodeError:
        return None  # no such name can be on the wire
    return None if needle not in raw.lower() else ...


class Http1Fields(HeaderMap):
    """The header map of a head the plain scan read: its fields are split from ``raw``
    on first use (see the module docstring)."""

    __slots__ = ()

    def __init__(self, raw: bytes | None) -> None:
        self._items = None
        self.raw = raw
        self.wire = None

    def _load(self) -> list[tuple[str, str]]:
        return split_raw(self.raw)

    def _peek(self, name: str) -> str | EllipsisType | None:
        return peek_raw(self.raw, name)
