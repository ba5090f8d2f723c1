"""Build hook: with ``MOSNPY_MYPYC=1`` the codec is compiled with mypyc, as mosnpy's own
request path is (see mosnpy's ``setup.py``: ``--no-build-isolation``, a C compiler and the
Python headers; mosnpy itself must be installed, for its types).  By default nothing is
compiled.  Everything else about the distribution is in ``setup.cfg``.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

#: The modules compiled in a ``MOSNPY_MYPYC=1`` build.
COMPILED = [
    "mosnpy_dubbo/hessian.py",
    "mosnpy_dubbo/request.py",
    "mosnpy_dubbo/codec.py",
]

ext_modules = []
if os.environ.get("MOSNPY_MYPYC", "") not in ("", "0"):
    from mypyc.build import mypycify

    import mosnpy

    # mypyc type-checks the codec against mosnpy's sources: an editable (or checkout)
    # mosnpy is not where mypy looks for installed packages, so name it.
    home = Path(mosnpy.__file__).resolve().parents[1]
    if "-packages" not in home.name:
        os.environ["MYPYPATH"] = os.pathsep.join(filter(None, [os.environ.get("MYPYPATH"), str(home)]))
    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules)
