"""Detect HTTP/1.x by its first bytes, for listeners that serve several protocols.

As in MOSN: the connection starts with a known method token followed by a space, which
is MATCH; while what has arrived is still a proper prefix of ``<method> `` the answer is
AGAIN; anything else is FAILED.  The methods are the ones llhttp (and so the server
codec) accepts, minus ``PRI``: ``PRI * HTTP/2.0`` opens the HTTP/2 preface, which
belongs to the HTTP/2 matcher.
"""

from __future__ import annotations

from mosnpy.protocol.matcher import MatchResult

__all__ = ["METHODS", "match_http1"]

#: Every request method llhttp accepts over HTTP/1.x (PRI excluded, see above).
METHODS = frozenset(
    {
        b"DELETE", b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"TRACE",
        b"COPY", b"LOCK", b"MKCOL", b"MOVE", b"PROPFIND", b"PROPPATCH", b"SEARCH", b"UNLOCK",
        b"BIND", b"REBIND", b"UNBIND", b"ACL", b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE",
        b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE", b"PATCH", b"PURGE", b"MKCALENDAR",
        b"LINK", b"UNLINK", b"SOURCE", b"QUERY",
    }
)  # fmt: skip
_LONGEST = max(len(m) for m in METHODS)
#: Every proper prefix of a method, for AGAIN.
_PREFIXES = frozenset(m[:i] for m in METHODS for i in range(1, len(m) + 1))


def match_http1(data: bytes) -> MatchResult:
    """MATCH if ``data`` starts with a known method and a space; AGAIN on a prefix of one."""
    head = bytes(data[: _LONGEST + 1])
    space = head.find(b" ")
    if space >= 0:
        return MatchResult.MATCH if head[:space] in METHODS else MatchResult.FAILED
    if not head or head in _PREFIXES:
        return MatchResult.AGAIN
    return MatchResult.FAILED
