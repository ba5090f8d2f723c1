"""End to end: HTTP/2 through ``mosnpy -c config.json`` with real clients and backends.

Clients: curl (``--http2-prior-knowledge``, ``--http1.1``, ``--http2``), httpx (h2 and
HTTP/1.1), nghttp, h2load, and a small h2 client on a plain socket (httpx does not show
trailers).  Backends: a private nginx speaking h2c (``start_nginx(..., http2=True)``),
one speaking HTTP/1.1 (the ``nginx_backend`` fixture), and :class:`DualBackend`, an h2c
+ HTTP/1.1 server of this module's own (a thread, h2 library) that sends and reports
trailers, which nginx cannot.

Each mosnpy is a subprocess with one listener (the builder cannot set
``upstream_protocol``), on 127.0.0.1 and a port the test picked, stopped by its pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio

from tests.support import (
    BIG_BODY,
    BIG_SHA256,
    NginxBackend,
    free_port,
    run_mosnpy,
    start_nginx,
)
from tests.support.nginx import INDEX_HTML, STATUS_BODIES

LOCAL = "127.0.0.1"
MiB = 1 << 20
Pairs = list[tuple[str, str]]


# -- mosnpy configs ----------------------------------------------------------------------


def mosn_config(
    port: int,
    *,
    downstream: str,
    upstream: str,
    clusters: dict[str, int],
    routes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A MOSN v2 config: one listener on ``port`` (the given protocols), router ``r``,
    one single-host cluster per ``clusters`` entry (name -> port on 127.0.0.1)."""
    return {
        "servers": [
            {
                "default_log_path": "stdout",
                "default_log_level": "INFO",
                "graceful_timeout": "1s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": routes}],
                    }
                ],
                "listeners": [
                    {
                        "name": "l",
                        "address": f"{LOCAL}:{port}",
                        "bind_port": True,
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {
                                            "downstream_protocol": downstream,
                                            "upstream_protocol": upstream,
                                            "router_config_name": "r",
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": name,
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "connect_timeout": "1s",
                    "hosts": [{"address": f"{LOCAL}:{backend_port}"}],
                }
                for name, backend_port in clusters.items()
            ]
        },
    }


def to(cluster: str, **match: Any) -> dict[str, Any]:
    return {"match": {"prefix": "/", **match}, "route": {"cluster_name": cluster, "timeout": "20s"}}


@dataclass
class Proxy:
    port: int
    proc: Any

    @property
    def url(self) -> str:
        return f"http://{LOCAL}:{self.port}"


@contextlib.contextmanager
def mosnpy(
    downstream: str, upstream: str, clusters: dict[str, int], routes: list[dict[str, Any]]
) -> Iterator[Proxy]:
    port = free_port()
    cfg = mosn_config(port, downstream=downstream, upstream=upstream, clusters=clusters, routes=routes)
    with run_mosnpy(cfg, ready_port=port) as proc:
        yield Proxy(port, proc)


# -- clients -----------------------------------------------------------------------------


def run(
    argv: list[str], *, timeout: float = 30, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)


def curl(*args: str, timeout: float = 30, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return run(["curl", "-sS", "--max-time", str(timeout - 5), *args], timeout=timeout, stdin=stdin)


def curl_status(*args: str, timeout: float = 30, stdin: bytes | None = None) -> tuple[str, bytes]:
    """``"STATUS VERSION"`` (``-w``) and the body, curl's exit status checked."""
    r = curl("-w", "\n%{http_code} %{http_version}", *args, timeout=timeout, stdin=stdin)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    body, _, tail = r.stdout.rpartition(b"\n")
    return tail.decode(), body


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (.ci/run installs nghttp2-client)"
    return path


def text(raw: Iterable[tuple[bytes, bytes]] | None) -> Pairs:
    """h2's header pairs (bytes: ``header_encoding=None``) as latin-1 text."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw or ()]


@dataclass
class Reply:
    status: int
    headers: Pairs
    body: bytes
    trailers: Pairs | None


def h2_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: Pairs | None = None,
    body: bytes = b"",
    trailers: Pairs | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh h2c (prior knowledge) connection, on a plain socket, with
    the response's trailers (which httpx does not show).  ``body`` is small (within the
    default 64 KiB windows)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    with socket.create_connection((LOCAL, port), timeout=timeout) as sock:
        sid = conn.get_next_available_stream_id()
        head = [(":method", method), (":scheme", "http"), (":authority", f"{LOCAL}:{port}"), (":path", path)]
        ends_now = not body and trailers is None
        conn.send_headers(sid, head + (headers or []), end_stream=ends_now)
        if body:
            conn.send_data(sid, body, end_stream=trailers is None)
        if trailers is not None:
            conn.send_headers(sid, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, resp_headers, resp_trailers = 0, [], None
        data = bytearray()
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the connection before the response ended"
            done = False
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    for k, v in text(ev.headers):
                        if k == ":status":
                            status = int(v)
                        else:
                            resp_headers.append((k, v))
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                    resp_trailers = text(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise AssertionError(f"stream reset by the proxy: {ev.error_code!r}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise AssertionError(f"GOAWAY from the proxy: {ev!r}")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if done:
                conn.close_connection()
                sock.sendall(conn.data_to_send())
                return Reply(status, resp_headers, bytes(data), resp_trailers)


def recv_until(sock: socket.socket, buf: bytearray, pred: Any) -> None:
    while not pred(buf):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early; got {bytes(buf)[:500]!r}"
        buf += chunk


def read_http1_response(sock: socket.socket) -> Reply:
    """One HTTP/1.1 response (content-length or chunked, trailers kept) from ``sock``."""
    buf = bytearray()
    recv_until(sock, buf, lambda b: b"\r\n\r\n" in b)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    assert status_line.startswith("HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    hmap = dict(headers)
    buf = bytearray(rest)
    if hmap.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            recv_until(sock, buf, lambda b: b"\r\n" in b)
            line, _, after = bytes(buf).partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            buf = bytearray(after)
            if size == 0:
                recv_until(sock, buf, lambda b: b.startswith(b"\r\n") or b"\r\n\r\n" in b)
                if buf.startswith(b"\r\n"):
                    return Reply(status, headers, bytes(body), None)
                block = bytes(buf).partition(b"\r\n\r\n")[0].decode("latin-1")
                trailers = [
                    (k.strip().lower(), v.strip())
                    for k, _, v in (x.partition(":") for x in block.split("\r\n"))
                ]
                return Reply(status, headers, bytes(body), trailers)
            recv_until(sock, buf, lambda b, n=size: len(b) >= n + 2)
            body += buf[:size]
            buf = buf[size + 2 :]
    length = int(hmap.get("content-length", "0"))
    recv_until(sock, buf, lambda b: len(b) >= length)
    return Reply(status, headers, bytes(buf[:length]), None)


def http1_exchange(port: int, request: bytes, *, timeout: float = 10.0) -> Reply:
    with socket.create_connection((LOCAL, port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_http1_response(sock)


# -- a backend that sends and reports trailers, h2c and HTTP/1.1 on one port ---------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TRAILER_BODY = b"a body followed by trailers\n" * 10
TRAILER_FIELDS: Pairs = [("x-checksum", hashlib.sha256(TRAILER_BODY).hexdigest()), ("x-trailer-two", "2")]


@dataclass
class Seen:
    """A request as the backend received it."""

    proto: str
    method: str
    path: str
    authority: str
    headers: Pairs
    body: bytes = b""
    trailers: Pairs | None = None

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "proto": self.proto,
                "method": self.method,
                "path": self.path,
                "authority": self.authority,
                "headers": self.headers,
                "body_len": len(self.body),
                "body_sha256": hashlib.sha256(self.body).hexdigest(),
                "trailers": self.trailers,
            }
        ).encode()


@dataclass
class DualBackend:
    """h2c (prior knowledge) and HTTP/1.1 on one 127.0.0.1 port, sniffed by the preface.

    ``/trailers``: 200, :data:`TRAILER_BODY` with no content-length, then the trailers
    :data:`TRAILER_FIELDS` (HTTP/1.1: chunked).  Anything else: 200 with a JSON report
    of the request received (:meth:`Seen.as_json`), content-length set.
    """

    sock: socket.socket = field(default_factory=lambda: socket.create_server((LOCAL, 0)))
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    conns: list[socket.socket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self.sock.settimeout(0.1)
        t = threading.Thread(target=self._accept, name="dual-backend-accept", daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(timeout=5)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.lock:
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="dual-backend-conn", daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            first = bytearray()
            while len(first) < len(PREFACE) and PREFACE.startswith(bytes(first)):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                first += chunk
            if first.startswith(PREFACE):
                self._serve_h2(conn, bytes(first))
            else:
                self._serve_h1(conn, first)
        except OSError:
            pass
        except Exception as exc:  # reported by the test that uses the backend
            self.errors.append(f"{type(exc).__name__}: {exc}")

    # HTTP/2 -----------------------------------------------------------------------------

    def _serve_h2(self, conn: socket.socket, first: bytes) -> None:
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        streams: dict[int, Seen] = {}
        data = first
        while True:
            for ev in h2c.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    pairs = text(ev.headers)
                    pseudo = {k: v for k, v in pairs if k.startswith(":")}
                    regular = [(k, v) for k, v in pairs if not k.startswith(":")]
                    streams[ev.stream_id] = Seen(
                        "h2", pseudo[":method"], pseudo[":path"], pseudo.get(":authority", ""), regular
                    )
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id].body += ev.data
                    h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    streams[ev.stream_id].trailers = text(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    self._answer_h2(h2c, ev.stream_id, streams.pop(ev.stream_id))
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    conn.sendall(h2c.data_to_send())
                    return
            out = h2c.data_to_send()
            if out:
                conn.sendall(out)
            data = conn.recv(65536)
            if not data:
                return

    def _answer_h2(self, h2c: h2.connection.H2Connection, sid: int, seen: Seen) -> None:
        if seen.path == "/trailers":
            h2c.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            h2c.send_data(sid, TRAILER_BODY)
            h2c.send_headers(sid, TRAILER_FIELDS, end_stream=True)
            return
        report = seen.as_json()
        h2c.send_headers(
            sid,
            [(":status", "200"), ("content-type", "application/json"), ("content-length", str(len(report)))],
        )
        h2c.send_data(sid, report, end_stream=True)

    # HTTP/1.1 ---------------------------------------------------------------------------

    def _serve_h1(self, conn: socket.socket, buf: bytearray) -> None:
        def need(pred: Any) -> bool:
            while not pred(buf):
                chunk = conn.recv(65536)
                if not chunk:
                    return False
                buf.extend(chunk)
            return True

        while True:
            if not need(lambda b: b"\r\n\r\n" in b):
                return
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            buf[:] = rest
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ")
            headers = [(k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
            hmap = dict(headers)
            seen = Seen("http/1.1", method, path, hmap.get("host", ""), headers)
            if hmap.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if hmap.get("transfer-encoding", "").lower() == "chunked":
                body = bytearray()
                while True:
                    if not need(lambda b: b"\r\n" in b):
                        return
                    line, _, after = bytes(buf).partition(b"\r\n")
                    buf[:] = after
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        if not need(lambda b: b.startswith(b"\r\n") or b"\r\n\r\n" in b):
                            return
                        if buf.startswith(b"\r\n"):
                            del buf[:2]
                        else:
                            block, _, after = bytes(buf).partition(b"\r\n\r\n")
                            buf[:] = after
                            seen.trailers = [
                                (k.strip().lower(), v.strip())
                                for k, _, v in (
                                    x.partition(":") for x in block.decode("latin-1").split("\r\n")
                                )
                            ]
                        break
                    if not need(lambda b, n=size: len(b) >= n + 2):
                        return
                    body += buf[:size]
                    del buf[: size + 2]
                seen.body = bytes(body)
            else:
                length = int(hmap.get("content-length", "0"))
                if not need(lambda b, n=length: len(b) >= n):
                    return
                seen.body = bytes(buf[:length])
                del buf[:length]
            if path == "/trailers":
                trailer_block = "".join(f"{k}: {v}\r\n" for k, v in TRAILER_FIELDS).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n"
                    b"trailer: x-checksum, x-trailer-two\r\n\r\n"
                    + b"%x\r\n%b\r\n" % (len(TRAILER_BODY), TRAILER_BODY)
                    + b"0\r\n"
                    + trailer_block
                    + b"\r\n"
                )
            else:
                report = seen.as_json()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                    % (len(report), report)
                )
            if hmap.get("connection", "").lower() == "close":
                return


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_h2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxBackend]:
    """A private nginx speaking h2c (prior knowledge) only."""
    with start_nginx(tmp_path_factory.mktemp("nginx-h2"), http2=True) as server:
        yield server


@pytest.fixture(scope="module")
def dual() -> Iterator[DualBackend]:
    backend = DualBackend()
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
    assert backend.errors == []


@pytest.fixture(scope="module")
def h2_proxy(nginx_h2: NginxBackend) -> Iterator[Proxy]:
    """Http2 listener, upstream as downstream, to the h2c nginx."""
    with mosnpy("Http2", "Auto", {"nginx": nginx_h2.port}, [to("nginx")]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def h1_to_h2_proxy(nginx_h2: NginxBackend) -> Iterator[Proxy]:
    """Http1 listener, upstream Http2, to the h2c nginx."""
    with mosnpy("Http1", "Http2", {"nginx": nginx_h2.port}, [to("nginx")]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def h2_to_h1_proxy(nginx_backend: NginxBackend) -> Iterator[Proxy]:
    """Http2 listener, upstream Http1, to the HTTP/1.1 nginx."""
    with mosnpy("Http2", "Http1", {"nginx": nginx_backend.port}, [to("nginx")]) as proxy:
        yield proxy


def get_json(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply
    return dict(json.loads(reply.body))


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# == HTTP/2 end to end: curl, httpx, nghttp, h2load =====================================


def test_curl_h2_get_index_with_headers_over_http2(h2_proxy: Proxy) -> None:
    r = curl("-v", "--http2-prior-knowledge", f"{h2_proxy.url}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == INDEX_HTML
    err = r.stderr.decode()
    assert "> GET / HTTP/2\r\n" in err, err
    assert "< HTTP/2 200 \r\n" in err, err
    assert "< server: nginx\r\n" in err, err
    assert "< content-type: text/html\r\n" in err, err
    assert f"< content-length: {len(INDEX_HTML)}\r\n" in err, err
    assert re.search(r"< etag: \"[0-9a-f]+-45\"\r\n", err), err


def test_curl_h2_big_and_status(h2_proxy: Proxy) -> None:
    r = curl("--http2-prior-knowledge", f"{h2_proxy.url}/big")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256
    assert curl_status("--http2-prior-knowledge", f"{h2_proxy.url}/status/404") == (
        "404 2",
        STATUS_BODIES[404],
    )
    assert curl_status("--http2-prior-knowledge", f"{h2_proxy.url}/status/503") == (
        "503 2",
        STATUS_BODIES[503],
    )
    assert curl_status("--http2-prior-knowledge", f"{h2_proxy.url}/nope")[0] == "404 2"


def test_curl_h2_upload_without_content_length(h2_proxy: Proxy) -> None:
    """curl -T - sends DATA frames with no content-length; nginx DAV stores them."""
    payload = random_bytes(3 * MiB + 123, 1)
    status, _ = curl_status(
        "--http2-prior-knowledge", "-T", "-", f"{h2_proxy.url}/dav/h2-stdin.bin", stdin=payload
    )
    assert status in ("201 2", "204 2")
    r = curl("--http2-prior-knowledge", f"{h2_proxy.url}/dav/h2-stdin.bin")
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_httpx_h2_fifty_concurrent_gets_on_one_connection(h2_proxy: Proxy) -> None:
    paths = ["/", "/big", "/status/404", "/status/500", "/"] * 10
    results: dict[int, httpx.Response] = {}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        http1=False, http2=True, limits=limits, base_url=h2_proxy.url, timeout=20
    ) as client:

        async def one(i: int) -> None:
            results[i] = await client.get(paths[i])

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                for i in range(len(paths)):
                    nursery.start_soon(one, i)
    assert len(results) == 50
    for i, path in enumerate(paths):
        r = results[i]
        assert r.http_version == "HTTP/2"
        if path == "/":
            assert (r.status_code, r.content) == (200, INDEX_HTML)
        elif path == "/big":
            assert r.status_code == 200
            assert hashlib.sha256(r.content).hexdigest() == BIG_SHA256
        else:
            code = int(path.rsplit("/", 1)[1])
            assert (r.status_code, r.content) == (code, STATUS_BODIES[code])


async def test_httpx_h2_8mib_put_then_get(h2_proxy: Proxy) -> None:
    payload = random_bytes(8 * MiB, 2)
    async with httpx.AsyncClient(http1=False, http2=True, base_url=h2_proxy.url, timeout=30) as client:
        with trio.fail_after(50):
            r = await client.put("/dav/httpx-8m.bin", content=payload)
            assert r.http_version == "HTTP/2"
            assert r.status_code in (201, 204), r.text
            r = await client.get("/dav/httpx-8m.bin")
    assert r.status_code == 200
    assert len(r.content) == len(payload)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_nghttp_get(h2_proxy: Proxy) -> None:
    r = run([tool("nghttp"), "-nv", f"{h2_proxy.url}/"], timeout=20)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "recv SETTINGS frame" in out
    # nghttp opens its priority-tree streams first: the request is not stream 1
    match = re.search(r"recv \(stream_id=(\d+)\) :status: 200\n", out)
    assert match, out
    sid = match.group(1)
    assert f"recv (stream_id={sid}) content-length: {len(INDEX_HTML)}\n" in out, out
    assert f"recv DATA frame <length={len(INDEX_HTML)}, flags=0x01, stream_id={sid}>" in out, out


@pytest.mark.timeout(120)
def test_h2load_2000_requests(h2_proxy: Proxy) -> None:
    r = run([tool("h2load"), "-n", "2000", "-c", "4", "-m", "10", f"{h2_proxy.url}/"], timeout=100)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert re.search(
        r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout", out
    ), out
    assert re.search(r"status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx", out), out


# == conversion: HTTP/1.1 client -> Http1 listener -> HTTP/2 upstream (nginx h2c) =========


def test_h1_to_h2_get_big_and_status(h1_to_h2_proxy: Proxy) -> None:
    url = h1_to_h2_proxy.url
    r = curl("-v", "--http1.1", f"{url}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == INDEX_HTML
    err = r.stderr.decode()
    assert "< HTTP/1.1 200 OK\r\n" in err, err
    assert f"< content-length: {len(INDEX_HTML)}\r\n" in err.lower(), err
    r = curl("--http1.1", f"{url}/big")
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256
    assert curl_status("--http1.1", f"{url}/status/404") == ("404 1.1", STATUS_BODIES[404])
    with httpx.Client(base_url=url, timeout=20) as client:
        for _ in range(5):
            r2 = client.get("/")
            assert (r2.http_version, r2.status_code, r2.content) == ("HTTP/1.1", 200, INDEX_HTML)
        assert hashlib.sha256(client.get("/big").content).hexdigest() == BIG_SHA256


def test_h1_to_h2_chunked_upload_with_curl(h1_to_h2_proxy: Proxy) -> None:
    payload = random_bytes(2 * MiB + 7, 3)
    status, _ = curl_status("--http1.1", "-T", "-", f"{h1_to_h2_proxy.url}/dav/h1-chunked.bin", stdin=payload)
    assert status in ("201 1.1", "204 1.1")
    r = curl("--http1.1", f"{h1_to_h2_proxy.url}/dav/h1-chunked.bin")
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_h1_to_h2_chunked_upload_with_httpx_generator(h1_to_h2_proxy: Proxy) -> None:
    payload = random_bytes(5 * MiB, 4)
    pieces = [payload[i : i + 100_000] for i in range(0, len(payload), 100_000)]
    with httpx.Client(base_url=h1_to_h2_proxy.url, timeout=30) as client:
        r = client.put("/dav/h1-gen.bin", content=iter(pieces))
        assert r.status_code in (201, 204), r.text
        r = client.get("/dav/h1-gen.bin")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_h1_to_h2_content_length_upload(h1_to_h2_proxy: Proxy, tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(BIG_BODY)
    status, _ = curl_status("--http1.1", "-T", str(src), f"{h1_to_h2_proxy.url}/dav/h1-len.bin")
    assert status in ("201 1.1", "204 1.1")
    r = curl("--http1.1", f"{h1_to_h2_proxy.url}/dav/h1-len.bin")
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256


# == conversion: HTTP/2 client -> Http2 listener -> HTTP/1.1 upstream (plain nginx) =======


def test_h2_to_h1_get_big_and_status(h2_to_h1_proxy: Proxy) -> None:
    url = h2_to_h1_proxy.url
    r = curl("-v", "--http2-prior-knowledge", f"{url}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == INDEX_HTML
    err = r.stderr.decode()
    assert "< HTTP/2 200 \r\n" in err, err
    assert "< server: nginx\r\n" in err, err
    assert "< connection:" not in err.lower() and "< keep-alive:" not in err.lower(), err
    r = curl("--http2-prior-knowledge", f"{url}/big")
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256
    assert curl_status("--http2-prior-knowledge", f"{url}/status/404") == ("404 2", STATUS_BODIES[404])
    assert curl_status("--http2-prior-knowledge", f"{url}/status/502") == ("502 2", STATUS_BODIES[502])


async def test_h2_to_h1_httpx_upload_and_concurrent_gets(h2_to_h1_proxy: Proxy) -> None:
    payload = random_bytes(8 * MiB, 5)
    async with httpx.AsyncClient(http1=False, http2=True, base_url=h2_to_h1_proxy.url, timeout=30) as client:
        with trio.fail_after(50):
            r = await client.put("/dav/h2-to-h1.bin", content=payload)
            assert (r.http_version, r.status_code in (201, 204)) == ("HTTP/2", True), r.text
            r = await client.get("/dav/h2-to-h1.bin")
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(payload).hexdigest()
            got: list[bytes] = []

            async def one() -> None:
                got.append((await client.get("/")).content)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
    assert got == [INDEX_HTML] * 20


def test_h2_to_h1_upload_without_content_length(h2_to_h1_proxy: Proxy) -> None:
    """No content-length on HTTP/2: the HTTP/1.1 request to nginx must be chunked."""
    payload = random_bytes(MiB + 5, 6)
    url = h2_to_h1_proxy.url
    status, _ = curl_status(
        "--http2-prior-knowledge", "-T", "-", f"{url}/dav/h2-to-h1-stdin.bin", stdin=payload
    )
    assert status in ("201 2", "204 2")
    r = curl("--http2-prior-knowledge", f"{url}/dav/h2-to-h1-stdin.bin")
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


# == trailers and header conversion (DualBackend) =========================================


def test_h2_response_trailers_reach_h2_client(dual: DualBackend) -> None:
    with mosnpy("Http2", "Auto", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = h2_request(proxy.port, "GET", "/trailers", headers=[("te", "trailers")])
    assert reply.status == 200
    assert reply.body == TRAILER_BODY
    assert reply.trailers == TRAILER_FIELDS


def test_h2_request_trailers_and_headers_reach_h2_backend(dual: DualBackend) -> None:
    body = b"request body with trailers\n" * 5
    with mosnpy("Http2", "Auto", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = h2_request(
            proxy.port,
            "POST",
            "/echo?q=1",
            headers=[("te", "trailers"), ("x-custom", "v1"), ("content-type", "text/plain")],
            body=body,
            trailers=[("x-req-checksum", "abc123"), ("x-req-two", "2")],
        )
    seen = get_json(reply)
    assert seen["proto"] == "h2"
    assert (seen["method"], seen["path"]) == ("POST", "/echo?q=1")
    assert seen["authority"] == f"{LOCAL}:{proxy.port}"
    headers = dict(seen["headers"])
    assert headers["te"] == "trailers"
    assert headers["x-custom"] == "v1"
    assert "host" not in headers  # :authority carries it on HTTP/2
    assert (seen["body_len"], seen["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert seen["trailers"] == [["x-req-checksum", "abc123"], ["x-req-two", "2"]]


def test_h1_chunked_request_trailers_become_h2_trailers(dual: DualBackend) -> None:
    """HTTP/1.1 chunked request with trailers -> Http1 listener, upstream Http2: the
    backend gets HTTP/2 trailers, :authority from Host, no hop-by-hop headers."""
    with mosnpy("Http1", "Http2", {"dual": dual.port}, [to("dual")]) as proxy:
        request = (
            b"POST /echo HTTP/1.1\r\n"
            b"Host: example.test:8080\r\n"
            b"Connection: keep-alive, x-hop\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"X-Hop: dropped\r\n"
            b"TE: trailers, deflate\r\n"
            b"Trailer: x-req-checksum\r\n"
            b"X-Custom: kept\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n"
            b"5\r\nhello\r\n"
            b"7\r\n world!\r\n"
            b"0\r\n"
            b"x-req-checksum: 42\r\n"
            b"x-req-two: two\r\n"
            b"\r\n"
        )
        reply = http1_exchange(proxy.port, request)
    seen = get_json(reply)
    assert seen["proto"] == "h2"
    assert (seen["method"], seen["path"], seen["authority"]) == ("POST", "/echo", "example.test:8080")
    headers = dict(seen["headers"])
    assert headers["x-custom"] == "kept"
    for hop in ("host", "connection", "keep-alive", "x-hop", "transfer-encoding", "trailer", "upgrade"):
        assert hop not in headers, (hop, seen["headers"])
    assert headers.get("te", "trailers") == "trailers"  # dropped or exactly "trailers"
    assert seen["body_len"] == 12
    assert seen["body_sha256"] == hashlib.sha256(b"hello world!").hexdigest()
    assert seen["trailers"] == [["x-req-checksum", "42"], ["x-req-two", "two"]]


def test_h1_te_trailers_is_kept_as_trailers_on_h2(dual: DualBackend) -> None:
    """``te: trailers`` is the one TE value HTTP/2 allows (gRPC needs it): an HTTP/1.1
    client's ``TE: trailers, deflate`` reaches the HTTP/2 upstream as ``te: trailers``."""
    with mosnpy("Http1", "Http2", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = http1_exchange(
            proxy.port, b"GET /echo HTTP/1.1\r\nHost: h\r\nTE: trailers, deflate\r\nConnection: TE\r\n\r\n"
        )
    headers = dict(get_json(reply)["headers"])
    assert headers.get("te") == "trailers", headers


def test_h2_response_trailers_reach_h1_client_chunked(dual: DualBackend) -> None:
    with mosnpy("Http1", "Http2", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = http1_exchange(proxy.port, b"GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
    assert reply.status == 200
    assert dict(reply.headers).get("transfer-encoding") == "chunked", reply.headers
    assert reply.body == TRAILER_BODY
    assert reply.trailers == TRAILER_FIELDS


def test_h1_response_trailers_reach_h2_client(dual: DualBackend) -> None:
    with mosnpy("Http2", "Http1", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = h2_request(proxy.port, "GET", "/trailers", headers=[("te", "trailers")])
    assert reply.status == 200
    assert reply.body == TRAILER_BODY
    assert reply.trailers == TRAILER_FIELDS


def test_h2_request_trailers_become_h1_chunked_trailers(dual: DualBackend) -> None:
    body = b"0123456789" * 100
    with mosnpy("Http2", "Http1", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = h2_request(
            proxy.port,
            "PUT",
            "/echo",
            headers=[("te", "trailers"), ("x-custom", "v2")],
            body=body,
            trailers=[("x-req-checksum", "99")],
        )
    seen = get_json(reply)
    assert seen["proto"] == "http/1.1"
    assert (seen["method"], seen["path"], seen["authority"]) == ("PUT", "/echo", f"{LOCAL}:{proxy.port}")
    headers = dict(seen["headers"])
    assert headers["x-custom"] == "v2"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert (seen["body_len"], seen["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert seen["trailers"] == [["x-req-checksum", "99"]]


# == protocol detection on one port ======================================================


def test_auto_listener_serves_h2_and_h1_on_one_port(
    nginx_h2: NginxBackend, nginx_backend: NginxBackend
) -> None:
    """``Auto`` (upstream as downstream): h2 requests go to the h2c nginx, HTTP/1.1
    ones (header ``x-proto: h1``) to the HTTP/1.1 nginx."""
    routes = [to("h1", headers=[{"name": "x-proto", "value": "h1"}]), to("h2")]
    with mosnpy("Auto", "Auto", {"h1": nginx_backend.port, "h2": nginx_h2.port}, routes) as proxy:
        for _ in range(2):
            assert curl_status("--http2-prior-knowledge", f"{proxy.url}/") == ("200 2", INDEX_HTML)
            assert curl_status("--http1.1", "-H", "x-proto: h1", f"{proxy.url}/") == ("200 1.1", INDEX_HTML)
        r = curl("--http2-prior-knowledge", f"{proxy.url}/big")
        assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256
        r = curl("--http1.1", "-H", "x-proto: h1", f"{proxy.url}/big")
        assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256


def test_http1_http2_listener_with_http1_upstream(nginx_backend: NginxBackend) -> None:
    with mosnpy("Http1,Http2", "Http1", {"h1": nginx_backend.port}, [to("h1")]) as proxy:
        assert curl_status("--http2-prior-knowledge", f"{proxy.url}/") == ("200 2", INDEX_HTML)
        assert curl_status("--http1.1", f"{proxy.url}/") == ("200 1.1", INDEX_HTML)
        assert curl_status("--http2-prior-knowledge", f"{proxy.url}/status/404") == (
            "404 2",
            STATUS_BODIES[404],
        )
        assert curl_status("--http1.1", f"{proxy.url}/status/404") == ("404 1.1", STATUS_BODIES[404])
        # curl --http2 on http:// asks for "Upgrade: h2c": the answer stays HTTP/1.1
        r = curl("-v", "--http2", f"{proxy.url}/")
        assert r.returncode == 0, r.stderr
        err = r.stderr.decode()
        assert "> Upgrade: h2c\r\n" in err, err
        assert "< HTTP/1.1 200 OK\r\n" in err, err
        assert "< HTTP/1.1 101" not in err, err
        assert r.stdout == INDEX_HTML


def test_upgrade_h2c_is_answered_in_http1_when_upstream_is_http2(h1_to_h2_proxy: Proxy) -> None:
    r = curl("-v", "--http2", f"{h1_to_h2_proxy.url}/")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "> Upgrade: h2c\r\n" in err, err
    assert "< HTTP/1.1 200 OK\r\n" in err, err
    assert "< HTTP/1.1 101" not in err, err
    assert r.stdout == INDEX_HTML


def test_upgrade_h2c_to_h2_backend_drops_upgrade_headers(dual: DualBackend) -> None:
    with mosnpy("Http1", "Http2", {"dual": dual.port}, [to("dual")]) as proxy:
        reply = http1_exchange(
            proxy.port,
            b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        )
    assert reply.status == 200
    seen = get_json(reply)
    assert seen["proto"] == "h2"
    names = {k for k, _ in seen["headers"]}
    assert not names & {"connection", "upgrade", "http2-settings", "host"}, seen["headers"]
