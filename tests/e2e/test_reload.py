"""Reload: SIGHUP and ``POST /api/v1/reload`` re-read the config file.

Routes and clusters swap whole under load without failing a request; listeners added
by the new file open and listeners gone from it drain; a broken file is refused, logged,
and changes nothing.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_http1_cli import http_config, to
from tests.support import PyBackend, free_port, port_is_open, run_mosnpy, start_py_backend
from tests.support.backend import SLOW_STARTED


@pytest.fixture
def two_backends() -> Iterator[tuple[PyBackend, PyBackend]]:
    with start_py_backend("a") as a, start_py_backend("b") as b:
        yield a, b


def write(path: Path, cfg: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg))
    tmp.replace(path)  # the reader sees the old file or the new one, never half


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Load:
    """Bounded HTTP load on one port: keep-alive clients and new-connection clients,
    every outcome recorded with the time its request started."""

    def __init__(self, port: int, *, keepalive: int = 3, fresh: int = 2) -> None:
        self.port = port
        #: (started, ended, client, status or error, x-backend)
        self.results: list[tuple[float, float, str, int | str, str | None]] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(f"keepalive-{i}", True), daemon=True)
            for i in range(keepalive)
        ] + [
            threading.Thread(target=self._run, args=(f"fresh-{i}", False), daemon=True) for i in range(fresh)
        ]

    def _run(self, name: str, keepalive: bool) -> None:
        url = f"http://127.0.0.1:{self.port}/slow?ms=15"
        client = httpx.Client(timeout=10) if keepalive else None
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    r = client.get(url) if client is not None else httpx.get(url, timeout=10)
                    outcome: int | str = r.status_code
                    backend = r.headers.get("x-backend")
                except httpx.HTTPError as exc:
                    outcome, backend = f"{type(exc).__name__}: {exc}", None
                self.results.append((started, time.monotonic(), name, outcome, backend))
        finally:
            if client is not None:
                client.close()

    @contextmanager
    def running(self) -> Iterator[Load]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(timeout=15)

    def failures(self) -> list[Any]:
        return [r for r in self.results if r[3] != 200]


def test_sighup_swaps_routes_and_clusters_under_load_without_failing_a_request(
    two_backends: tuple[PyBackend, PyBackend], tmp_path: Path
) -> None:
    a, b = two_backends
    port = free_port()
    v1 = http_config(port, {"ca": [f"127.0.0.1:{a.port}"]}, [to("ca")])
    v2 = http_config(port, {"cb": [f"127.0.0.1:{b.port}"]}, [to("cb", timeout="3s")])  # "ca" is gone
    path = tmp_path / "mosnpy.json"
    write(path, v1)
    with (
        run_mosnpy(path, ready_port=port) as proc,
        Load(port).running() as load,
        ThreadPoolExecutor(1) as pool,
    ):
        wait_for(lambda: len(load.results) > 20, what="some load")
        # a long request is in flight on the old cluster while the reload happens
        long = pool.submit(httpx.get, f"http://127.0.0.1:{port}/slow?ms=800", timeout=10)
        a.wait_for_output(f"{SLOW_STARTED} /slow?ms=800")
        write(path, v2)
        hup = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded the config" in proc.output(), what="the reload")
        reloaded = time.monotonic()
        served = len(load.results)
        wait_for(lambda: len(load.results) > served + 40, what="load after the reload")
        # a broken file: refused, logged, and the proxy keeps serving the last good config
        path.write_text('{"servers": [')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in proc.output(), what="the refusal")
        served = len(load.results)
        wait_for(lambda: len(load.results) > served + 40, what="load after the refusal")
        in_flight = long.result(timeout=10)
        output = proc.output()
        assert proc.returncode is None  # SIGHUP never ends the process
    assert load.failures() == [], output
    assert (in_flight.status_code, in_flight.headers["x-backend"]) == (200, "a")
    assert {r[4] for r in load.results if r[1] < hup} == {"a"}
    after = [r for r in load.results if r[0] > reloaded]
    assert {r[4] for r in after} == {"b"}, "every request after the reload, on old connections too, goes to b"
    assert {r[2] for r in after} >= {"keepalive-0", "fresh-0"}
    assert "mosnpy.json:1:" in output.split("reload refused", 1)[1]  # the file's syntax error is named


def test_a_broken_reload_changes_nothing(py_backend: PyBackend, tmp_path: Path) -> None:
    port, admin, taken = free_port(), free_port(), free_port()
    good = http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")])
    good["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    unknown_cluster = json.loads(json.dumps(good))
    unknown_cluster["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"] = [to("nope")]
    bad_balancer = json.loads(json.dumps(good))
    bad_balancer["cluster_manager"]["clusters"][0]["lb_type"] = "LB_FANCY"
    port_in_use = json.loads(json.dumps(good))
    extra = json.loads(json.dumps(good["servers"][0]["listeners"][0]))
    extra.update(name="extra", address=f"127.0.0.1:{taken}")
    port_in_use["servers"][0]["listeners"].append(extra)
    path = tmp_path / "mosnpy.json"
    write(path, good)
    with (
        run_mosnpy(path, ready_port=port) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as c,
        socket.socket() as blocker,
    ):
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        before = c.get("/api/v1/config_dump").json()
        cases: list[tuple[str | dict[str, Any], str]] = [
            ("{not json", "invalid JSON"),
            (unknown_cluster, "nope"),
            (bad_balancer, "lb_type"),
            (port_in_use, f"listener 'extra' cannot bind 127.0.0.1:{taken}"),
        ]
        for doc, why in cases:
            if isinstance(doc, str):
                path.write_text(doc)
            else:
                write(path, doc)
            r = c.post("/api/v1/reload")
            assert r.status_code == 400, r.text
            assert "reload refused" in r.json()["error"] and why in r.json()["error"], r.text
            proc.send_signal(signal.SIGHUP)
            assert c.get("/api/v1/config_dump").json() == before
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "backend default\n"
        wait_for(lambda: proc.output().count("reload refused") >= len(cases), what="every refusal logged")
        # and a good file still reloads afterwards
        write(path, good)
        r = c.post("/api/v1/reload")
        assert r.status_code == 200 and r.json()["listeners"]["kept"] == ["http"]


def test_listeners_added_open_and_removed_drain(py_backend: PyBackend, tmp_path: Path) -> None:
    port, old_port, new_port, admin = free_port(), free_port(), free_port(), free_port()

    def config(*extra: tuple[str, int]) -> dict[str, Any]:
        cfg = http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")])
        base = cfg["servers"][0]["listeners"][0]
        for name, p in extra:
            listener = json.loads(json.dumps(base))
            listener.update(name=name, address=f"127.0.0.1:{p}")
            cfg["servers"][0]["listeners"].append(listener)
        cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
        return cfg

    path = tmp_path / "mosnpy.json"
    write(path, config(("old", old_port)))
    with run_mosnpy(path, ready_port=port) as proc, ThreadPoolExecutor(1) as pool:
        assert httpx.get(f"http://127.0.0.1:{old_port}/", timeout=5).status_code == 200
        assert not port_is_open(new_port)
        in_flight = pool.submit(httpx.get, f"http://127.0.0.1:{old_port}/slow?ms=700", timeout=10)
        py_backend.wait_for_output(f"{SLOW_STARTED} /slow?ms=700")
        write(path, config(("new", new_port)))
        r = httpx.post(f"http://127.0.0.1:{admin}/api/v1/reload", timeout=5)
        assert r.status_code == 200, proc.output()
        assert r.json()["listeners"] == {"added": ["new"], "removed": ["old"], "kept": ["http"]}
        assert httpx.get(f"http://127.0.0.1:{new_port}/", timeout=5).text == "backend default\n"
        # the removed listener takes no new connections, but finishes what it had
        assert not port_is_open(old_port)
        assert in_flight.result(timeout=10).text == "slow"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        stats = httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats", timeout=5).json()
        assert sorted(stats["listeners"]) == ["http", "new"]
