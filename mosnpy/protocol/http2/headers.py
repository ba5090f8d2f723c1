"""HTTP/2 header blocks ↔ the neutral header map, and what conversion drops.

HTTP/2 carries the request line as pseudo headers (``:method``, ``:scheme``,
``:authority``, ``:path``) and the status as ``:status``; they become the attributes
of :class:`H2RequestHeaders` / :class:`H2ResponseHeaders` and never sit in the map, so
filters and routes see the same regular headers whatever the protocol.  ``:authority``
is also put in the map as ``host`` (what an HTTP/1 upstream needs, and what a route's
``host_rewrite`` edits); going out on HTTP/2, ``host`` becomes ``:authority`` again.

Names and values travel as latin-1 text, like HTTP/1's: every byte round-trips.
Connection-specific headers (RFC 9113 §8.2.2) never go out on HTTP/2: ``connection``
and the names it lists, ``keep-alive``, ``proxy-connection``, ``transfer-encoding``,
``upgrade``, ``http2-settings``, and ``te`` unless it is exactly ``trailers``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mosnpy.protocol.api import RequestHeaders
from mosnpy.protocol.headers import HeaderMap

__all__ = [
    "H2RequestHeaders",
    "H2ResponseHeaders",
    "Pairs",
    "regular_pairs",
]

Pairs = list[tuple[bytes, bytes]]

#: what a received (checked) block may hold that does not go out as it is
_WIRE_DROP = frozenset({b"host"})
_WIRE_DROP_TE = frozenset({b"host", b"te"})

_CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings", "host"}
)


class H2RequestHeaders(RequestHeaders):
    """A request's regular headers plus its pseudo headers as attributes."""

    __slots__ = ("scheme",)

    def __init__(self, items: Iterable[tuple[str, str]], *, method: str, target: str, scheme: str) -> None:
        super().__init__(items, method=method, target=target)
        self.scheme = scheme

    @classmethod
    def received(
        cls, items: list[tuple[str, str]], wire: Pairs, *, method: str, target: str, scheme: str
    ) -> H2RequestHeaders:
        """A checked block's map: ``items`` are lower-case already, ``wire`` the regular
        fields as received (sent on as they are while the map is unedited)."""
        m = cls.__new__(cls)
        m._items = items
        m.raw = None
        m.wire = wire
        m.method = method
        m.target = target
        m.timeout = None
        m.scheme = scheme
        return m


class H2ResponseHeaders(HeaderMap):
    """A response's regular headers; ``status`` is its ``:status`` on the wire (for a
    gRPC answer 200, even when the call failed and the mapped status is not)."""

    __slots__ = ("status",)

    def __init__(self, items: Iterable[tuple[str, str]], *, status: int) -> None:
        super().__init__(items)
        self.status = status

    @classmethod
    def received(cls, items: list[tuple[str, str]], wire: Pairs, *, status: int) -> H2ResponseHeaders:
        """As :meth:`H2RequestHeaders.received`."""
        m = cls.__new__(cls)
        m._items = items
        m.raw = None
        m.wire = wire
        m.status = status
        return m


def _bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()  # a value from a protocol with Unicode headers (RPC attachments)


def regular_pairs(headers: HeaderMap, *, trailers_ok: bool = True) -> Pairs:
    """The headers HTTP/2 may carry: connection-specific ones dropped (also those the
    ``connection`` header names), pseudo headers left to the caller, ``te`` kept only
    as ``trailers`` (and only when ``trailers_ok``).

    An unedited map received on HTTP/2 goes out as it came (its ``wire`` pairs were
    checked then: no connection-specific field, ``te`` only ``trailers``), less
    ``host`` (sent as ``:authority``) and a ``te`` that is not wanted.
    """
    wire = headers.wire
    if wire is not None:
        drop = _WIRE_DROP if trailers_ok else _WIRE_DROP_TE
        return [pair for pair in wire if pair[0] not in drop]
    items = headers.items_all()
    listed: set[str] = set()
    for name, value in items:
        if name == "connection":
            listed.update(token.strip().lower() for token in value.split(","))
    out: Pairs = []
    for name, value in items:
        if name in _CONNECTION_SPECIFIC or name in listed or name[:1] == ":":
            continue
        if name == "te":
            if trailers_ok and "trailers" in (t.strip().lower() for t in value.split(",")):
                out.append((b"te", b"trailers"))
            continue
        out.append((_bytes(name), _bytes(value)))
    return out
