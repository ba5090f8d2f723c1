"""One generic name → factory registry, one instance per extension point.

Every extension point of mosnpy (protocols, network filters, stream filters, load
balancers, ...) is a :class:`Registry`.  A registry is filled two ways, and both are the
same mechanism: code calls :meth:`Registry.register`, and on first lookup the registry
loads its entry-point group (``mosnpy.stream_filters`` and so on), which is how the
built-ins *and* third-party plugins arrive.  The core never imports a plugin module by
name.

A duplicate name is an error unless ``replace=True`` is passed.  An unknown name raises
:class:`UnknownNameError`, whose message lists the names that are known, so a config
typo reads ``unknown stream filter 'falut' (known: fault, header_mutation)``.
:meth:`Registry.origin` names the distribution an entry came from (``mosnpy`` for the
built-ins), which ``mosnpy --list`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar, overload

__all__ = ["DuplicateNameError", "Registry", "UnknownNameError"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class UnknownNameError(KeyError):
    """A name was looked up that no code and no entry point registered."""

    def __init__(self, kind: str, name: str, known: list[str], *, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = known
        #: what to do about it (e.g. the plugin to install), appended after ``; ``
        self.hint = hint
        super().__init__(name)

    def __str__(self) -> str:
        text = f"unknown {self.kind} {self.name!r} (known: {', '.join(self.known) or 'none'})"
        return f"{text}; {self.hint}" if self.hint else text


class DuplicateNameError(ValueError):
    """A name was registered twice without ``replace=True``."""


class Registry(Generic[T]):
    """Name → object map for one extension point, backed by an entry-point group.

    Args:
        kind: what the entries are, for messages ("stream filter").
        group: the entry-point group loaded on first lookup ("mosnpy.stream_filters").
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}  # name -> distribution, for entry points
        self._loaded = False

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    @overload
    def register(self, name: str, obj: None = None, *, replace: bool = False) -> Callable[[T], T]: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> T | Callable[[T], T]:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Raises:
            DuplicateNameError: ``name`` is taken and ``replace`` is false.
        """
        if obj is None:

            def decorator(target: T) -> T:
                self._put(name, target, replace)
                return target

            return decorator
        self._put(name, obj, replace)
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (used by tests and by code that swaps implementations)."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def origin(self, name: str) -> str | None:
        """The distribution whose entry point gave ``name`` (``"mosnpy"`` for the
        built-ins); None for a name registered in code.

        Raises:
            UnknownNameError: nothing is registered under ``name``.
        """
        self.get(name)
        return self._origins.get(name)

    def get(self, name: str) -> T:
        """Return the entry for ``name``, loading entry points on first use.

        Raises:
            UnknownNameError: nothing is registered under ``name``.
        """
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"<Registry {self.kind} ({self.group}): {', '.join(self.names())}>"

    def _put(self, name: str, obj: T, replace: bool) -> None:
        # Entry points load first, so code registering a name an entry point already
        # holds gets the duplicate error now, not a silent shadowing later.
        self._load_entry_points()
        if name in self._entries and not replace and self._entries[name] is not obj:
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
        if self._entries.get(name) is not obj:
            self._origins.pop(name, None)  # code replaced what an entry point gave
        self._entries[name] = obj

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                # Code registered it explicitly before first lookup: code wins.
                continue
            try:
                self._entries[ep.name] = ep.load()
                self._origins[ep.name] = ep.dist.name if ep.dist is not None else "?"
            except Exception:  # a broken plugin must not take the registry down
                log.exception("cannot load %s %r from entry point %s", self.kind, ep.name, ep.value)
