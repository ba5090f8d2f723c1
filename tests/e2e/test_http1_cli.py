"""End to end: ``mosnpy -c config.json`` in front of real nginx and Python backends.

Every client here is a real one (curl, httpx, raw sockets, wrk) talking to a real
mosnpy process over 127.0.0.1 on ports the test picked.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.support import NginxBackend, PyBackend, free_port, run_mosnpy, start_py_backend


def http_config(
    port: int, clusters: dict[str, list[str]], routes: list[dict[str, Any]], **listener: Any
) -> dict[str, Any]:
    """A MOSN v2 config: one Http1 listener on ``port``, router ``r``."""
    return {
        "servers": [
            {
                "default_log_path": "stdout",
                "default_log_level": "INFO",
                "graceful_timeout": "2s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": routes}],
                    }
                ],
                "listeners": [
                    {
                        "name": "http",
                        "address": f"127.0.0.1:{port}",
                        "bind_port": True,
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {"downstream_protocol": "Http1", "router_config_name": "r"},
                                    }
                                ]
                            }
                        ],
                        **listener,
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
                    "hosts": [{"address": a} for a in hosts],
                }
                for name, hosts in clusters.items()
            ]
        },
    }


def to(cluster: str, prefix: str = "/", **route: Any) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "route": {"cluster_name": cluster, **route}}


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout, check=False)


def raw_exchange(port: int, data: bytes, *, until_close: bool = True, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not until_close:
                break
        return b"".join(chunks)


# -- nginx ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_proxy(nginx_backend: NginxBackend) -> Any:
    port = free_port()
    cfg = http_config(port, {"nginx": [f"127.0.0.1:{nginx_backend.port}"]}, [to("nginx")])
    with run_mosnpy(cfg, ready_port=port) as proc:
        proc.port = port  # type: ignore[attr-defined]
        yield proc


def test_curl_get_and_big_response(nginx_proxy: Any, nginx_backend: NginxBackend) -> None:
    url = f"http://127.0.0.1:{nginx_proxy.port}"
    r = curl(f"{url}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == nginx_backend.index_body
    r = curl(f"{url}/big")
    assert hashlib.sha256(r.stdout).hexdigest() == nginx_backend.big_sha256


def test_big_upload_round_trip_with_100_continue(
    nginx_proxy: Any, nginx_backend: NginxBackend, tmp_path: Any
) -> None:
    url = f"http://127.0.0.1:{nginx_proxy.port}"
    payload = tmp_path / "up.bin"
    payload.write_bytes(nginx_backend.big_body)
    started = time.monotonic()
    # curl sends "Expect: 100-continue" for a body this big and waits up to 1 s for 100.
    r = curl(
        "-T",
        str(payload),
        "-H",
        "Expect: 100-continue",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        f"{url}/dav/up.bin",
    )
    elapsed = time.monotonic() - started
    assert r.stdout in (b"201", b"204"), r.stderr
    assert elapsed < 0.9, "proxy did not answer 100-continue (curl waited for its timeout)"
    r = curl(f"{url}/dav/up.bin")
    assert r.stdout == nginx_backend.big_body


def test_keep_alive_with_httpx(nginx_proxy: Any, nginx_backend: NginxBackend) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{nginx_proxy.port}") as client:
        for _ in range(20):
            r = client.get("/")
            assert r.status_code == 200
            assert r.content == nginx_backend.index_body
        r = client.get("/big")
        assert r.content == nginx_backend.big_body


@pytest.mark.parametrize("status", [404, 500, 503])
def test_upstream_error_status_passed_through(
    nginx_proxy: Any, nginx_backend: NginxBackend, status: int
) -> None:
    r = httpx.get(f"http://127.0.0.1:{nginx_proxy.port}/status/{status}")
    assert r.status_code == status
    assert r.content == nginx_backend.status_bodies[status]


def test_pipelining_ten_deep_to_nginx(nginx_proxy: Any, nginx_backend: NginxBackend) -> None:
    paths = [
        "/",
        "/status/404",
        "/status/500",
        "/",
        "/status/503",
        "/big",
        "/status/502",
        "/",
        "/status/504",
        "/",
    ]
    burst = b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths)
    burst += b"GET /status/404 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(nginx_proxy.port, burst, timeout=10)
    seen = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
    assert seen == [200, 404, 500, 200, 503, 200, 502, 200, 504, 200, 404]
    assert nginx_backend.big_body in reply  # the 1 MiB body sits intact in the stream


def test_wrk_load(nginx_proxy: Any) -> None:
    wrk = shutil.which("wrk")
    assert wrk is not None, "wrk is not installed (.ci/run installs it)"
    r = subprocess.run(
        [wrk, "-t1", "-c8", "-d1s", f"http://127.0.0.1:{nginx_proxy.port}/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out = r.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    assert requests > 100, out
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out


def test_malformed_request_gets_400_and_close(nginx_proxy: Any) -> None:
    reply = raw_exchange(nginx_proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 "), reply


def test_oversized_headers_get_431(nginx_proxy: Any) -> None:
    big = b"x-big: " + b"a" * 20000 + b"\r\n"
    reply = raw_exchange(nginx_proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]


# -- Python backend: ordering, retries, timeouts ------------------------------------------


def test_pipelining_ten_deep_keeps_order(py_backend: PyBackend) -> None:
    port = free_port()
    with run_mosnpy(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")]), ready_port=port):
        codes = list(range(200, 210))
        burst = b"".join(f"GET /status/{c} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for c in codes)
        burst += b"GET /status/299 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        reply = raw_exchange(port, burst, timeout=10)
        seen = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
        assert seen == [*codes, 299]


def test_echo_big_body_with_httpx(py_backend: PyBackend) -> None:
    port = free_port()
    with run_mosnpy(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")]), ready_port=port):
        body = bytes(range(256)) * 4096  # 1 MiB
        r = httpx.post(f"http://127.0.0.1:{port}/echo", content=body, headers={"x-test": "yes"}, timeout=20)
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["x-echo-x-test"] == "yes"
        # chunked request body (a generator has no length) and chunked response
        r = httpx.post(
            f"http://127.0.0.1:{port}/echo", content=iter([body[:1000], body[1000:5000]]), timeout=20
        )
        assert r.content == body[:5000]
        r = httpx.get(f"http://127.0.0.1:{port}/chunked?n=50&size=1000", timeout=20)
        assert len(r.content) == 50_000


def test_backend_down_gives_502() -> None:
    port, dead = free_port(), free_port()
    with run_mosnpy(http_config(port, {"dead": [f"127.0.0.1:{dead}"]}, [to("dead")]), ready_port=port):
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.status_code == 502
        assert b"connect" in r.content


def test_slow_backend_gives_504(py_backend: PyBackend) -> None:
    port = free_port()
    routes = [to("py", timeout="300ms")]
    with run_mosnpy(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, routes), ready_port=port):
        started = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/slow?ms=3000", timeout=10)
        assert r.status_code == 504
        assert time.monotonic() - started < 2.5


def test_unknown_route_gives_404(py_backend: PyBackend) -> None:
    port = free_port()
    cfg = http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py", prefix="/api")])
    with run_mosnpy(cfg, ready_port=port):
        assert httpx.get(f"http://127.0.0.1:{port}/api/x").status_code == 200
        r = httpx.get(f"http://127.0.0.1:{port}/other")
        assert r.status_code == 404
        assert b"no route" in r.content


def test_connect_failure_is_retried_on_another_host(py_backend: PyBackend) -> None:
    port, dead = free_port(), free_port()
    cfg = http_config(port, {"mixed": [f"127.0.0.1:{dead}", f"127.0.0.1:{py_backend.port}"]}, [to("mixed")])
    with run_mosnpy(cfg, ready_port=port):
        for _ in range(6):  # round robin hits the dead host every other time
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200


def test_status_retry_and_direct_response(py_backend: PyBackend) -> None:
    port = free_port()
    with start_py_backend("second") as other:
        cfg = http_config(
            port,
            {"pair": [f"127.0.0.1:{py_backend.port}", f"127.0.0.1:{other.port}"]},
            [
                {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": "ok"}},
                to("pair", retry_policy={"retry_on": True, "num_retries": 2, "status_codes": [503]}),
            ],
        )
        with run_mosnpy(cfg, ready_port=port):
            r = httpx.get(f"http://127.0.0.1:{port}/health")
            assert (r.status_code, r.text) == (200, "ok")
            # every try answers 503, so after 1 + 2 tries the last 503 is relayed...
            r = httpx.get(f"http://127.0.0.1:{port}/status/503", timeout=10)
            assert r.status_code == 503  # the retries are used up, the last answer is relayed


def test_stale_pooled_connection_is_replaced() -> None:
    port = free_port()
    with start_py_backend("first") as first:
        backend_port = first.port
        cfg = http_config(port, {"py": [f"127.0.0.1:{backend_port}"]}, [to("py")])
        with run_mosnpy(cfg, ready_port=port):
            assert httpx.get(f"http://127.0.0.1:{port}/").text == "backend first\n"
            first.stop()  # the pooled keep-alive connection is now dead
            with start_py_backend("again", port=backend_port):
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
                assert (r.status_code, r.text) == (200, "backend again\n")


def test_bad_config_exits_1_with_key_path(tmp_path: Any) -> None:
    port = free_port()
    cfg = http_config(port, {"c": ["127.0.0.1:1"]}, [to("c")])
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["downstream_protocol"] = (
        "Htp1"
    )
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert r.returncode == 1
    assert "servers[0].listeners[0].filter_chains[0].filters[0].config.downstream_protocol" in r.stderr
    assert "Htp1" in r.stderr and "Http1" in r.stderr


def test_stale_pooled_connection_is_replaced_for_a_post_too() -> None:
    port = free_port()
    with start_py_backend("first") as first:
        backend_port = first.port
        cfg = http_config(port, {"py": [f"127.0.0.1:{backend_port}"]}, [to("py")])
        with run_mosnpy(cfg, ready_port=port):
            assert httpx.post(f"http://127.0.0.1:{port}/echo", content=b"one").content == b"one"
            first.stop()  # the pooled keep-alive connection is now dead
            with start_py_backend("again", port=backend_port):
                r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"two", timeout=10)
                assert (r.status_code, r.content) == (200, b"two")
