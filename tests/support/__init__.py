"""Shared support for mosnpy's end-to-end tests: real backends and process helpers.

Import from here (``from tests.support import run_mosnpy, free_port``); the fixtures
built on these live in ``tests/conftest.py``.  Everything binds and connects to
127.0.0.1 only, and every process started here is stopped by its own pid.
"""

from .backend import chunk_payload, chunked_body
from .nginx import (
    BIG_BODY,
    BIG_SHA256,
    NginxBackend,
    NginxNotFoundError,
    find_nginx,
    start_nginx,
)
from .procs import (
    LOCALHOST,
    REPO_ROOT,
    MosnpyError,
    MosnpyProcess,
    ProcessStartError,
    PyBackend,
    free_port,
    port_is_open,
    run_mosnpy,
    start_py_backend,
    stop_process,
    wait_for_port,
)

__all__ = [
    "BIG_BODY",
    "BIG_SHA256",
    "LOCALHOST",
    "REPO_ROOT",
    "MosnpyError",
    "MosnpyProcess",
    "NginxBackend",
    "NginxNotFoundError",
    "ProcessStartError",
    "PyBackend",
    "chunk_payload",
    "chunked_body",
    "find_nginx",
    "free_port",
    "port_is_open",
    "run_mosnpy",
    "start_nginx",
    "start_py_backend",
    "stop_process",
    "wait_for_port",
]
