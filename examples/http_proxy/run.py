"""Run the example: three small HTTP backends and mosnpy in front of them.

    python examples/http_proxy/run.py          # serve until Ctrl-C (or SIGTERM)
    python examples/http_proxy/run.py --once   # show a few requests, then stop

Backends ``stable-1`` (:8081), ``stable-2`` (:8082) and ``canary`` (:8083) answer with
their own name; mosnpy (``config.json``, MOSN's v2 layout) listens on 127.0.0.1:2045,
round-robins ``/`` over the stable pair and sends ``x-canary: 1`` to the canary.
``--any-port`` puts all four on ports the OS picks (the config is rewritten to match).

SIGINT or SIGTERM stops everything: the mosnpy child is terminated by its pid and
waited for, then the backends shut down.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
PORTS = {"stable-1": 8081, "stable-2": 8082, "canary": 8083}
PROXY_PORT = 2045


class Stop(Exception):
    """Raised in the main thread by SIGINT or SIGTERM."""


def on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def backend(name: str, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"hello from {name}: {self.command} {self.path}\n".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(proxy_port: int, backends: dict[str, int], workdir: str) -> Path:
    """``config.json`` with the proxy and backend ports replaced (for ``--any-port``)."""
    config = json.loads((HERE / "config.json").read_text())
    config["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{proxy_port}"
    by_cluster = {"stable": ["stable-1", "stable-2"], "canary": ["canary"]}
    for cluster in config["cluster_manager"]["clusters"]:
        cluster["hosts"] = [{"address": f"127.0.0.1:{backends[n]}"} for n in by_cluster[cluster["name"]]]
    path = Path(workdir) / "config.json"
    path.write_text(json.dumps(config))
    return path


def wait_ready(url: str, proxy: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proxy.poll() is not None:
                raise RuntimeError(f"mosnpy exited with status {proxy.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def demo(url: str) -> None:
    for path, headers in [("/health", {}), ("/", {}), ("/", {}), ("/", {"x-canary": "1"})]:
        req = urllib.request.Request(url + path, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            print(f"GET {path} {headers or ''} -> {resp.status} {resp.read().decode().strip()}", flush=True)


def stop(proxy: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate the mosnpy child by its pid and wait for it (SIGKILL after ``timeout``)."""
    if proxy.poll() is None:
        proxy.terminate()
    try:
        proxy.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="run the demo requests, then stop")
    parser.add_argument(
        "--any-port", action="store_true", help="use ports the OS picks, not 2045 and 8081-8083"
    )
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    servers: list[http.server.ThreadingHTTPServer] = []
    proxy: subprocess.Popen[bytes] | None = None
    status = 0
    with tempfile.TemporaryDirectory() as workdir:
        try:
            servers = [backend(name, 0 if args.any_port else port) for name, port in PORTS.items()]
            config = HERE / "config.json"
            proxy_port = PROXY_PORT
            if args.any_port:
                proxy_port = free_port()
                ports = {name: s.server_address[1] for name, s in zip(PORTS, servers, strict=True)}
                config = config_for(proxy_port, ports, workdir)
            url = f"http://127.0.0.1:{proxy_port}"
            proxy = subprocess.Popen([sys.executable, "-m", "mosnpy", "-c", str(config)])
            wait_ready(url + "/health", proxy)
            demo(url)
            if not args.once:
                print(
                    f"mosnpy (pid {proxy.pid}) is serving on {url} "
                    f"(try: curl -H 'x-canary: 1' {url}/); Ctrl-C stops",
                    flush=True,
                )
                status = proxy.wait()
        except Stop as exc:
            print(f"{exc}: stopping", flush=True)
        finally:
            # A second signal must not cut the cleanup short.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            if proxy is not None:
                stop(proxy)
            for s in servers:
                s.shutdown()
                s.server_close()
    return status


if __name__ == "__main__":
    sys.exit(main())
