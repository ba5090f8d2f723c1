"""A real HTTP/1.1 backend for end-to-end tests (standard library only).

Run it as ``python -m tests.support.backend --port N --name NAME`` from the repository
root, or by file path (``python tests/support/backend.py ...``): it imports nothing from
the project.  It listens on 127.0.0.1 only.  ``--port 0`` picks a free port; the bound
port is printed as ``listening on 127.0.0.1:PORT`` and, with ``--port-file PATH``,
written to PATH (atomically) so a parent process can wait for it without a race.

Endpoints (any method, every response carries ``x-backend: NAME``):

``/echo``
    200, the request body as-is; every request header comes back as
    ``x-echo-<lower-case name>`` (one response header per request header line), plus
    ``x-echo-method`` and ``x-echo-path`` (the raw request-target, query included).
``/slow?ms=N``
    prints ``slow request started: <request-target>`` on stdout, sleeps N ms (capped
    at 60 s), then 200 ``slow``.
``/status/N``
    status N (200..599) with body ``status N\\n`` (no body for 204 and 304).
``/close``
    200 ``close\\n`` with ``Connection: close``; the server then closes the connection.
``/chunked?n=K&size=S``
    200 with ``Transfer-Encoding: chunked``: K chunks of S bytes; chunk i is S copies of
    the letter ``chr(ord("a") + i % 26)`` (see :func:`chunk_payload`).
``/health``
    200 ``ok``.
anything else
    200 ``backend NAME\\n``.

Request bodies are read whether the endpoint uses them or not (Content-Length or
chunked, ``Expect: 100-continue`` honoured), so keep-alive works on every endpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import socketserver
import sys
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

LISTEN_HOST = "127.0.0.1"
MAX_SLOW_MS = 60_000
MAX_BODY = 64 * 1024 * 1024
MAX_CHUNKS = 100_000
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_LINE = 4096
MAX_TRAILERS = 100
#: printed (with the request-target) when a ``/slow`` request starts sleeping
SLOW_STARTED = "slow request started:"


def chunk_payload(index: int, size: int) -> bytes:
    """The bytes of chunk ``index`` sent by ``/chunked`` for chunks of ``size`` bytes."""
    return bytes([ord("a") + index % 26]) * size


def chunked_body(n: int, size: int) -> bytes:
    """The whole decoded body ``/chunked?n=N&size=SIZE`` sends."""
    return b"".join(chunk_payload(i, size) for i in range(n))


class BadRequest(Exception):
    """The request could not be parsed; answered with 400 and the connection closed."""


class BackendServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, port: int, name: str, *, verbose: bool = False) -> None:
        self.backend_name = name
        self.verbose = verbose
        super().__init__((LISTEN_HOST, port), BackendHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a DNS look-up we don't want.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LISTEN_HOST
        self.server_port = int(self.server_address[1])


class BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mosnpy-test-backend"
    sys_version = ""
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 60

    @property
    def backend(self) -> BackendServer:
        server = self.server
        assert isinstance(server, BackendServer)
        return server

    def __getattr__(self, name: str) -> Callable[[], None]:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; accept every method.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:
        if self.backend.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ request body

    def _read_line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadRequest("line too long")
        if not line.endswith(b"\n"):
            raise BadRequest("connection closed inside a chunked body")
        return line

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise BadRequest(f"connection closed after {len(data)} of {n} body bytes")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_field = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise BadRequest(f"bad chunk size {size_field!r}") from None
            if size < 0:
                raise BadRequest("negative chunk size")
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            parts.append(self._read_exact(size))
            if self._read_line().strip() != b"":
                raise BadRequest("chunk not followed by CRLF")
        for _ in range(MAX_TRAILERS):
            if self._read_line().strip() == b"":
                return b"".join(parts)
        raise BadRequest("too many trailer lines")

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] != "chunked":
                raise BadRequest(f"unsupported Transfer-Encoding {te!r}")
            return self._read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            length = int(cl.strip())
        except ValueError:
            raise BadRequest(f"bad Content-Length {cl!r}") from None
        if length < 0 or length > MAX_BODY:
            raise BadRequest(f"bad Content-Length {cl!r}")
        return self._read_exact(length)

    # ------------------------------------------------------------------ responses

    def _respond(
        self,
        status: int,
        body: bytes,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("x-backend", self.backend.backend_name)
        for name, value in headers:
            self.send_header(name, value)
        bodiless_status = status in (204, 304)
        if not bodiless_status:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and not bodiless_status:
            self.wfile.write(body)

    def _respond_chunked(self, n: int, size: int) -> None:
        if self.request_version == "HTTP/1.0":
            # HTTP/1.0 has no chunked coding: send the same bytes with a length.
            self._respond(200, chunked_body(n, size), content_type="application/octet-stream")
            return
        self.send_response(200)
        self.send_header("x-backend", self.backend.backend_name)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        if size > 0:
            for i in range(n):
                self.wfile.write(b"%x\r\n" % size + chunk_payload(i, size) + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
        raw = query.get(name, [str(default)])[0]
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name}={raw!r} is not an integer") from None
        if not lo <= value <= hi:
            raise BadRequest(f"{name}={value} is outside {lo}..{hi}")
        return value

    def _handle(self) -> None:
        try:
            body = self._read_body()
            self._route(body)
        except BadRequest as exc:
            self._respond(400, f"bad request: {exc}\n".encode(), close=True)

    def _route(self, body: bytes) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        if path == "/echo":
            echoed = [(f"x-echo-{k.lower()}", v) for k, v in self.headers.items()]
            echoed += [("x-echo-method", self.command), ("x-echo-path", self.path)]
            content_type = self.headers.get("Content-Type", "application/octet-stream")
            self._respond(200, body, headers=echoed, content_type=content_type)
        elif path == "/slow":
            ms = self._int_param(query, "ms", 0, 0, MAX_SLOW_MS)
            # A test can wait for this line to know the request is here (PyBackend.wait_for_output).
            sys.stdout.write(f"{SLOW_STARTED} {self.path}\n")
            sys.stdout.flush()
            time.sleep(ms / 1000)
            self._respond(200, b"slow")
        elif path.startswith("/status/"):
            try:
                status = int(path[len("/status/") :])
            except ValueError:
                raise BadRequest(f"bad status in {path!r}") from None
            if not 200 <= status <= 599:
                raise BadRequest(f"status {status} is outside 200..599")
            self._respond(status, f"status {status}\n".encode())
        elif path == "/close":
            self._respond(200, b"close\n", close=True)
        elif path == "/chunked":
            n = self._int_param(query, "n", 1, 0, MAX_CHUNKS)
            size = self._int_param(query, "size", 1, 0, MAX_CHUNK_SIZE)
            self._respond_chunked(n, size)
        elif path == "/health":
            self._respond(200, b"ok")
        else:
            self._respond(200, f"backend {self.backend.backend_name}\n".encode())


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP/1.1 test backend on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick one)")
    parser.add_argument("--name", default="backend", help="name shown in bodies and x-backend")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = BackendServer(args.port, args.name, verbose=args.verbose)
    with server:
        port = server.server_port
        if args.port_file:
            _write_port_file(args.port_file, port)
        print(f"listening on {LISTEN_HOST}:{port}", flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
