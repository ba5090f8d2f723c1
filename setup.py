"""Build hook: with ``MOSNPY_MYPYC=1`` the modules on the request path are compiled with mypyc.

Everything else about the distribution is in ``setup.cfg``.  By default nothing is
compiled, so an editable install stays plain Python (an edited ``.py`` is what runs).
A compiled build is a regular, non-editable install::

    MOSNPY_MYPYC=1 .venv/bin/pip install --no-build-isolation .            # into the venv
    MOSNPY_MYPYC=1 .venv/bin/pip install --no-build-isolation --no-deps --target DIR .

``--no-build-isolation`` uses the venv's mypy (the ``dev`` extra), which carries
mypyc; a C compiler and the Python headers are needed too.  mypyc turns the typed
modules below into C extensions: the same code, without the interpreter's per-call
and per-attribute overhead (``benchmarks/layers.py`` and the ``mosnpy-c`` row of
``benchmarks/compare.py`` measure it).  They are what every request runs through: the
NET/IO connection and listener, the Protocol layer's codecs, header maps, events and
stream connections, the stream I/O, the proxy machine, routing and balancing.

The protocol plugins compile their codecs the same way, each from its own ``setup.py``
(``benchmarks/compiled.py`` builds mosnpy and them together).

A compiled class is a C type: plain-Python code may derive from it only where it says
so (:mod:`mosnpy.native`: header maps and the stream connections' ``Outbox`` do, for
other protocols); ``tests/test_compiled_build.py`` holds the rest of the code to that.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled in a ``MOSNPY_MYPYC=1`` build (the rest stays Python), by layer.
COMPILED = [
    # NET/IO
    "mosnpy/net/connection.py",
    "mosnpy/net/filtermanager.py",
    "mosnpy/net/listener.py",
    "mosnpy/net/stats.py",
    "mosnpy/net/tls.py",
    # Protocol
    "mosnpy/protocol/events.py",
    "mosnpy/protocol/headers.py",
    "mosnpy/protocol/http1/_encode.py",
    "mosnpy/protocol/http1/_parse.py",
    "mosnpy/protocol/http1/client.py",
    "mosnpy/protocol/http1/errors.py",
    "mosnpy/protocol/http1/events.py",
    "mosnpy/protocol/http1/fields.py",
    "mosnpy/protocol/http1/server.py",
    "mosnpy/protocol/http1/stream.py",
    "mosnpy/protocol/xprotocol/stream.py",
    # Stream
    "mosnpy/stream/io.py",
    "mosnpy/stream/stream.py",
    # Proxy, routing, upstream
    "mosnpy/proxy/context.py",
    "mosnpy/proxy/downstream.py",
    "mosnpy/proxy/factory.py",
    "mosnpy/proxy/phases.py",
    "mosnpy/proxy/replies.py",
    "mosnpy/proxy/stream_downstream.py",
    "mosnpy/proxy/stream_server.py",
    "mosnpy/proxy/timers.py",
    "mosnpy/router/matchers.py",
    "mosnpy/router/route.py",
    "mosnpy/router/table.py",
    "mosnpy/router/virtualhost.py",
    "mosnpy/upstream/cluster.py",
    "mosnpy/upstream/host.py",
    "mosnpy/upstream/lb.py",
    "mosnpy/upstream/multiplex.py",
    "mosnpy/upstream/outlier.py",
]

ext_modules = []
if os.environ.get("MOSNPY_MYPYC", "") not in ("", "0"):
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules)
