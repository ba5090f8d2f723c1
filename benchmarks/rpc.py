"""RPC proxy benchmark: sofa-rpc-node dubbo and bolt peers, direct and through mosnpy.

    python benchmarks/rpc.py [--calls 20000] [--concurrency 50] [--kinds dubbo,bolt]

For each protocol: the consumer calls the provider directly, then through one mosnpy
(``mosnpy -c``, pinned to core 0).  Each row shows calls/s (from the consumer's own
timing of the calls, one client connection, ``--concurrency`` calls in flight), and for
mosnpy its CPU time (user + sys, /proc/PID/stat) per call.  The peers are npm
packages other people wrote (tests/peers; ``cd tests/peers && npm ci`` first).  Every
process is started here, on 127.0.0.1, and stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.http1 import cpu_seconds, pinned  # noqa: E402
from tests.peers.harness import run_consumer, start_provider, stop  # noqa: E402
from tests.support import free_port, stop_process, wait_for_port  # noqa: E402


def config(port: int, upstream_port: int, protocol: str) -> dict[str, Any]:
    route = {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "p"}}
    proxy = {"downstream_protocol": protocol, "router_config_name": "r"}
    return {
        "servers": [
            {
                "default_log_level": "WARN",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [{"name": "a", "domains": ["*"], "routers": [route]}],
                    }
                ],
                "listeners": [
                    {
                        "name": "rpc",
                        "address": f"127.0.0.1:{port}",
                        "filter_chains": [{"filters": [{"type": "proxy", "config": proxy}]}],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [{"name": "p", "hosts": [{"address": f"127.0.0.1:{upstream_port}"}]}]
        },
    }


def calls_per_second(summary: dict[str, Any]) -> float:
    if summary["returncode"] != 0:
        raise SystemExit(f"consumer failed: {summary}")
    return float(summary["ok"]) / (float(summary["ms"]) / 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--kinds", default="dubbo,bolt")
    args = ap.parse_args()
    opts = {"calls": args.calls, "concurrency": args.concurrency, "deadline_ms": 300_000}
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            provider = start_provider(kind, 0)
            try:
                run_consumer(kind, provider.port, calls=200, concurrency=20)  # warm up
                rows.append(
                    (f"{kind} direct", calls_per_second(run_consumer(kind, provider.port, **opts)), None)
                )
                port = free_port()
                path = Path(tmp) / f"{kind}.json"
                path.write_text(json.dumps(config(port, provider.port, kind)))
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                mosn = subprocess.Popen(
                    [*pinned(0), sys.executable, "-m", "mosnpy", "-c", str(path)], cwd=ROOT, env=env
                )
                try:
                    wait_for_port(port, 15, proc=mosn)
                    run_consumer(kind, port, calls=200, concurrency=20)
                    before = cpu_seconds(mosn.pid)
                    summary = run_consumer(kind, port, **opts)
                    cpu_us = (cpu_seconds(mosn.pid) - before) / max(summary["ok"], 1) * 1e6
                    rows.append((f"{kind} through mosnpy", calls_per_second(summary), cpu_us))
                finally:
                    stop_process(mosn)
            finally:
                stop(provider)
    print(f"\n{args.calls} calls, {args.concurrency} in flight over one client connection")
    print(f"{'':24} {'calls/s':>9} {'mosnpy CPU µs/call':>19}")
    for name, rate, cpu in rows:
        print(f"{name:24} {rate:9.0f} {'-' if cpu is None else f'{cpu:.0f}':>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
