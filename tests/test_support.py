"""Tests of the end-to-end support code itself (tests/support)."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    BIG_SHA256,
    LOCALHOST,
    MosnpyError,
    NginxBackend,
    PyBackend,
    chunked_body,
    free_port,
    port_is_open,
    run_mosnpy,
    start_py_backend,
    wait_for_port,
)
from tests.support.procs import BACKEND_SCRIPT

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def client() -> httpx.Client:
    # trust_env=False: never route through a proxy from the environment.
    return httpx.Client(trust_env=False, timeout=10.0)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
        capture_output=True,
        timeout=20,
        check=True,
    )


# --------------------------------------------------------------------- ports


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind((LOCALHOST, port))


def test_free_port_fixture(free_port: int) -> None:
    assert 0 < free_port < 65536


def test_wait_for_port_times_out_on_closed_port() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port(port, timeout=0.3)
    assert time.monotonic() - started < 5


def test_wait_for_port_sees_listener() -> None:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        s.listen()
        wait_for_port(s.getsockname()[1], timeout=2)


# --------------------------------------------------------------------- nginx


def test_nginx_serves_index_and_big(nginx_backend: NginxBackend) -> None:
    with client() as c:
        index = c.get(f"{nginx_backend.url}/")
        assert index.status_code == 200
        assert index.content == nginx_backend.index_body
        big = c.get(f"{nginx_backend.url}/big")
    assert big.status_code == 200
    assert len(big.content) == MIB
    assert hashlib.sha256(big.content).hexdigest() == nginx_backend.big_sha256 == BIG_SHA256
    assert big.content == nginx_backend.big_body


def test_nginx_big_with_curl(nginx_backend: NginxBackend) -> None:
    out = curl(f"{nginx_backend.url}/big").stdout
    assert hashlib.sha256(out).hexdigest() == nginx_backend.big_sha256


@pytest.mark.parametrize("code", [404, 500, 503])
def test_nginx_status_locations(nginx_backend: NginxBackend, code: int) -> None:
    with client() as c:
        r = c.get(f"{nginx_backend.url}/status/{code}")
    assert r.status_code == code
    assert r.content == nginx_backend.status_bodies[code]


def test_nginx_dav_put_get_1mib(nginx_backend: NginxBackend) -> None:
    payload = os.urandom(MIB)
    url = f"{nginx_backend.url}/dav/deep/er/upload.bin"
    with client() as c:
        put = c.put(url, content=payload)
        assert put.status_code == 201, put.text
        got = c.get(url)
        assert got.status_code == 200
        assert got.content == payload
        again = c.put(url, content=payload[::-1])
        assert again.status_code == 204
        assert c.get(url).content == payload[::-1]
        assert c.delete(url).status_code == 204
        assert c.get(url).status_code == 404
    assert (nginx_backend.dav_dir / "deep" / "er").is_dir()


def test_nginx_keepalive(nginx_backend: NginxBackend) -> None:
    conn = http.client.HTTPConnection(LOCALHOST, nginx_backend.port, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        sock = conn.sock
        for _ in range(50):
            conn.request("GET", "/")
            r = conn.getresponse()
            assert r.status == 200
            r.read()
        assert conn.sock is sock
    finally:
        conn.close()


# --------------------------------------------------------------------- python backend


def test_py_backend_echo_with_curl(py_backend: PyBackend, tmp_path: Path) -> None:
    payload = os.urandom(256 * 1024)
    body_file = tmp_path / "body.bin"
    body_file.write_bytes(payload)
    headers_file = tmp_path / "headers.txt"
    result = curl(
        "-X",
        "POST",
        "--data-binary",
        f"@{body_file}",
        "-H",
        "X-Test: hello",
        "-H",
        "Content-Type: application/x-test",
        "-D",
        str(headers_file),
        f"{py_backend.url}/echo?x=1",
    )
    assert result.stdout == payload
    head = headers_file.read_text().lower()
    assert "x-echo-x-test: hello" in head
    assert "x-echo-method: post" in head
    assert "x-echo-path: /echo?x=1" in head
    assert "content-type: application/x-test" in head
    assert "x-backend: default" in head


def test_py_backend_echo_with_httpx(py_backend: PyBackend) -> None:
    payload = os.urandom(MIB)
    with client() as c:
        r = c.put(f"{py_backend.url}/echo", content=payload, headers={"X-Foo": "bar"})
        assert r.status_code == 200
        assert r.content == payload
        assert r.headers["x-echo-x-foo"] == "bar"
        assert r.headers["x-echo-method"] == "PUT"
        assert r.headers["x-echo-path"] == "/echo"
        assert r.headers["x-echo-content-length"] == str(MIB)

        # A chunked request body (httpx chunks an iterator of unknown length).
        def parts() -> Iterator[bytes]:
            for i in range(0, len(payload), 100_000):
                yield payload[i : i + 100_000]

        r = c.post(f"{py_backend.url}/echo", content=parts())
        assert r.headers["x-echo-transfer-encoding"] == "chunked"
        assert r.content == payload


def test_py_backend_keepalive_content_length_and_chunked(py_backend: PyBackend) -> None:
    conn = http.client.HTTPConnection(LOCALHOST, py_backend.port, timeout=10)
    try:
        conn.request("POST", "/echo", body=b"first")
        assert conn.getresponse().read() == b"first"
        sock = conn.sock
        conn.request("POST", "/echo", body=iter([b"sec", b"ond"]), encode_chunked=True)
        assert conn.getresponse().read() == b"second"
        conn.request("POST", "/health", body=b"ignored body")
        assert conn.getresponse().read() == b"ok"
        conn.request("GET", "/chunked?n=3&size=2")
        assert conn.getresponse().read() == b"aabbcc"
        assert conn.sock is sock
    finally:
        conn.close()


def test_py_backend_chunked(py_backend: PyBackend) -> None:
    n, size = 7, 3000
    with client() as c:
        r = c.get(f"{py_backend.url}/chunked", params={"n": n, "size": size})
    assert r.status_code == 200
    assert r.headers["transfer-encoding"] == "chunked"
    assert len(r.content) == n * size
    assert r.content == chunked_body(n, size)


def test_py_backend_chunked_with_curl(py_backend: PyBackend) -> None:
    out = curl(f"{py_backend.url}/chunked?n=4&size=1000").stdout
    assert len(out) == 4000


def test_py_backend_endpoints(py_backend: PyBackend) -> None:
    with client() as c:
        assert c.get(f"{py_backend.url}/health").content == b"ok"
        assert c.get(f"{py_backend.url}/").content == b"backend default\n"
        assert c.get(f"{py_backend.url}/any/path").content == b"backend default\n"
        r = c.get(f"{py_backend.url}/status/503")
        assert (r.status_code, r.content) == (503, b"status 503\n")
        assert c.get(f"{py_backend.url}/status/204").status_code == 204
        started = time.monotonic()
        r = c.get(f"{py_backend.url}/slow", params={"ms": 200})
        assert r.content == b"slow"
        assert time.monotonic() - started >= 0.19
        r = c.get(f"{py_backend.url}/close")
        assert r.headers["connection"] == "close"
        assert r.content == b"close\n"
        assert c.get(f"{py_backend.url}/status/abc").status_code == 400


def test_py_backend_close_closes(py_backend: PyBackend) -> None:
    with socket.create_connection((LOCALHOST, py_backend.port), timeout=10) as s:
        s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"close\n")


def test_two_backends_are_distinct() -> None:
    with start_py_backend("one") as one, start_py_backend("two") as two, client() as c:
        assert one.port != two.port
        assert c.get(one.url).content == b"backend one\n"
        r = c.get(two.url)
        assert r.content == b"backend two\n"
        assert r.headers["x-backend"] == "two"
        pid = one.pid
        assert one.stop() is not None
        assert not port_is_open(one.port)
        assert c.get(two.url).status_code == 200
    assert pid > 0


def test_backend_runs_as_module_and_by_path(tmp_path: Path) -> None:
    for argv in (
        [sys.executable, "-m", "tests.support.backend"],
        [sys.executable, str(BACKEND_SCRIPT)],
    ):
        port = free_port()
        log = tmp_path / "out.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*argv, "--port", str(port), "--name", "m"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
            )
        try:
            wait_for_port(port, timeout=10, proc=proc)
            with client() as c:
                assert c.get(f"http://{LOCALHOST}:{port}/").content == b"backend m\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        assert f"listening on {LOCALHOST}:{port}" in log.read_text()


# --------------------------------------------------------------------- run_mosnpy


def _stand_in_argv(port: int) -> list[str]:
    """The Python backend posing as mosnpy, to exercise run_mosnpy's process handling."""
    return [sys.executable, str(BACKEND_SCRIPT), "--port", str(port), "--name", "stand-in"]


def test_run_mosnpy_lifecycle() -> None:
    port = free_port()
    with run_mosnpy({"listeners": []}, ready_port=port, argv=_stand_in_argv(port)) as m:
        assert m.returncode is None
        with client() as c:
            assert c.get(f"http://{LOCALHOST}:{port}/").content == b"backend stand-in\n"
        assert f"listening on {LOCALHOST}:{port}" in m.output()
        assert m.config_path.read_text().startswith("{")
    assert m.returncode == 0  # SIGTERM at exit; the backend exits 0 on it


def test_run_mosnpy_test_may_stop_it() -> None:
    port = free_port()
    with run_mosnpy({}, ready_port=port, argv=_stand_in_argv(port)) as m:
        assert m.stop() == 0
        assert not port_is_open(port)


def test_run_mosnpy_reports_death_during_test() -> None:
    port = free_port()
    with (
        pytest.raises(MosnpyError, match="during the test"),
        run_mosnpy({}, ready_port=port, argv=_stand_in_argv(port)) as m,
    ):
        os.kill(m.pid, signal.SIGKILL)
        m.proc.wait(timeout=10)


def test_run_mosnpy_reports_early_exit_with_log() -> None:
    port = free_port()
    argv = [sys.executable, "-c", "import sys; print('config is broken'); sys.exit(3)"]
    with pytest.raises(MosnpyError, match="config is broken"), run_mosnpy({}, ready_port=port, argv=argv):
        pytest.fail("run_mosnpy should not have yielded")


def test_run_mosnpy_real_cli_bad_config_fails_cleanly() -> None:
    # Whatever state mosnpy's CLI is in, a config that listens nowhere must not come
    # up on the ready port: run_mosnpy raises (exit or timeout) and leaves nothing behind.
    port = free_port()
    with (
        pytest.raises(MosnpyError),
        run_mosnpy({"this is": "not a mosnpy config"}, ready_port=port, startup_timeout=5),
    ):
        pytest.fail("run_mosnpy should not have yielded")
