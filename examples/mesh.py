"""Run MOSN's RPC mesh with mosnpy sidecars and real third-party peers.

    python examples/mesh.py dubbo      # or: bolt

consumer → client-side mosnpy (:2045, egress) → server-side mosnpy (:2046, ingress)
→ provider (:20880 for dubbo, :12200 for bolt).  The consumer and provider are
sofa-rpc-node programs from tests/peers (npm packages other people wrote; install them
once with ``cd tests/peers && npm ci``).  The consumer makes 200 calls with 20 in
flight over one connection, then one call that makes the provider throw; everything
is stopped afterwards.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "tests" / "peers"
PROVIDER_PORT = {"dubbo": 20880, "bolt": 12200}


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def consume(kind: str, *args: str) -> dict[str, object]:
    out = subprocess.run(
        ["node", f"{kind}_consumer.js", "--port", "2045", *args],
        cwd=PEERS, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else "dubbo"
    if kind not in PROVIDER_PORT:
        raise SystemExit("usage: mesh.py dubbo|bolt")
    if not (PEERS / "node_modules").is_dir():
        raise SystemExit("install the peers first: cd tests/peers && npm ci --no-audit --no-fund")
    here = ROOT / "examples" / kind
    procs: list[subprocess.Popen[bytes]] = []
    try:
        provider = subprocess.Popen(
            ["node", f"{kind}_provider.js", "--port", str(PROVIDER_PORT[kind])], cwd=PEERS
        )
        procs.append(provider)
        wait_port(PROVIDER_PORT[kind], provider)
        for side, port in (("server", 2046), ("client", 2045)):
            mosn = subprocess.Popen([sys.executable, "-m", "mosnpy", "-c", str(here / f"{side}_mosn.json")])
            procs.append(mosn)
            wait_port(port, mosn)
        calls = consume(kind, "--calls", "200", "--concurrency", "20")
        print(
            f"{kind}: 200 calls, 20 in flight, through two mosnpy hops: {calls['ok']} ok in {calls['ms']} ms"
        )
        failed = consume(kind, "--method", "fail")
        print(f"{kind}: the provider's exception came through intact: {failed.get('provider_error')}")
        return 0 if calls["ok"] == 200 and failed["ok"] == 1 else 1
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
