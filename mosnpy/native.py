"""What the optional mypyc build needs to know about a class, as no-ops when interpreted.

``setup.py`` compiles the hot modules with mypyc when asked (``MOSNPY_MYPYC=1``).  A
compiled class is a C type with fixed attributes: it cannot be subclassed by plain
Python code unless it says so, and it cannot derive from most builtin exception
types.  :func:`mypyc_attr` is how a class says so.  mypyc reads the decorator from
the source at build time (it resolves to ``mypy_extensions.mypyc_attr`` for the type
checker); at run time this module's stand-in returns the class unchanged, so neither
build needs ``mypy_extensions`` installed.

This module itself is never compiled (its run-time branch is unreachable to mypy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["mypyc_attr"]

_T = TypeVar("_T")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*attrs: str, **kwattrs: Any) -> Any:
        """Mark a class for mypyc (``"allow_interpreted_subclasses"``,
        ``native_class=False``); returns it unchanged."""

        def mark(cls: _T) -> _T:
            return cls

        return mark
