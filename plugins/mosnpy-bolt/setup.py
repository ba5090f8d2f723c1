"""Build hook: with ``MOSNPY_MYPYC=1`` the codec is compiled with mypyc, as mosnpy's own
request path is (:func:`mosnpy.native.plugin_extensions`: build with
``--no-build-isolation``, a C compiler and the Python headers).  By default nothing is
compiled.  Everything else about the distribution is in ``setup.cfg``.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled in a ``MOSNPY_MYPYC=1`` build.
COMPILED = [
    "mosnpy_bolt/codec.py",
]

ext_modules = []
if os.environ.get("MOSNPY_MYPYC", "") not in ("", "0"):
    # (only then: a plain build runs isolated, without mosnpy installed)
    from mosnpy.native import plugin_extensions

    ext_modules = plugin_extensions(COMPILED)

setup(ext_modules=ext_modules)
