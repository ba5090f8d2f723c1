"""``--workers N`` with ``admin``: the supervisor holds the admin API and sums every
worker's stats; log levels and reloads reach every worker; a killed worker is replaced
while every new connection succeeds; the exit status says whether a worker failed."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_http1_cli import http_config, to
from tests.e2e.test_workers import worker_pids
from tests.support import PyBackend, free_port, run_mosnpy, start_py_backend


def config(port: int, admin: int, backend: int, **listener: Any) -> dict[str, Any]:
    cfg = http_config(port, {"py": [f"127.0.0.1:{backend}"]}, [to("py")], **listener)
    cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    return cfg


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stats(admin: int) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats", timeout=10).json()  # type: ignore[no-any-return]


def all_answer(admin: int, n: int = 2) -> bool:
    try:
        return stats(admin)["workers"]["answered"] == n
    except httpx.HTTPError:
        return False


def dead(pid: int) -> bool:
    """The process has exited (a zombie or gone): its sockets are closed."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def pid_lines(output: str, pid: int, text: str) -> list[str]:
    return [line for line in output.splitlines() if f" [{pid}] " in line and text in line]


def fresh_get(port: int, path: str = "/") -> tuple[int, str | None]:
    """One request on a new connection: (status, x-backend)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("x-backend")
    finally:
        conn.close()


def test_summed_stats_and_a_killed_worker_replaced_while_new_connections_succeed(
    py_backend: PyBackend,
) -> None:
    port, admin = free_port(), free_port()
    with run_mosnpy(config(port, admin, py_backend.port), ready_port=port, args=("--workers", "2")) as proc:
        wait_for(lambda: all_answer(admin), what="both workers")
        for _ in range(40):
            assert fresh_get(port)[0] == 200
        summed = stats(admin)
        per_worker = summed["workers"]["request_total"]
        assert sorted(per_worker) == ["0", "1"]
        assert all(n > 0 for n in per_worker.values()), per_worker  # both served some
        assert sum(per_worker.values()) == 40
        assert summed["listeners"]["http"]["request_total"] == 40
        assert summed["listeners"]["http"]["response_total"] == {"200": 40}
        assert summed["clusters"]["py"]["counters"]["requests"] == 40
        families = {
            f.name: f
            for f in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{admin}/metrics").text)
        }
        counts = {
            s.name: s.value
            for s in families["downstream_request_time"].samples
            if s.labels["listener"] == "http"
        }
        assert counts["downstream_request_time_count"] == 40
        [total] = [
            s.value for s in families["downstream_request"].samples if s.name == "downstream_request_total"
        ]
        assert total == 40
        assert (
            "request_total:40" in httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats_glob").text.splitlines()
        )
        assert re.fullmatch(
            rf"pid={proc.pid}&state=6\n", httpx.get(f"http://127.0.0.1:{admin}/api/v1/states").text
        )

        # kill -9 one worker under load; once it is dead, every new connection succeeds
        victim = int(summed["workers"]["pids"]["0"])
        results: list[tuple[float, int | str]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    results.append((started, fresh_get(port, "/slow?ms=5")[0]))
                except (OSError, http.client.HTTPException) as exc:
                    results.append((started, repr(exc)))

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            os.kill(victim, signal.SIGKILL)  # a worker of the mosnpy this test started
            wait_for(lambda: dead(victim), what="the worker to die")
            died = time.monotonic()
            after = [fresh_get(port)[0] for _ in range(100)]
            wait_for(lambda: worker_pids(proc.output()).get(0, victim) != victim, what="the restart")
            wait_for(lambda: all_answer(admin), what="the new worker")
            after += [fresh_get(port)[0] for _ in range(50)]
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        assert after == [200] * 150
        late = [r for r in results if r[0] > died]
        assert late and all(status == 200 for _, status in late), [r for r in late if r[1] != 200]
        assert "restarting" in proc.output()
        # counters of the new worker start at 0; the sum goes on from the survivors'
        assert stats(admin)["workers"]["failures"] == 1
        rc = proc.stop()
        output = proc.output()
    assert rc == 1, output  # a worker failed: the exit status says so
    assert "workers failed 1 time(s)" in output


def test_a_clean_run_exits_0(py_backend: PyBackend) -> None:
    port, admin = free_port(), free_port()
    with run_mosnpy(config(port, admin, py_backend.port), ready_port=port, args=("--workers", "2")) as proc:
        wait_for(lambda: all_answer(admin), what="both workers")
        assert fresh_get(port)[0] == 200
        rc = proc.stop()
        output = proc.output()
    assert rc == 0, output
    assert output.count("exited with 0") == 2


def test_log_level_and_reload_reach_every_worker(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    with start_py_backend("a") as a, start_py_backend("b") as b:
        path = tmp_path / "mosnpy.json"
        path.write_text(json.dumps(config(port, admin, a.port, connection_idle_timeout="200ms")))
        with run_mosnpy(path, ready_port=port, args=("--workers", "2")) as proc:
            wait_for(lambda: all_answer(admin), what="both workers")
            pids = worker_pids(proc.output())
            base = f"http://127.0.0.1:{admin}"
            r = httpx.post(
                f"{base}/api/v1/update_loglevel", json={"log_path": "stdout", "log_level": "DEBUG"}
            )
            assert (r.status_code, r.text) == (200, "update logger success\n")
            assert httpx.get(f"{base}/api/v1/get_loglevel").json() == {"stdout": "DEBUG"}
            for pid in pids.values():
                wait_for(
                    lambda pid=pid: pid_lines(proc.output(), pid, "level as DEBUG"), what=f"worker {pid}"
                )

            def idle_connections_closed_at_debug(pid: int) -> bool:
                socks = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(16)]
                for s in socks:
                    s.recv(1)  # closed by the idle sweeper
                    s.close()
                return bool(pid_lines(proc.output(), pid, "closing idle connection"))

            for pid in pids.values():  # both workers log at DEBUG now
                wait_for(lambda pid=pid: idle_connections_closed_at_debug(pid), what=f"DEBUG from {pid}")

            # SIGHUP at the supervisor: every worker reloads (route to b)
            assert fresh_get(port)[1] == "a"
            path.write_text(json.dumps(config(port, admin, b.port, connection_idle_timeout="200ms")))
            proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: "reloaded" in proc.output() and "in 2 of 2 workers" in proc.output(), what="reload"
            )
            for pid in pids.values():
                assert pid_lines(proc.output(), pid, "reloaded the config")
            assert {fresh_get(port)[1] for _ in range(20)} == {"b"}

            # a broken file is refused by the supervisor; a worker started after it
            # still gets the config being served
            path.write_text("{broken")
            r = httpx.post(f"{base}/api/v1/reload")
            assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
            os.kill(pids[1], signal.SIGKILL)
            wait_for(lambda: worker_pids(proc.output()).get(1) != pids[1], what="the restart")
            wait_for(lambda: all_answer(admin), what="the new worker")
            assert {fresh_get(port)[1] for _ in range(20)} == {"b"}
            new_pid = worker_pids(proc.output())[1]
            wait_for(lambda: idle_connections_closed_at_debug(new_pid), what="DEBUG from the new worker")
            assert proc.stop() == 1


def test_a_worker_restarted_during_shutdown_still_drains(py_backend: PyBackend) -> None:
    port, admin = free_port(), free_port()
    with run_mosnpy(config(port, admin, py_backend.port), ready_port=port, args=("--workers", "2")) as proc:
        wait_for(lambda: all_answer(admin), what="both workers")
        victim = worker_pids(proc.output())[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: worker_pids(proc.output()).get(0) != victim, timeout=10, what="the restart")
        # SIGTERM while the new worker is still starting (importing, binding)
        rc = proc.stop(timeout=20)
        output = proc.output()
    new = worker_pids(output)[0]
    assert pid_lines(output, new, "draining"), output
    assert f"worker 0 (pid {new}) exited with 0" in output, output
    assert rc == 1, output  # one worker did fail (the one killed)


def test_the_supervisor_refuses_an_admin_port_in_use(py_backend: PyBackend, tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config(port, admin, py_backend.port)))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", admin))
        blocker.listen()
        r = subprocess.run(
            [sys.executable, "-m", "mosnpy", "-c", str(path), "--workers", "2"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    assert r.returncode == 1
    assert f"listener 'admin' cannot bind 127.0.0.1:{admin}" in r.stdout + r.stderr
