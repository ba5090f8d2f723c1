"""A private nginx for end-to-end tests, started as a subprocess and stopped by its pid.

Everything nginx writes (pid file, lock file, temp dirs, logs, DAV uploads) stays in a
directory of the test's own.  It runs with ``daemon off; master_process off;`` so the
process we start is the only nginx process: stopping that pid stops it, and nothing is
left behind.  It listens on 127.0.0.1 only and never touches a system nginx (whose
config, pid file and port 80 we don't use).

Served locations:

- ``/`` -> ``index.html`` (:data:`INDEX_HTML`)
- ``/big`` -> 1 MiB of fixed pseudo-random bytes (:data:`BIG_BODY`)
- ``/status/404``, ``/status/500``, ``/status/502``, ``/status/503``, ``/status/504``
  -> that status with a short text body (:data:`STATUS_BODIES`)
- ``/dav/...`` -> WebDAV: PUT (parent dirs created), GET, DELETE, MKCOL, COPY, MOVE;
  an upload is checked by a PUT then a GET of the same path (or by reading
  :attr:`NginxBackend.dav_dir`)

``start_nginx(prefix, http2=True)`` makes the listener HTTP/2 over cleartext (h2c with
prior knowledge: ``listen 127.0.0.1:PORT http2;``), serving the same locations.  Such a
listener speaks HTTP/2 only (nginx 1.22 does not sniff HTTP/1 on it); start a second
nginx for HTTP/1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .procs import LOCALHOST, ProcessStartError, free_port, port_is_open, stop_process

BIG_SIZE = 1024 * 1024
BIG_BODY: bytes = random.Random(0x6D6F736E).randbytes(BIG_SIZE)
BIG_SHA256: str = hashlib.sha256(BIG_BODY).hexdigest()
INDEX_HTML = b"<!doctype html>\n<html><body><h1>mosnpy test nginx</h1></body></html>\n"
STATUS_BODIES: dict[int, bytes] = {
    404: b"not found\n",
    500: b"internal error\n",
    502: b"bad gateway\n",
    503: b"unavailable\n",
    504: b"gateway timeout\n",
}
KEEPALIVE_REQUESTS = 10000
CLIENT_MAX_BODY_SIZE = "10m"

_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


class NginxNotFoundError(RuntimeError):
    pass


def find_nginx() -> str:
    """Path of the nginx binary ($MOSNPY_NGINX, PATH, then the usual sbin dirs)."""
    override = os.environ.get("MOSNPY_NGINX")
    if override:
        if not os.access(override, os.X_OK):
            raise NginxNotFoundError(f"MOSNPY_NGINX={override!r} is not an executable file")
        return override
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in _NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise NginxNotFoundError(
        "nginx is not installed (looked in PATH and "
        + ", ".join(_NGINX_CANDIDATES)
        + "); install the Debian package 'nginx' (.ci/run does) or set MOSNPY_NGINX"
    )


class NginxBackend:
    """A running private nginx; see the module docstring for what it serves."""

    big_body: bytes = BIG_BODY
    big_sha256: str = BIG_SHA256
    index_body: bytes = INDEX_HTML
    status_bodies: dict[int, bytes] = STATUS_BODIES

    def __init__(
        self, port: int, prefix: Path, proc: subprocess.Popen[bytes], *, http2: bool = False
    ) -> None:
        self.port = port
        self.prefix = prefix
        self.proc = proc
        #: the listener speaks HTTP/2 cleartext (prior knowledge) instead of HTTP/1.x
        self.http2 = http2

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def dav_dir(self) -> Path:
        """Where files PUT to ``/dav/...`` land (``dav_dir / "x"`` for ``/dav/x``)."""
        return self.prefix / "davroot" / "dav"

    def error_log(self) -> str:
        return _read(self.prefix / "logs" / "error.log")

    def access_log(self) -> str:
        return _read(self.prefix / "logs" / "access.log")

    def stop(self, timeout: float = 10.0) -> int:
        return stop_process(self.proc, timeout=timeout)

    def __repr__(self) -> str:
        proto = ", http2=True" if self.http2 else ""
        return f"NginxBackend(port={self.port}, pid={self.pid}{proto}, prefix={str(self.prefix)!r})"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _q(path: Path) -> str:
    text = str(path)
    if '"' in text or "\\" in text or "$" in text:
        raise ValueError(f"cannot use {text!r} in nginx.conf")
    return f'"{text}"'


def render_config(prefix: Path, port: int, *, http2: bool = False) -> str:
    """The nginx.conf text for a server rooted at ``prefix`` listening on 127.0.0.1:port
    (HTTP/2 cleartext with prior knowledge when ``http2``)."""
    tmp = prefix / "tmp"
    logs = prefix / "logs"
    # nginx 1.22's HTTP/2 with sendfile writes a response's HEADERS and DATA apart, and
    # on a kept-alive connection the DATA then waits ~40 ms for a delayed ACK (Nagle);
    # without sendfile they leave together.
    sendfile = "off" if http2 else "on"
    status_locations = "\n".join(
        f'        location = /status/{code} {{ return {code} "{body.decode().rstrip()}\\n"; }}'
        for code, body in STATUS_BODIES.items()
    )
    return f"""\
# Generated by tests/support/nginx.py for one test run; not a system config.
daemon off;
master_process off;
worker_processes 1;
pid {_q(prefix / "nginx.pid")};
lock_file {_q(prefix / "nginx.lock")};
error_log {_q(logs / "error.log")} notice;

events {{
    worker_connections 4096;
}}

http {{
    access_log {_q(logs / "access.log")};
    client_body_temp_path {_q(tmp / "client_body")};
    proxy_temp_path {_q(tmp / "proxy")};
    fastcgi_temp_path {_q(tmp / "fastcgi")};
    uwsgi_temp_path {_q(tmp / "uwsgi")};
    scgi_temp_path {_q(tmp / "scgi")};

    types {{
        text/html html;
        text/plain txt;
    }}
    default_type application/octet-stream;

    sendfile {sendfile};
    server_tokens off;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 65s;
    client_max_body_size {CLIENT_MAX_BODY_SIZE};

    server {{
        listen {LOCALHOST}:{port}{" http2" if http2 else ""};
        server_name localhost;
        root {_q(prefix / "www")};
        default_type text/plain;

        location / {{
            index index.html;
        }}

        location = /big {{
            default_type application/octet-stream;
        }}

{status_locations}

        location /dav/ {{
            root {_q(prefix / "davroot")};
            dav_methods PUT DELETE MKCOL COPY MOVE;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
            default_type application/octet-stream;
        }}
    }}
}}
"""


def _prepare_prefix(prefix: Path) -> None:
    for sub in ("www", "logs", "davroot/dav", "tmp/client_body", "tmp/proxy"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "www" / "index.html").write_bytes(INDEX_HTML)
    (prefix / "www" / "big").write_bytes(BIG_BODY)


def _launch(
    nginx: str, prefix: Path, port: int, timeout: float, *, http2: bool = False
) -> subprocess.Popen[bytes] | None:
    """Start nginx on ``port``; the process once it accepts, None if the port was taken."""
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(prefix, port, http2=http2), encoding="utf-8")
    error_log = prefix / "logs" / "error.log"
    error_log.write_bytes(b"")
    stdout_log = prefix / "logs" / "stdout.log"
    argv = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(error_log)]
    with open(stdout_log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = _read(error_log) + _read(stdout_log)
            if "Address already in use" in log:
                return None
            raise ProcessStartError(
                f"nginx exited with {proc.returncode} before listening on {LOCALHOST}:{port}; "
                f"command: {argv}\n--- error log ---\n{log}"
            )
        if port_is_open(port, timeout=0.5):
            if proc.poll() is None:
                return proc
            continue
        if time.monotonic() >= deadline:
            stop_process(proc, timeout=5.0)
            raise ProcessStartError(
                f"nginx did not accept on {LOCALHOST}:{port} within {timeout:g} s; command: {argv}\n"
                f"--- error log ---\n{_read(error_log)}{_read(stdout_log)}"
            )
        time.sleep(0.02)


@contextlib.contextmanager
def start_nginx(
    prefix: Path, *, startup_timeout: float = 10.0, attempts: int = 3, http2: bool = False
) -> Iterator[NginxBackend]:
    """Run a private nginx rooted at ``prefix`` (an empty dir of the test's) until exit.

    ``http2``: the listener speaks HTTP/2 cleartext with prior knowledge (h2c), not HTTP/1.

    Raises :class:`NginxNotFoundError` if there is no nginx binary and
    :class:`ProcessStartError` (with nginx's error log) if it does not come up.
    """
    nginx = find_nginx()
    prefix = prefix.resolve()
    _prepare_prefix(prefix)
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _ in range(attempts):
        port = free_port()
        proc = _launch(nginx, prefix, port, startup_timeout, http2=http2)
        if proc is not None:
            break
    if proc is None:
        raise ProcessStartError(
            f"nginx could not bind a free port in {attempts} attempts\n--- error log ---\n"
            + _read(prefix / "logs" / "error.log")
        )
    try:
        yield NginxBackend(port, prefix, proc, http2=http2)
    finally:
        stop_process(proc, timeout=10.0)
