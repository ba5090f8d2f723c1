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

__all__ = ["Http1Fields", "Plain", "peek_lowered", "peek_raw", "scan_plain", "split_raw"]

#: One pass over a head block (request or status line first), lower-cased: every line
#: of a field that steers framing, keep-alive or hop-by-hop handling.  ``split`` cuts
#: the block at them, giving (text before, the line with the CRLF before it, its name,
#: its value) per match and the text after the last; their lengths place each line in
#: the block as received.  llhttp has already validated the block (token names, no
#: obs-fold, no bare CR or LF), so ``[^\r\n]*`` is exactly the value with its
#: surrounding whitespace, and no match can start inside the start line.  Matching a
#: lowered block case-sensitively lets ``re`` skip a failing alternative on its first
#: byte; ``re.IGNORECASE`` would try each one (the split took a third longer, timed).
_SPECIAL: Final = re.compile(
    rb"(\r\n(content-length|transfer-encoding|connection|host|keep-alive|proxy-connection"
    rb"|te|trailer|upgrade|expect):[ \t]*([^\r\n]*))"
)
_split: Final = _SPECIAL.split
_PLAIN_CONNECTION: Final = frozenset({"keep-alive", "close"})

# What a plain scan does with each field it finds, by its lower-case name.
_OTHER: Final = 0  # the full scan's business: Upgrade, Expect, TE, other hop-by-hop
_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_CONNECTION: Final = 3
_HOST: Final = 4
_KINDS: Final[dict[bytes, int]] = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"host": _HOST,
}

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
    parts: list[bytes] = _split(block.lower())  # (typed: compiled, len() is a field read)
    cl = te = conn = host = None
    cuts: list[int] | None = None  # (start, end) of each line to cut, in order
    pos = len(parts[0])  # where the current line (its CRLF first) starts in ``block``
    for i in range(1, len(parts), 4):
        end = pos + len(parts[i])
        kind = _KINDS.get(parts[i + 1], _OTHER)
        # The value as received: the lowered one only measures it.
        value = block[end - len(parts[i + 2]) : end].rstrip(b" \t").decode("latin-1")
        if kind == _CONTENT_LENGTH:
            if cl is not None:
                return None  # repeated: the full scan refuses it
            cl = value
        elif kind == _HOST:
            if request:
                if host is not None:
                    return None
                host = value
        elif kind == _CONNECTION:
            if conn is not None or value.lower() not in _PLAIN_CONNECTION:
                return None  # several, or naming other fields: the full scan sorts it out
            conn = value
            if cuts is None:
                cuts = []
            cuts += (pos, end)
        elif kind == _TRANSFER_ENCODING:
            if te is not None:
                return None
            te = value
            if cuts is None:
                cuts = []
            cuts += (pos, end)
        else:
            return None  # Upgrade, Expect, TE and the other hop-by-hop fields
        pos = end + len(parts[i + 3])
    if cuts is None:
        return block[raw_start:], cl, te, conn, host
    # Each cut takes a line with the CRLF before it; the start line stays first and
    # whole, so the fields that go on start at ``raw_start`` in what is left.
    kept = [block[: cuts[0]]]
    for j in range(1, len(cuts) - 1, 2):
        kept.append(block[cuts[j] : cuts[j + 1]])
    kept.append(block[cuts[-1] :])
    return b"".join(kept)[raw_start:], cl, te, conn, host


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
    return peek_lowered(None if raw is None else raw.lower(), name)


#: The names peeks look for, encoded: the proxy asks every request for the same few
#: (``x-mosn-*-timeout``, header matchers), and an encode is a Python-level call.
#: Bounded, as the names could come from anywhere: past the bound, names are encoded
#: each time.
_NEEDLES: Final[dict[str, bytes]] = {}
_NEEDLES_MAX: Final = 256


def peek_lowered(lowered: bytes | None, name: str) -> str | EllipsisType | None:
    """:func:`peek_raw` given ``raw`` lower-cased already."""
    if lowered is None:
        return ...
    needle = _NEEDLES.get(name)
    if needle is None:
        try:
            needle = name.encode("latin-1")
        except UnicodeEncodeError:
            return None  # no such name can be on the wire
        if len(_NEEDLES) < _NEEDLES_MAX:
            _NEEDLES[name] = needle
    # (``find``, not ``in``: for bytes, ``in`` first tries the needle as an int and
    # clears the TypeError, which costs more than the search)
    return None if lowered.find(needle) < 0 else ...


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
