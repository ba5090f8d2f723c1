"""What the optional mypyc build needs to know about a class, as no-ops when interpreted.

``setup.py`` compiles the hot modules with mypyc when asked (``MOSNPY_MYPYC=1``).  A
compiled class is a C type with fixed attributes: it cannot be subclassed by plain
Python code unless it says so, and it cannot derive from most builtin exception
types.  :func:`mypyc_attr` is how a class says so.  mypyc reads the decorator from
the source at build time (it resolves to ``mypy_extensions.mypyc_attr`` for the type
checker); at run time this module's stand-in returns the class unchanged, so neither
build needs ``mypy_extensions`` installed.

:func:`plugin_extensions` is the build hook a protocol plugin's ``setup.py`` calls to
compile its own modules the same way (the dubbo and bolt plugins do).

This module itself is never compiled (its run-time branch is unreachable to mypy).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["mypyc_attr", "plugin_extensions"]

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


def plugin_extensions(modules: list[str]) -> list[Any]:
    """A plugin's ``setup.py`` hook: ``modules`` (paths) compiled with mypyc when
    ``MOSNPY_MYPYC=1``, else nothing (``setup(ext_modules=plugin_extensions([...]))``).

    mypyc type-checks them against this mosnpy's sources; an editable install or a
    checkout is not where mypy looks for installed packages, so it is named on
    ``MYPYPATH``.  Build with ``--no-build-isolation`` (mypyc comes with mypy).
    """
    if os.environ.get("MOSNPY_MYPYC", "") in ("", "0"):
        return []
    from mypyc.build import mypycify

    home = Path(__file__).resolve().parents[1]
    if "-packages" not in home.name:
        os.environ["MYPYPATH"] = os.pathsep.join(filter(None, [os.environ.get("MYPYPATH"), str(home)]))
    return mypycify(modules, opt_level="3")
