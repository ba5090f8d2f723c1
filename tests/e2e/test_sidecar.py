"""The sidecar example end to end: an app's traffic caught by iptables in a netns.

Runs ``examples/sidecar/run.py`` (root, ``ip netns``, ``iptables``, ``setpriv``) in a
fresh network namespace with a name of its own.  Everything happens inside that
namespace on its 127.0.0.1 (the one exception to "127.0.0.1 only": its own loopback,
nothing outside it).  When the namespace cannot be made the test fails with the
runner's reason; it never skips.

Checked: the app's HTTP to a backend's address arrives through mosnpy (the backend
sees the header mosnpy's stream filter adds, and the Host picks the backend), its
dubbo calls are routed by service, its raw TCP reaches the original destination
through ``tcp_proxy`` (the echo server sees mosnpy's address, not the app's), and
mosnpy's own upstream connections are not caught again (the REDIRECT rule counted
exactly the app's connections).  The runner is stopped by its pid in a ``finally``;
a namespace left behind is emptied (its processes killed by pid) and deleted.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import REPO_ROOT, stop_process

pytestmark = pytest.mark.timeout(150)

RUNNER = REPO_ROOT / "examples" / "sidecar" / "run.py"
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


def ip() -> str:
    path = shutil.which("ip") or shutil.which("ip", path=SBIN)
    if path is None:
        pytest.fail("the sidecar test needs iproute2's `ip` (CI installs it)")
    return path


def namespaces() -> list[str]:
    out = subprocess.run([ip(), "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def preconditions() -> None:
    if os.geteuid() != 0:
        pytest.fail("the sidecar test needs root (ip netns, iptables); CI runs as root")
    for name in ("iptables", "setpriv"):
        if shutil.which(name) is None and shutil.which(name, path=SBIN) is None:
            pytest.fail(f"the sidecar test needs {name!r} (CI installs iptables; setpriv is util-linux)")


def remove_namespace(name: str) -> None:
    """Kill (by pid) whatever still runs in namespace ``name``, then delete it."""
    if name not in namespaces():
        return
    pids = subprocess.run(
        [ip(), "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
    )
    for pid in pids.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run([ip(), "netns", "del", name], capture_output=True, timeout=10, check=False)


@contextmanager
def runner(*args: str) -> Iterator[tuple[subprocess.Popen[str], str, queue.Queue[str | None]]]:
    """The example's runner in a fresh namespace: (process, namespace, its output
    lines; None once it ended)."""
    preconditions()
    name = f"mosnpy-t{os.getpid()}-{secrets.token_hex(3)}"
    assert name not in namespaces()
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), "--netns", name, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, name, lines
    finally:
        stop_process(proc, timeout=20)
        reader.join(timeout=5)
        remove_namespace(name)


def read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> list[str]:
    """Output lines up to the first that starts with ``marker`` (fails on EOF or
    after ``timeout`` seconds, showing what came)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {marker!r} line within {timeout}s; output:\n{''.join(seen)}")
        if line is None:
            pytest.fail(f"the runner ended before {marker!r}; output:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(marker):
            return seen


def test_app_traffic_goes_through_mosnpy_and_mosnpy_s_own_does_not_loop() -> None:
    with runner("--once", "--json") as (proc, name, lines):
        output = read_until(lines, "RESULT ", timeout=90)
        assert proc.wait(timeout=30) == 0, "".join(output)
        assert name not in namespaces(), "the runner left its namespace behind"
    report: dict[str, Any] = json.loads(output[-1].removeprefix("RESULT "))
    text = "".join(output)

    # HTTP/1 to 127.0.0.1:8080, routed by Host; mosnpy's header_mutation filter marks it.
    http = {h["host"]: h for h in report["http"]}
    assert {h: (r["status"], r["backend"]) for h, r in http.items()} == {
        "web": (200, "web"),
        "api": (200, "api"),  # same address, another backend: the Host decided
        "unknown.example": (200, "web"),  # no route for the Host: the original destination
    }, text
    for h in http.values():
        assert h["address"] == "127.0.0.1:8080"
        assert h["headers"].get("x-mosnpy-sidecar") == "http_8080", text

    # dubbo to 127.0.0.1:20880, routed by service (com.example.Echo lives on :20881).
    assert [(d["service"], d["status"], d["value"]) for d in report["dubbo"]] == [
        ("com.example.Greeter", 20, "greeter: com.example.Greeter.sayHello(app)"),
        ("com.example.Echo", 20, "echo: com.example.Echo.echo(ping)"),
    ], text

    # Raw TCP: tcp_proxy to the original destination, which sees mosnpy, not the app.
    tcp = report["tcp"]
    assert tcp["echoed"], text
    assert tcp["peer_seen_by_backend"] and tcp["peer_seen_by_backend"] != tcp["app_address"], text

    # No loop: the REDIRECT rule caught the app's connections and nothing else; mosnpy's
    # own six upstream connections (web, api, web again for the unknown Host, two dubbo
    # providers, the echo) matched the owner rule and went out as they were.
    counters = report["iptables"]
    assert counters["redirected"] == report["app_connections"] == 5, text
    assert counters["proxy_own"] >= 6, text


def test_sigterm_stops_everything_and_deletes_the_namespace() -> None:
    with runner("--json") as (proc, name, lines):
        output = read_until(lines, "READY", timeout=90)
        assert name in namespaces()
        result = next(line for line in output if line.startswith("RESULT "))
        mosnpy_pid = json.loads(result.removeprefix("RESULT "))["mosnpy_pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(output)
        assert name not in namespaces(), "SIGTERM left the namespace behind"
        with pytest.raises(ProcessLookupError):
            os.kill(mosnpy_pid, 0)
