"""MOSN's admin API on a running ``mosnpy -c``: log levels, stats_glob, states, latency
histograms and byte counters in ``/metrics``, and ``config_dump`` in MOSN's JSON that
runs again with ``mosnpy -c``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mosnpy.config import load_config
from tests.e2e.test_http1_cli import http_config, to
from tests.support import PyBackend, free_port, run_mosnpy


def with_admin(cfg: dict[str, Any], admin: int) -> dict[str, Any]:
    cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    return cfg


def metric_families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise KeyError(f"no {name}{labels} in {family}")


def test_log_level_is_read_and_changed_at_run_time(py_backend: PyBackend) -> None:
    port, admin = free_port(), free_port()
    cfg = with_admin(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")]), admin)
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = "200ms"
    with (
        run_mosnpy(cfg, ready_port=port) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as c,
    ):
        assert c.get("/api/v1/get_loglevel").json() == {"stdout": "INFO"}
        # nothing at DEBUG yet: an idle connection is closed silently
        with socket.create_connection(("127.0.0.1", port), timeout=3) as idle:
            assert idle.recv(1) == b""
        assert "closing idle connection" not in proc.output()

        r = c.post("/api/v1/update_loglevel", json={"log_path": "stdout", "log_level": "DEBUG"})
        assert (r.status_code, r.text) == (200, "update logger success\n")
        assert c.get("/api/v1/get_loglevel").json() == {"stdout": "DEBUG"}
        with socket.create_connection(("127.0.0.1", port), timeout=3) as idle:
            assert idle.recv(1) == b""
        assert "closing idle connection" in proc.output()

        # MOSN's refusals: unknown level, unknown log, not a POST
        bad = c.post("/api/v1/update_loglevel", json={"log_path": "stdout", "log_level": "LOUD"})
        assert bad.status_code == 400 and "update logger failed" in bad.json()["error"]
        assert (
            c.post("/api/v1/update_loglevel", json={"log_path": "/no.log", "log_level": "INFO"}).status_code
            == 400
        )
        assert c.post("/api/v1/update_loglevel", content=b"not json").status_code == 400
        assert c.get("/api/v1/update_loglevel").status_code == 405

        # ERROR: INFO lines stop (the admin API logs each change at INFO)
        assert (
            c.post("/api/v1/update_loglevel", json={"log_path": "stdout", "log_level": "ERROR"}).status_code
            == 200
        )
        assert c.get("/api/v1/get_loglevel").json() == {"stdout": "ERROR"}
        before = proc.output()
        assert (
            c.post("/api/v1/update_loglevel", json={"log_path": "stdout", "log_level": "ERROR"}).status_code
            == 200
        )
        time.sleep(0.2)
        assert proc.output() == before


def test_states_stats_glob_and_metrics(py_backend: PyBackend) -> None:
    port, admin = free_port(), free_port()
    cfg = with_admin(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")]), admin)
    with (
        run_mosnpy(cfg, ready_port=port) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as c,
    ):
        assert c.get("/api/v1/states").text == f"pid={proc.pid}&state=6\n"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(3):
                assert client.get("/slow", params={"ms": "30"}).status_code == 200
            assert client.post("/echo", content=b"x" * 5000).status_code == 200

        glob = dict(line.split(":", 1) for line in c.get("/api/v1/stats_glob").text.splitlines())
        assert glob["request_total"] == "4"
        assert glob["request_200_total"] == "4"
        assert int(glob["connection_total"]) >= 1  # ours, and the harness's readiness probe
        assert int(glob["bytes_read_total"]) > 5000
        assert int(glob["request_time_min"]) > 0
        assert int(glob["request_time_max"]) >= 30_000_000  # ns, as MOSN reports it

        families = metric_families(c.get("/metrics").text)
        assert families["downstream_request_time"].type == "histogram"
        assert (
            sample(families, "downstream_request_time", "downstream_request_time_count", listener="http") == 4
        )
        slow = sample(
            families, "downstream_request_time", "downstream_request_time_bucket", listener="http", le="0.025"
        )
        assert slow <= 1  # only the echo can be that quick: the others took 30 ms or more
        assert (
            sample(
                families,
                "downstream_request_time",
                "downstream_request_time_bucket",
                listener="http",
                le="+Inf",
            )
            == 4
        )
        assert (
            sample(families, "downstream_request_time_max", "downstream_request_time_max", listener="http")
            >= 0.03
        )
        upstream = "upstream_request_duration_time"
        assert sample(families, upstream, f"{upstream}_count", cluster="py") == 4
        assert sample(families, upstream, f"{upstream}_sum", cluster="py") >= 0.09
        assert (
            sample(families, "downstream_bytes_read", "downstream_bytes_read_total", listener="http") > 5000
        )
        assert sample(families, "downstream_bytes_write", "downstream_bytes_write_total", listener="http") > 0
        written = sample(
            families, "upstream_connection_bytes_write", "upstream_connection_bytes_write_total", cluster="py"
        )
        assert written > 5000  # the echo body went upstream
        assert (
            sample(
                families,
                "upstream_connection_bytes_read",
                "upstream_connection_bytes_read_total",
                cluster="py",
            )
            > 0
        )


def test_config_dump_is_mosn_json_that_runs_again(py_backend: PyBackend, tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    routes = [
        {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": "ok"}},
        {
            "match": {"prefix": "/"},
            "route": {
                "cluster_name": "py",
                "timeout": "1500ms",
                "retry_policy": {"retry_on": True, "retry_timeout": "500ms", "num_retries": 1},
                "request_headers_to_add": [{"header": {"key": "x-added", "value": "yes"}, "append": False}],
            },
        },
    ]
    cfg = with_admin(http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, routes), admin)
    original = tmp_path / "original.json"
    original.write_text(json.dumps(cfg))
    dumped = tmp_path / "dump.json"

    def answers() -> list[tuple[int, str, str | None]]:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            out = []
            for path in ("/health", "/echo", "/status/503", "/anything"):
                r = client.get(path)
                out.append((r.status_code, r.text, r.headers.get("x-echo-x-added")))
            return out

    with (
        run_mosnpy(original, ready_port=port),
        httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as c,
    ):
        dump = c.get("/api/v1/config_dump").json()
        first = answers()
        # MOSN's layout, not the internal model
        assert dump["admin"] == {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
        route = dump["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][1]["route"]
        assert route["timeout"] == "1.5s"
        assert route["retry_policy"]["retry_timeout"] == "500ms"
        assert route["request_headers_to_add"] == [
            {"header": {"key": "x-added", "value": "yes"}, "append": False}
        ]
        assert dump["servers"][0]["graceful_timeout"] == "2s"
        assert dump["cluster_manager"]["clusters"][0]["connect_timeout"] == "1s"
        # MOSN's query views
        assert list(c.get("/api/v1/config_dump", params={"allclusters": ""}).json()) == ["py"]
        assert (
            c.get("/api/v1/config_dump", params={"listener": "http"}).json()["address"] == f"127.0.0.1:{port}"
        )
        assert c.get("/api/v1/config_dump", params={"router": "nope"}).status_code == 404
        assert c.get("/api/v1/config_dump?allrouters&allclusters").status_code == 400
        dumped.write_text(json.dumps(dump))
    assert first[0] == (200, "ok", None)
    assert first[1][2] == "yes"  # the route's header reached the backend

    # the dump is a config: same model, same proxy
    assert load_config(dumped) == load_config(original)
    with (
        run_mosnpy(dumped, ready_port=port),
        httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as c,
    ):
        assert answers() == first
        assert c.get("/api/v1/config_dump").json() == dump
    check = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert re.fullmatch(r"000", check.stdout), "the second proxy is gone after its block"
