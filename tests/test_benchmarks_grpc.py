"""benchmarks/grpc_load.py end to end (serve + a 1 s checked load), and the ``grpc``
suite's rows and mosnpy config in benchmarks/compare.py.  Everything on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from benchmarks import compare
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)

GRPC_LOAD = Path(compare.__file__).resolve().parent / "grpc_load.py"


def test_grpc_load_serve_and_load() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(GRPC_LOAD), "serve", "--port", str(port), "--workers", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "grpc_load serve did not listen"
                time.sleep(0.05)
        cmd = [
            sys.executable,
            str(GRPC_LOAD),
            "load",
            "--port",
            str(port),
            "--duration",
            "1",
            "--threads",
            "2",
        ]
        done = subprocess.run([*cmd, "--size", "100"], capture_output=True, text=True, timeout=20)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert done.returncode == 0, (result, done.stderr)
        assert result["calls"] > 0 and result["calls_per_s"] > 0
        assert result["errors"] == result["mismatches"] == 0 and result["first_error"] is None
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(10) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(5)


def test_grpc_load_fails_without_a_server() -> None:
    cmd = [sys.executable, str(GRPC_LOAD), "load", "--port", str(free_port()), "--duration", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and result["errors"] == 1 and result["calls"] == 0


def test_grpc_suite_rows_and_config(tmp_path: Path) -> None:
    args = argparse.Namespace(rows=["direct", "nginx", "floor", "mosnpy", "mosnpy+log"], baseline=[])
    bench = compare.Bench(args, tmp_path, ["mosnpy"], None)
    assert bench.rows("grpc") == ["direct", "mosnpy", "mosnpy+log"]

    def proxy_config(cfg: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any], cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
        )

    upstream = compare.UPSTREAM_PROTOCOLS["grpc"]
    grpc = proxy_config(
        compare.mosnpy_config(1001, 1002, compare.HTTP_PROTOCOLS["grpc"], None, None, upstream)
    )
    assert grpc["downstream_protocol"] == grpc["upstream_protocol"] == "Http2"
    # the other suites' configs leave the upstream protocol to mosnpy (Auto)
    assert "upstream_protocol" not in proxy_config(compare.mosnpy_config(1001, 1002, "Http2"))
