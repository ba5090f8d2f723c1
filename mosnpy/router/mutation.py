"""Precompiled header edits: ``*_headers_to_add`` / ``*_headers_to_remove``.

A route's request edits come from three config levels (route, virtual host, router).
Rather than walk three config objects per request, :class:`HeaderMutation` flattens
them at build time into one tuple of ``(op, name, value)`` steps, so applying them is
one loop with no allocation beyond what :class:`HeaderMap` itself does.

Order, which decides who wins when two levels set the same header: the levels run from
most to least specific (route, then virtual host, then router, as MOSN's
``FinalizeRequestHeaders`` does), so on a replace the least specific level's value is
the one that stays.  Inside one level removals run before additions (Envoy's and MOSN's
header parser order), so a level can replace a header by removing and adding it.
``append: true`` adds one more value; otherwise the header's values are replaced.
(MOSN joins an appended value onto the existing one with ``,``; mosnpy keeps a separate
value, which HTTP treats the same and which other protocols' header maps can carry.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mosnpy.config.models import HeaderValueConfig
from mosnpy.protocol.headers import HeaderMap

__all__ = ["HeaderMutation"]

_REMOVE = 0
_SET = 1
_ADD = 2


class HeaderMutation:
    """An ordered list of header removals and additions, applied in one pass."""

    __slots__ = ("_steps",)

    def __init__(self, steps: Iterable[tuple[int, str, str]] = ()) -> None:
        self._steps: tuple[tuple[int, str, str], ...] = tuple(steps)

    @classmethod
    def from_levels(
        cls, levels: Iterable[tuple[Sequence[str], Sequence[HeaderValueConfig]]]
    ) -> HeaderMutation:
        """Build from ``(to_remove, to_add)`` pairs, most specific level first."""
        steps: list[tuple[int, str, str]] = []
        for to_remove, to_add in levels:
            steps.extend((_REMOVE, name.lower(), "") for name in to_remove)
            steps.extend((_ADD if h.append else _SET, h.key.lower(), h.value) for h in to_add)
        return cls(steps)

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def apply(self, headers: HeaderMap) -> None:
        """Edit ``headers`` in place (does nothing, and keeps raw bytes, when empty)."""
        for op, name, value in self._steps:
            if op == _REMOVE:
                headers.discard(name)
            elif op == _SET:
                headers[name] = value
            else:
                headers.add(name, value)

    def __repr__(self) -> str:
        names = ("remove", "set", "add")
        return "HeaderMutation([" + ", ".join(f"{names[o]} {n}" for o, n, _ in self._steps) + "])"
