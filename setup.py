"""Build hook: with ``MOSNPY_MYPYC=1`` the hot sans-I/O modules are compiled with mypyc.

Everything else about the distribution is in ``setup.cfg``.  By default nothing is
compiled, so an editable install stays plain Python (an edited ``.py`` is what runs).
A compiled build is a regular, non-editable install::

    MOSNPY_MYPYC=1 .venv/bin/pip install --no-build-isolation .            # into the venv
    MOSNPY_MYPYC=1 .venv/bin/pip install --no-build-isolation --no-deps --target DIR .

``--no-build-isolation`` uses the venv's mypy (the ``dev`` extra), which carries
mypyc; a C compiler and the Python headers are needed too.  mypyc turns the typed
modules below into C extensions: the same code, without the interpreter's per-call
and per-attribute overhead (``benchmarks/layers.py`` and the ``mosnpy-c`` row of
``benchmarks/compare.py`` measure it).  They are the codecs of the Protocol layer:
pure functions and small classes over bytes, no trio, nothing subclassed elsewhere.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled in a ``MOSNPY_MYPYC=1`` build (the rest stays Python).
COMPILED = [
    "mosnpy/protocol/http1/errors.py",
    "mosnpy/protocol/http1/events.py",
    "mosnpy/protocol/http1/_parse.py",
    "mosnpy/protocol/http1/_encode.py",
    "mosnpy/protocol/http1/server.py",
    "mosnpy/protocol/http1/client.py",
]

ext_modules = []
if os.environ.get("MOSNPY_MYPYC", "") not in ("", "0"):
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules)
