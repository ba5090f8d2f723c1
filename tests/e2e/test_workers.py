"""``mosnpy -c --workers N``: SO_REUSEPORT workers under a supervising parent."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx

from tests.e2e.test_http1_cli import http_config, to
from tests.support import PyBackend, free_port, run_mosnpy


def worker_pids(output: str) -> dict[int, int]:
    """slot -> pid of the most recent start of each worker, from the parent's log."""
    return {int(slot): int(pid) for slot, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", output)}


def test_workers_share_the_port_and_a_dead_one_is_restarted(py_backend: PyBackend) -> None:
    port = free_port()
    cfg = http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")])
    with run_mosnpy(cfg, ready_port=port, args=("--workers", "2")) as proc:
        deadline = time.monotonic() + 10
        while len(worker_pids(proc.output())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = worker_pids(proc.output())
        assert len(pids) == 2, proc.output()
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "backend default\n"
        # a worker (started by our mosnpy, which this test started) dies: it comes back
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while worker_pids(proc.output()).get(0) == pids[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker_pids(proc.output())[0] != pids[0], proc.output()
        assert "restarting" in proc.output()
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        # the survivors drain cleanly, but a worker died: the exit status says so
        assert proc.stop() == 1
        assert "exited with 0" in proc.output()
        assert "workers failed 1 time(s)" in proc.output()


def test_workers_refuse_ephemeral_ports(tmp_path: object) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    cfg = http_config(0, {"c": ["127.0.0.1:1"]}, [to("c")])
    path = Path(str(tmp_path)) / "cfg.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(path), "--workers", "2"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "fixed ports" in r.stderr


def test_workers_refuse_unix_listeners(tmp_path: object) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    cfg = http_config(0, {"c": ["127.0.0.1:1"]}, [to("c")])
    listener = cfg["servers"][0]["listeners"][0]
    listener["address"] = str(Path(str(tmp_path)) / "proxy.sock")
    listener["network"] = "unix"
    path = Path(str(tmp_path)) / "cfg.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(path), "--workers", "2"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "TCP listeners" in r.stderr
