"""The ``mosnpy`` command: graceful SIGTERM/SIGINT, ``--log-level``, YAML configs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import REPO_ROOT, PyBackend, free_port, run_mosnpy
from tests.support.backend import SLOW_STARTED

LOCALHOST = "127.0.0.1"
GRACEFUL_TIMEOUT = 3.0


def proxy_config(port: int, backend_port: int, *, log_level: str = "INFO") -> dict[str, Any]:
    """A MOSN v2 config: one Http1 listener on ``port`` proxying everything to the backend."""
    return {
        "servers": [
            {
                "default_log_path": "stdout",
                "default_log_level": log_level,
                "graceful_timeout": f"{GRACEFUL_TIMEOUT:g}s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "http",
                        "address": f"{LOCALHOST}:{port}",
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
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "c",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "connect_timeout": "1s",
                    "hosts": [{"address": f"{LOCALHOST}:{backend_port}"}],
                }
            ]
        },
    }


def get(port: int, path: str, *, timeout: float = 5.0) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        return client.get(f"http://{LOCALHOST}:{port}{path}")


def run_cli(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mosnpy ARGS`` to completion (for runs that must exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "mosnpy", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(py_backend: PyBackend) -> None:
    port = free_port()
    with run_mosnpy(proxy_config(port, py_backend.port), ready_port=port) as mosn:
        assert get(port, "/health").text == "ok"
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(get, port, "/slow?ms=800")
            # the request is with the backend now (it prints this before it sleeps)
            py_backend.wait_for_output(f"{SLOW_STARTED} /slow?ms=800", timeout=5)
            assert not future.done()
            start = time.monotonic()
            rc = mosn.stop(sig=signal.SIGTERM, timeout=GRACEFUL_TIMEOUT + 1)
            exited_in = time.monotonic() - start
            response = future.result(timeout=5)
        output = mosn.output()
    assert response.status_code == 200, output
    assert response.text == "slow"
    assert rc == 0, output
    assert exited_in < GRACEFUL_TIMEOUT, output
    assert "received SIGTERM" in output
    assert "draining" in output


def test_sigint_on_an_idle_proxy_exits_0_quickly(py_backend: PyBackend) -> None:
    port = free_port()
    with run_mosnpy(proxy_config(port, py_backend.port), ready_port=port) as mosn:
        assert get(port, "/health").status_code == 200
        start = time.monotonic()
        rc = mosn.stop(sig=signal.SIGINT, timeout=GRACEFUL_TIMEOUT + 1)
        assert rc == 0, mosn.output()
        assert time.monotonic() - start < 2.0
        assert "received SIGINT" in mosn.output()


def test_log_level_debug_is_accepted(py_backend: PyBackend) -> None:
    port = free_port()
    config = proxy_config(port, py_backend.port, log_level="ERROR")
    config["servers"][0]["listeners"][0]["connection_idle_timeout"] = "200ms"
    with run_mosnpy(config, ready_port=port, args=["--log-level", "debug"]) as mosn:
        r = get(port, "/echo")
        assert r.status_code == 200
        assert r.headers["x-backend"] == "default"
        # An idle connection gets closed by the sweeper, which logs at DEBUG.
        with socket.create_connection((LOCALHOST, port), timeout=2.0) as idle:
            assert idle.recv(1) == b""
        rc = mosn.stop()
        output = mosn.output()
    assert rc == 0, output
    # The flag overrides the config's ERROR level: INFO lines (and DEBUG ones) appear.
    assert " INFO " in output, output
    assert " DEBUG " in output, output
    assert "closing idle connection" in output, output


def test_log_level_from_config_when_no_flag(py_backend: PyBackend) -> None:
    port = free_port()
    with run_mosnpy(proxy_config(port, py_backend.port, log_level="ERROR"), ready_port=port) as mosn:
        assert get(port, "/health").status_code == 200
        assert mosn.stop() == 0
        output = mosn.output()
    assert " INFO " not in output, output


def test_bad_log_level_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text("{}", encoding="utf-8")
    result = run_cli("-c", str(config), "--log-level", "loud")
    assert result.returncode == 2
    assert "--log-level" in result.stderr


def test_yaml_config_works_like_json(py_backend: PyBackend, tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "mosnpy.yaml"
    path.write_text(yaml.safe_dump(proxy_config(port, py_backend.port)), encoding="utf-8")
    assert not path.read_text(encoding="utf-8").lstrip().startswith("{")  # really YAML
    with run_mosnpy(path, ready_port=port) as mosn:
        r = get(port, "/echo")
        assert r.status_code == 200
        assert r.headers["x-echo-path"] == "/echo"
        assert mosn.stop() == 0


def test_bad_yaml_config_exits_1_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    config = proxy_config(free_port(), 1)
    config["servers"][0]["listeners"][0]["address"] = 42
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run_cli("-c", str(path))
    assert result.returncode == 1
    assert "bad config" in result.stderr
    assert "servers[0].listeners[0].address" in result.stderr
