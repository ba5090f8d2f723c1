"""HTTP/1.1 proxy benchmark: one command, every row measured side by side in one run.

    python benchmarks/http1.py [--duration 5] [--connections 50] [--path /] [--baseline OTHER_CHECKOUT]

Rows: the nginx backend direct; mosnpy (``mosnpy -c``, one process pinned to core 0);
nginx as a reverse proxy (one worker pinned to core 0, keep-alive upstream) as the
peer to beat.  wrk runs on core 1.  For each proxy the table shows requests/s, p50 and
p99 latency from ``wrk --latency``, and the proxy's CPU time (user + sys, from
/proc/PID/stat) divided by the requests wrk completed: CPU µs per request.

Timings on a shared 2-core machine drift by 30% or more between runs, so compare rows
of one run, never across runs.  Everything runs on 127.0.0.1 on ports picked here, and
every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import free_port, start_nginx, stop_process, wait_for_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def run_wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    cmd = [*pinned(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = "Non-2xx" in out or "Socket errors" in out

    def pct(p: str) -> float:
        m = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"requests": requests, "rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": float(errors)}


def mosnpy_config(port: int, backend_port: int) -> dict[str, object]:
    return {
        "servers": [
            {
                "default_log_level": "WARN",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "http",
                        "address": f"127.0.0.1:{port}",
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
        "cluster_manager": {"clusters": [{"name": "b", "hosts": [{"address": f"127.0.0.1:{backend_port}"}]}]},
    }


@contextmanager
def mosnpy_proxy(workdir: Path, backend_port: int, source: Path = ROOT) -> Iterator[tuple[int, int]]:
    """mosnpy from ``source`` (a checkout) in front of the backend."""
    port = free_port()
    cfg = workdir / f"mosnpy-{port}.json"
    cfg.write_text(json.dumps(mosnpy_config(port, backend_port)))
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen([*pinned(0), sys.executable, "-m", "mosnpy", "-c", str(cfg)], cwd=source, env=env)
    try:
        wait_for_port(port, 15, proc=proc)
        yield port, proc.pid
    finally:
        stop_process(proc)


@contextmanager
def nginx_proxy(workdir: Path, backend_port: int) -> Iterator[tuple[int, int]]:
    port = free_port()
    d = workdir / "nginx-proxy"
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text(
        f"""
daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream b {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([*pinned(0), nginx, "-c", str(conf), "-p", str(d)])
    try:
        wait_for_port(port, 15, proc=proc)
        yield port, proc.pid
    finally:
        stop_process(proc)


def measure(url: str, pid: int | None, duration: int, connections: int) -> dict[str, float]:
    run_wrk(url, 1, connections)  # warm up (connections, pools, caches)
    before = cpu_seconds(pid) if pid else 0.0
    result = run_wrk(url, duration, connections)
    if pid:
        result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--path", default="/")
    ap.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another mosnpy checkout to measure in the same run (e.g. a git worktree of the previous commit)",
    )
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            print(f"{tool} is required (apt-get install {tool})", file=sys.stderr)
            return 2
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with start_nginx(workdir / "backend") as backend:
            rows.append(
                (
                    "nginx backend, direct",
                    measure(f"{backend.url}{args.path}", None, args.duration, args.connections),
                )
            )
            for source in [ROOT, *args.baseline]:
                label = "mosnpy" if source == ROOT else f"mosnpy @ {source.name}"
                with mosnpy_proxy(workdir, backend.port, source) as (port, pid):
                    url = f"http://127.0.0.1:{port}{args.path}"
                    rows.append((label, measure(url, pid, args.duration, args.connections)))
            with nginx_proxy(workdir, backend.port) as (port, pid):
                rows.append(
                    (
                        "nginx reverse proxy",
                        measure(f"http://127.0.0.1:{port}{args.path}", pid, args.duration, args.connections),
                    )
                )
    base = rows[0][1]["rps"]
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s {args.path}  (proxies on core 0, wrk on core 1)"
    )
    print(f"{'':24} {'req/s':>9} {'vs direct':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}")
    for name, r in rows:
        cpu = f"{r['cpu_us']:.0f}" if "cpu_us" in r else "-"
        flag = "  (errors!)" if r["errors"] else ""
        print(
            f"{name:24} {r['rps']:9.0f} {r['rps'] / base:9.2f} {r['p50']:8.2f} {r['p99']:8.2f} {cpu:>11}{flag}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
