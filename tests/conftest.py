"""Fixtures shared by every test: free ports and real backends (nginx, Python).

All of them are synchronous, so both plain and trio tests can use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import (
    NginxBackend,
    NginxNotFoundError,
    PyBackend,
    find_nginx,
    start_nginx,
    start_py_backend,
)
from tests.support import free_port as _free_port


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that was free when the fixture ran (for ``tests.support.free_port``
    as a function, import it)."""
    return _free_port()


@pytest.fixture(scope="module")
def nginx_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxBackend]:
    """A private nginx on 127.0.0.1, shared by the tests of one module.

    Serves ``/`` (index.html), ``/big`` (1 MiB, ``.big_body`` / ``.big_sha256``),
    ``/status/{404,500,502,503,504}`` and WebDAV under ``/dav/``.  Fails (never skips)
    when nginx is missing.
    """
    try:
        find_nginx()
    except NginxNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    with start_nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture
def py_backend() -> Iterator[PyBackend]:
    """A fresh stdlib HTTP/1.1 backend named ``default`` (see tests/support/backend.py)."""
    with start_py_backend("default") as backend:
        yield backend
