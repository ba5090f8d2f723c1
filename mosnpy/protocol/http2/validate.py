"""Checking a received HTTP/2 header block and turning it into text, in one pass.

Why not h2's own checks
-----------------------
h2 can validate what it receives (``validate_inbound_headers``), and does it right:
RFC 9113 §8.2 and §8.3, as a chain of generators that look at every byte of every
name and value in Python.  Measured under ``h2load -c50 -m10`` through the proxy
(``benchmarks/``), those generators took about 13% of the proxy's CPU: more than
the whole phase machine.  The same rules are checked here with one compiled regular
expression per name and per value, and the block is decoded to the header map's text
in the same loop; h2 is told not to check again.

The rules are h2's (a Hypothesis test holds the verdicts of both equal for every
block it draws), with one difference in what happens next: a malformed block is a
*stream* error here (RFC 9113 §8.1.1: the stream is reset with PROTOCOL_ERROR and
the connection's other streams go on), where h2 would end the whole connection.

The rules, for every block: names are not empty and contain no byte in 0x00-0x20,
0x41-0x5a (upper case) or 0x7f-0xff, and no colon after the first byte; values
contain no NUL, CR or LF and neither start nor end with a space or a tab;
connection-specific fields (``connection``, ``keep-alive``, ``proxy-connection``,
``transfer-encoding``, ``upgrade``) are refused and ``te`` may only be ``trailers``;
pseudo fields come first, once each, and are ones HTTP/2 knows.  A request has
``:method`` and, unless it is a plain CONNECT, ``:scheme`` and a non-empty ``:path``
(a plain CONNECT has neither); ``:protocol`` only on CONNECT; ``:authority`` or one
``host``, equal when both are there.  A response has ``:status`` and no request
pseudo fields; trailers have no pseudo fields at all.

Several ``cookie`` fields of a request are joined with ``"; "`` into one (RFC 9113
§8.2.3), as h2's inbound normalisation would, so an HTTP/1 upstream gets one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MalformedHeaders", "request_block", "response_block", "trailer_block"]

#: a regular field name: none of 0x00-0x20, A-Z, 0x7f-0xff, and no colon
_NAME = re.compile(rb"[^\x00-\x20A-Z\x7f-\xff:]+").fullmatch
#: the names of a block joined by LF (which no valid name holds): all valid at once
_NAMES = re.compile(rb"[^\x00-\x20A-Z\x7f-\xff:]+(?:\n[^\x00-\x20A-Z\x7f-\xff:]+)*").fullmatch
#: a value may not hold NUL, CR or LF, nor start or end with SP or HTAB
_BAD_BYTE = re.compile(rb"[\x00\r\n]").search
_BLANKS = (b" ", b"\t")
#: a status code: three digits (h2 does not look; a proxy must read it)
_STATUS = re.compile(rb"[1-9][0-9][0-9]").fullmatch

_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_RESPONSE_PSEUDO = frozenset({b":status"})


class MalformedHeaders(ValueError):
    """A received header block breaks RFC 9113 §8.2/§8.3: a stream error."""


def _bad_value(value: bytes) -> bool:
    return bool(value) and (_BAD_BYTE(value) is not None or value[:1] in _BLANKS or value[-1:] in _BLANKS)


def _values_ok(values: list[bytes]) -> bool:
    """Every value valid, checked on the values joined by LF: a LF more than the
    joins made, a NUL or CR, or a blank next to a join or an end is a bad value."""
    joined = b"\n".join(values)
    return not (
        joined.count(b"\n") != len(values) - 1
        or b"\r" in joined
        or b"\x00" in joined
        or b"\n " in joined
        or b" \n" in joined
        or b"\n\t" in joined
        or b"\t\n" in joined
        or joined[:1] in _BLANKS
        or joined[-1:] in _BLANKS
    )


def _fault(name: bytes, value: bytes) -> str | None:
    """What is wrong with one regular field, if anything (the slow path's words)."""
    if name[:1] == b":":
        return f"pseudo header {name!r} after a regular one"
    if not _NAME(name):
        return f"invalid header name {name!r}"
    if _bad_value(value):
        return f"invalid value for header {name.decode('latin-1')!r}"
    if name in _CONNECTION_SPECIFIC:
        return f"connection-specific header {name.decode('latin-1')!r} in HTTP/2"
    if name == b"te" and value.lower() != b"trailers":
        return f"te may only be 'trailers' in HTTP/2, not {value!r}"
    return None


def _split(
    raw: Sequence[tuple[bytes, bytes]], allowed: frozenset[bytes]
) -> tuple[dict[bytes, bytes], list[tuple[str, str]]]:
    """Check a block; its pseudo fields (raw) and its regular fields (as text).

    The regular fields are checked together (one match over the names, a few
    substring tests over the values) and decoded together; only a block that fails
    is walked field by field, to say which field is wrong.
    """
    pseudo: dict[bytes, bytes] = {}
    start = 0
    for name, value in raw:  # pseudo fields lead the block
        if name[:1] != b":":
            break
        if name in pseudo:
            raise MalformedHeaders(f"pseudo header {name!r} repeated")
        if name not in allowed:  # unknown, or one of the other direction's
            raise MalformedHeaders(f"pseudo header {name!r} not allowed here")
        if _bad_value(value):
            raise MalformedHeaders(f"invalid value for {name.decode('latin-1')}")
        pseudo[name] = value
        start += 1
    rest = raw[start:] if start else raw
    if not rest:
        return pseudo, []
    names = [pair[0] for pair in rest]
    values = [pair[1] for pair in rest]
    joined = b"\n".join(names)
    if (
        _NAMES(joined) is None
        or not _values_ok(values)
        or not _CONNECTION_SPECIFIC.isdisjoint(names)
        or (b"te" in names and any(pair[1].lower() != b"trailers" for pair in rest if pair[0] == b"te"))
    ):
        for name, value in rest:
            fault = _fault(name, value)
            if fault is not None:
                raise MalformedHeaders(fault)
        raise AssertionError("a block refused as a whole has a bad field")  # pragma: no cover
    text = zip(
        joined.decode("latin-1").split("\n"), b"\n".join(values).decode("latin-1").split("\n"), strict=True
    )
    return pseudo, list(text)


def request_block(raw: Sequence[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A request's header block → (pseudo fields, regular fields) as latin-1 text.

    Raises :class:`MalformedHeaders` when the block is not a valid request head.
    """
    pseudo, regular = _split(raw, _REQUEST_PSEUDO)
    method = pseudo.get(b":method")
    if method is None:
        raise MalformedHeaders("request without :method")
    connect = method == b"CONNECT"
    if connect and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise MalformedHeaders("a CONNECT request has neither :scheme nor :path")
    else:
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise MalformedHeaders("request without :scheme or :path")
        if b":protocol" in pseudo and not connect:
            raise MalformedHeaders(":protocol outside an extended CONNECT")
    if b":path" in pseudo and not pseudo[b":path"]:
        raise MalformedHeaders("empty :path")
    hosts = [value for name, value in regular if name == "host"]
    authority = pseudo.get(b":authority")
    if len(hosts) > 1:
        raise MalformedHeaders("more than one host header")
    if authority is None and not hosts:
        raise MalformedHeaders("request without :authority or host")
    if authority is not None and hosts and hosts[0] != authority.decode("latin-1"):
        raise MalformedHeaders(":authority and host differ")
    cookies = [value for name, value in regular if name == "cookie"]
    if len(cookies) > 1:
        regular = [pair for pair in regular if pair[0] != "cookie"]
        regular.append(("cookie", "; ".join(cookies)))
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in pseudo.items()}, regular


def response_block(raw: Sequence[tuple[bytes, bytes]]) -> tuple[int, list[tuple[str, str]]]:
    """A response's header block → (``:status``, regular fields as text).

    Raises :class:`MalformedHeaders` when the block is not a valid response head.
    """
    pseudo, regular = _split(raw, _RESPONSE_PSEUDO)
    status = pseudo.get(b":status")
    if status is None:
        raise MalformedHeaders("response without :status")
    if not _STATUS(status):
        raise MalformedHeaders(f"invalid :status {status!r}")
    return int(status), regular


def trailer_block(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """A trailer block → its fields as text; pseudo fields are malformed here."""
    return _split(raw, frozenset())[1]
