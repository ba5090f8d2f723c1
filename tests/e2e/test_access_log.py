"""Access logs end to end: ``mosnpy -c`` with MOSN's ``access_logs``, real clients.

A listener with a direct response, a real backend and a dead one writes one line per
request in a custom format; SIGUSR1 after a logrotate-style rename sends the next lines
to a new file at the same path; a reload that names another path moves the lines there;
an unknown variable is a config error naming it.  Everything on 127.0.0.1, bounded.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_http1_cli import http_config, to
from tests.support import PyBackend, free_port, run_mosnpy
from tests.support.procs import REPO_ROOT

FORMAT = (
    '[%start_time%] "%Http1_request_method% %Http1_request_uri%" %response_code% '
    "in=%bytes_received% out=%bytes_sent% host=%upstream_host% cluster=%upstream_cluster% "
    "flag=%response_flag% why=%upstream_transport_failure_reason% "
    "ua=%request_header_user-agent% backend=%response_header_x-backend% "
    "sent=%request_received_duration% answered=%response_received_duration% took=%duration% "
    "%protocol% client=%downstream_remote_address% local=%downstream_local_address%"
)
#: a Go duration, as MOSN prints them
DURATION = r"(?:0s|\d+(?:\.\d+)?(?:ns|µs|ms|s))"
LINE = re.compile(
    r"\[(?P<start>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d+) in=(?P<bytes_in>\d+) out=(?P<bytes_out>\d+) '
    r"host=(?P<host>\S+) cluster=(?P<cluster>\S+) flag=(?P<flag>true|false) why=(?P<why>\S+) "
    r"ua=(?P<ua>\S+) backend=(?P<backend>\S+) "
    rf"sent=(?P<sent>{DURATION}) answered=(?P<answered>{DURATION}) took=(?P<took>{DURATION}) "
    r"Http1 client=127\.0\.0\.1:\d+ local=127\.0\.0\.1:(?P<port>\d+)"
)
UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def seconds(duration: str) -> float:
    """A Go duration of ours as a number (``0s``, ``1.5ms``)."""
    value, unit = re.fullmatch(r"([\d.]+)(ns|µs|ms|s)", duration).groups()  # type: ignore[union-attr]
    return float(value) * UNITS[unit]


def wait_for_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def config(port: int, backend: PyBackend, log_path: Path, fmt: str = FORMAT, **extra: Any) -> dict[str, Any]:
    dead = free_port()
    routes = [
        {"match": {"path": "/direct"}, "direct_response": {"status": 201, "body": "made here"}},
        to("c", "/echo"),
        to("c", "/status"),
        to("dead", "/dead"),
    ]
    clusters = {"c": [f"127.0.0.1:{backend.port}"], "dead": [f"127.0.0.1:{dead}"]}
    return (
        http_config(port, clusters, routes, access_logs=[{"log_path": str(log_path), "log_format": fmt}])
        | extra
    )


def test_one_line_per_request_in_the_configured_format(py_backend: PyBackend, tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    log_path = tmp_path / "logs" / "access.log"  # the directory is created, as MOSN does
    admin_cfg = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    with run_mosnpy(config(port, py_backend, log_path, admin=admin_cfg), ready_port=port):
        before = datetime.now()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/echo?x=1", content=b"12345").status_code == 200
            assert client.get("/direct").status_code == 201
            assert client.get("/nowhere").status_code == 404
            assert client.get("/dead").status_code == 502
        curl = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/status/503"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert curl.stdout == "503", curl.stderr
        lines = wait_for_lines(log_path, 5)
        stats = httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats", timeout=10).json()
    assert len(lines) == 5, lines
    fields = []
    for line in lines:
        m = LINE.fullmatch(line)
        assert m is not None, line
        fields.append(m.groupdict())
    ua = f"python-httpx/{httpx.__version__}"
    backend = f"127.0.0.1:{py_backend.port}"
    no_route = str(len(f"no route for 127.0.0.1:{port}/nowhere\n"))
    name = py_backend.name
    # fmt: off
    expected = [
        # request, status, in, out, host, cluster, flag, why, ua, backend header (None: below)
        ("POST /echo?x=1", "200", "5", "5", backend, "c", "false", "-", ua, name),
        ("GET /direct", "201", "0", "9", "-", "-", "false", "-", ua, "-"),
        ("GET /nowhere", "404", "0", no_route, "-", "-", "true", "NoRouteFound", ua, "-"),
        ("GET /dead", "502", "0", None, None, "dead", "true", "UpstreamConnectionFailure", ua, "-"),
        ("GET /status/503", "503", "0", str(len("status 503\n")), backend, "c", "false", "-", None, name),
    ]
    # fmt: on
    keys = ("request", "status", "bytes_in", "bytes_out", "host", "cluster", "flag", "why", "ua", "backend")
    for got, want in zip(fields, expected, strict=True):
        for key, value in zip(keys, want, strict=True):
            if value is not None:
                assert got[key] == value, (key, got)
        assert got["port"] == str(port)
    assert fields[3]["host"].startswith("127.0.0.1:")  # the dead host it tried last
    assert fields[4]["ua"].startswith("curl/")
    for got in fields:
        started = datetime.strptime(got["start"], "%Y/%m/%d %H:%M:%S.%f")
        assert abs((started - before).total_seconds()) < 30  # local time, as MOSN writes it
        took = seconds(got["took"])
        assert 0 < took < 10
        assert seconds(got["sent"]) <= took and seconds(got["answered"]) <= took
    # requests that went upstream: sent, then answered; local answers: neither
    assert 0 < seconds(fields[0]["sent"]) <= seconds(fields[0]["answered"])
    assert fields[1]["sent"] == fields[1]["answered"] == "0s"
    assert stats["listeners"]["http"]["access_log_dropped"] == 0


def test_sigusr1_reopens_the_file_after_logrotate(py_backend: PyBackend, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "access.log"
    fmt = "%Http1_request_path% %response_code%"
    with run_mosnpy(config(port, py_backend, log_path, fmt), ready_port=port) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.get("/echo/one")
            assert wait_for_lines(log_path, 1) == ["/echo/one 200"]
            rotated = tmp_path / "access.log.1"
            log_path.rename(rotated)  # what logrotate does, then it signals
            client.get("/echo/two")  # still goes to the renamed file: it is the open one
            assert wait_for_lines(rotated, 2) == ["/echo/one 200", "/echo/two 200"]
            proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not log_path.exists():  # reopened: a new file at the path
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.02)
            client.get("/echo/three")
            assert wait_for_lines(log_path, 1) == ["/echo/three 200"]
        assert proc.returncode is None  # SIGUSR1 never ends the process
        output = proc.output()
    assert rotated.read_text().splitlines() == ["/echo/one 200", "/echo/two 200"]
    assert "reopening 1 access log file(s)" in output


def test_a_reload_moves_the_lines_to_the_new_path(py_backend: PyBackend, tmp_path: Path) -> None:
    port = free_port()
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    path = tmp_path / "mosnpy.json"
    fmt = "%Http1_request_path%"
    path.write_text(json.dumps(config(port, py_backend, first, fmt)))
    with (
        run_mosnpy(path, ready_port=port) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        client.get("/echo/before")  # a kept-alive connection: it lives through the reload
        path.write_text(json.dumps(config(port, py_backend, second, fmt)))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded the config" not in proc.output():
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        client.get("/echo/after")
        assert wait_for_lines(second, 1) == ["/echo/after"]
    assert first.read_text().splitlines() == ["/echo/before"]


def test_an_unknown_variable_is_a_config_error(tmp_path: Path) -> None:
    port = free_port()
    cfg = http_config(
        port, {"c": ["127.0.0.1:1"]}, [to("c")], access_logs=[{"log_format": "%start_time% %nope%"}]
    )
    path = tmp_path / "mosnpy.json"
    path.write_text(json.dumps(cfg))
    done = subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[1].startswith(
        "servers[0].listeners[0].access_logs[0].log_format: unknown variable 'nope' (known: "
    ), done.stderr


def test_sigusr1_to_the_supervisor_reaches_every_worker(py_backend: PyBackend, tmp_path: Path) -> None:
    """With ``--workers 2`` both workers append to one file; SIGUSR1 to the supervisor
    makes each reopen it."""
    port = free_port()
    log_path = tmp_path / "access.log"
    cfg = config(port, py_backend, log_path, "%Http1_request_path%")
    with run_mosnpy(cfg, ready_port=port, args=["--workers", "2"]) as proc:
        paths = [f"/echo/before/{i}" for i in range(6)] + [f"/echo/after/{i}" for i in range(6)]
        for target in paths[:6]:
            httpx.get(f"http://127.0.0.1:{port}{target}", timeout=10)  # new connections: both workers
        assert sorted(wait_for_lines(log_path, 6)) == sorted(paths[:6])
        log_path.rename(tmp_path / "access.log.1")
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while proc.output().count("reopening 1 access log file(s)") < 2:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        for target in paths[6:]:
            httpx.get(f"http://127.0.0.1:{port}{target}", timeout=10)
        assert sorted(wait_for_lines(log_path, 6)) == sorted(paths[6:])
        assert proc.returncode is None
