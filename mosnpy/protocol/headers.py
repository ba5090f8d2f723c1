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

A :class:`LazyHeaderMap` builds its fields only when they are read (HTTP/1 splits its
raw lines then; an xprotocol asks its frame for a header view), and answers ``get``
from what it already has where it can: most messages go on as they came, and the
proxy's probes for usually absent headers cost no splitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from types import EllipsisType
from typing import Any, TypeVar, overload

__all__ = ["HeaderMap", "LazyHeaderMap"]


class HeaderMap(MutableMapping[str, str]):
    """An ordered, case-insensitive, multi-valued header map.

    ``m[name]`` and :meth:`get` return the first value; :meth:`get_all` returns every
    value; ``m[name] = v`` replaces all values; :meth:`add` appends one.
    """

    __slots__ = ("_items", "raw", "wire")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(k.lower(), v) for k, v in items]
        #: The wire bytes of the header block this map was parsed from, while unedited.
        self.raw: bytes | None = None
        #: HTTP/2: the regular fields as received (bytes pairs), while unedited.
        self.wire: list[tuple[bytes, bytes]] | None = None

    @classmethod
    def from_raw(cls, items: list[tuple[str, str]], raw: bytes) -> HeaderMap:
        """Build a map from already lower-cased ``items`` that came from ``raw``."""
        m = cls.__new__(cls)
        m._items = items
        m.raw = raw
        m.wire = None
        return m

    # -- reading -----------------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        name = name.lower()
        for k, v in self._items:
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
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty when absent)."""
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        return any(k == name for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._items:
            if k not in seen:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return len({k for k, _ in self._items})

    def items_all(self) -> list[tuple[str, str]]:
        """Every (name, value) pair in order, repeats included."""
        return list(self._items)

    def byte_size(self) -> int:
        """Approximate wire size, for limits."""
        return sum(len(k) + len(v) + 4 for k, v in self._items)

    # -- editing (each edit drops ``raw``) -------------------------------------------

    def __setitem__(self, name: str, value: str) -> None:
        name = name.lower()
        items = self._items  # (before raw goes: a lazy map splits its fields from it)
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
        items = self._items  # (before raw goes: a lazy map splits its fields from it)
        self.raw = self.wire = None
        items.append((name.lower(), value))

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        kept = [(k, v) for k, v in self._items if k != name]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self.raw = self.wire = None
        self._items = kept

    def discard(self, name: str) -> None:
        """Remove every value of ``name``; absent is fine."""
        if name in self:
            del self[name]

    def copy(self) -> HeaderMap:
        if self.raw is not None:
            return HeaderMap.from_raw(list(self._items), self.raw)
        m = HeaderMap(self._items)
        m.wire = self.wire
        return m

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderMap):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HeaderMap({self._items!r})"


#: HeaderMap's own storage slot, which a lazy map fills on first need.
_ITEMS: Any = HeaderMap.__dict__["_items"]


_Lazy = TypeVar("_Lazy", bound="LazyHeaderMap")


class LazyHeaderMap(HeaderMap):
    """A map whose fields are built on first use by :meth:`_load` (a codec's view of the
    bytes it received), so a message forwarded as it came never builds them.  A
    subclass may answer :meth:`get` before that from what it has (see ``loaded``).
    Adds no slots: it mixes with other maps."""

    __slots__ = ()

    def _load(self) -> list[tuple[str, str]]:
        """The (lower-case name, value) pairs, built from the subclass's source."""
        raise NotImplementedError

    def _peek(self, name: str) -> str | EllipsisType | None:
        """What is known of ``name`` before the fields are built: its first value, None
        when it is certainly absent, or ``...`` when only building them can tell."""
        return ...

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        if _ITEMS.__get__(self) is None:
            found = self._peek(name)
            if found is not ...:
                return default if found is None else found
        return HeaderMap.get(self, name, default)  # type: ignore[arg-type]

    @property
    def _items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] | None = _ITEMS.__get__(self)
        if items is None:
            items = self._load()
            _ITEMS.__set__(self, items)
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str]]) -> None:
        _ITEMS.__set__(self, items)

    @property
    def loaded(self) -> bool:
        """Whether the fields have been built yet."""
        return _ITEMS.__get__(self) is not None

    def _unload(self) -> None:
        """Build the fields again on next use (for constructors)."""
        _ITEMS.__set__(self, None)

    @classmethod
    def unbuilt(cls: type[_Lazy], raw: bytes | None = None) -> _Lazy:
        """A map whose fields are not built yet, holding the ``raw`` bytes they come from."""
        m = cls.__new__(cls)
        _ITEMS.__set__(m, None)
        m.raw = raw
        m.wire = None
        return m

    def _take_fields(self, other: HeaderMap) -> None:
        """Take ``other``'s fields as they stand: built, or (another lazy map of the same
        source) still to be built from it.  One call, for hot constructors."""
        _ITEMS.__set__(self, _ITEMS.__get__(other))
