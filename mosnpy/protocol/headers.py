"""The header map every protocol hands up and every filter edits.

Names are case-insensitive and stored lower-case; values are ``str`` (HTTP/1 bytes are
decoded as latin-1, which round-trips every byte).  Order and repeated names are kept,
because HTTP allows both and a proxy must not reorder what it forwards.

A codec may build a map with :meth:`HeaderMap.from_raw`, giving it the exact header
block it parsed.  As long as nobody edits the map, :attr:`HeaderMap.raw` still holds
those bytes and the encoder writes them back unchanged (one ``bytes`` join instead of
re-serialising every line).  The first edit drops ``raw``: copy on write.

:attr:`HeaderMap.wire` is the same idea for HTTP/2: the regular field pairs exactly as
they were received (and checked), which an HTTP/2 stream connection sends on as they
are while nobody edited the map.

A *lazy* map builds its fields only when they are read: a subclass leaves them None
and builds them in :meth:`HeaderMap._load` (HTTP/1 splits its raw lines then; an
xprotocol asks its frame for a header view), and answers ``get`` from what it already
has where it can (:meth:`HeaderMap._peek`): most messages go on as they came, and the
proxy's probes for usually absent headers cost no splitting.

:class:`RequestHeaders` adds the request line (method, target) that HTTP protocols
hand up with a request's fields.

Both classes are compiled in a mypyc build (``setup.py``) and stay open to subclasses
in plain Python: other protocols' maps derive from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from types import EllipsisType
from typing import overload

from mosnpy.native import mypyc_attr

__all__ = ["HeaderMap", "RequestHeaders"]


@mypyc_attr(allow_interpreted_subclasses=True)
class HeaderMap(MutableMapping[str, str]):
    """An ordered, case-insensitive, multi-valued header map.

    ``m[name]`` and :meth:`get` return the first value; :meth:`get_all` returns every
    value; ``m[name] = v`` replaces all values; :meth:`add` appends one.

    A lazy map (see the module docstring) is one whose ``_items`` are None until first
    needed: a subclass builds them in :meth:`_load` and may answer :meth:`get` before
    that in :meth:`_peek`.
    """

    __slots__ = ("_items", "raw", "wire")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        #: the (lower-case name, value) pairs; None while a lazy map has not built them
        self._items: list[tuple[str, str]] | None = [(k.lower(), v) for k, v in items]
        #: The wire bytes of the header block this map was parsed from, while unedited.
        self.raw: bytes | None = None
        #: HTTP/2: the regular fields as received (bytes pairs), while unedited.
        self.wire: list[tuple[bytes, bytes]] | None = None

    @classmethod
    def from_raw(cls, items: list[tuple[str, str]], raw: bytes) -> HeaderMap:
        """Build a map from already lower-cased ``items`` that came from ``raw``."""
        m = cls()
        m._items = items
        m.raw = raw
        return m

    # -- laziness (a plain map is always built) ------------------------------------------

    def _load(self) -> list[tuple[str, str]]:
        """A lazy map's (lower-case name, value) pairs, built from its source."""
        raise NotImplementedError(f"{type(self).__name__} has no fields to build")

    def _peek(self, name: str) -> str | EllipsisType | None:
        """What is known of lower-case ``name`` before the fields are built: its first
        value, None when it is certainly absent, or ``...`` when only building them can
        tell."""
        return ...

    def _built(self) -> list[tuple[str, str]]:
        items = self._items
        if items is None:
            items = self._items = self._load()
        return items

    @property
    def loaded(self) -> bool:
        """Whether the fields are built (always, but for a lazy map not read yet)."""
        return self._items is not None

    # -- reading -----------------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        name = name.lower()
        for k, v in self._built():
            if k == name:
                return v
        raise KeyError(name)

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default`` (no exception on the miss path:
        the proxy probes for headers that are usually absent on every request)."""
        name = name.lower()
        items = self._items
        if items is None:
            found = self._peek(name)
            if found is not ...:
                return default if found is None else found
            items = self._built()
        for k, v in items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty when absent)."""
        name = name.lower()
        return [v for k, v in self._built() if k == name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        return any(k == name for k, _ in self._built())

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._built():
            if k not in seen:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return len({k for k, _ in self._built()})

    def items_all(self) -> list[tuple[str, str]]:
        """Every (name, value) pair in order, repeats included."""
        return list(self._built())

    def byte_size(self) -> int:
        """Approximate wire size, for limits."""
        return sum(len(k) + len(v) + 4 for k, v in self._built())

    # -- editing (each edit drops ``raw``) -------------------------------------------

    def __setitem__(self, name: str, value: str) -> None:
        name = name.lower()
        items = self._built()  # (before raw goes: a lazy map splits its fields from it)
        self.raw = self.wire = None
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in items:
            if k == name:
                if not placed:
                    out.append((k, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((name, value))
        self._items = out

    def add(self, name: str, value: str) -> None:
        """Append one more value for ``name``."""
        items = self._built()  # (before raw goes: a lazy map splits its fields from it)
        self.raw = self.wire = None
        items.append((name.lower(), value))

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        items = self._built()
        kept = [(k, v) for k, v in items if k != name]
        if len(kept) == len(items):
            raise KeyError(name)
        self.raw = self.wire = None
        self._items = kept

    def discard(self, name: str) -> None:
        """Remove every value of ``name``; absent is fine."""
        if name in self:
            del self[name]

    def copy(self) -> HeaderMap:
        items = self._built()
        if self.raw is not None:
            return HeaderMap.from_raw(list(items), self.raw)
        m = HeaderMap(items)
        m.wire = self.wire
        return m

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderMap):
            return self._built() == other._built()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HeaderMap({self._built()!r})"


@mypyc_attr(allow_interpreted_subclasses=True)
class RequestHeaders(HeaderMap):
    """Request headers that carry their request line: ``method`` and ``target`` (path
    and query).  HTTP protocols hand these up, so a route can rewrite the target and
    the upstream stream connection writes what the route left there."""

    __slots__ = ("method", "target", "timeout")

    def __init__(self, items: Iterable[tuple[str, str]] = (), *, method: str = "", target: str = "") -> None:
        super().__init__(items)
        self.method = method
        self.target = target
        #: seconds the request has left, set by the proxy just before it goes upstream
        #: when the request carried its own deadline; a protocol that can say so
        #: (gRPC's ``grpc-timeout``) passes it on.  None: nothing to pass on.
        self.timeout: float | None = None
