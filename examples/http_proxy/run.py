"""Run the example: three small HTTP backends and mosnpy in front of them.

    python examples/http_proxy/run.py          # serve until Ctrl-C
    python examples/http_proxy/run.py --once   # show a few requests, then stop

Backends ``stable-1`` (:8081), ``stable-2`` (:8082) and ``canary`` (:8083) answer with
their own name; mosnpy (``config.json``, MOSN's v2 layout) listens on 127.0.0.1:2045,
round-robins ``/`` over the stable pair and sends ``x-canary: 1`` to the canary.
"""

from __future__ import annotations

import argparse
import http.server
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROXY = "http://127.0.0.1:2045"


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


def wait_ready(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def demo() -> None:
    for path, headers in [("/health", {}), ("/", {}), ("/", {}), ("/", {"x-canary": "1"})]:
        req = urllib.request.Request(PROXY + path, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            print(f"GET {path} {headers or ''} -> {resp.status} {resp.read().decode().strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="run the demo requests, then stop")
    args = parser.parse_args()
    servers = [backend("stable-1", 8081), backend("stable-2", 8082), backend("canary", 8083)]
    proxy = subprocess.Popen([sys.executable, "-m", "mosnpy", "-c", str(HERE / "config.json")])
    try:
        wait_ready(PROXY + "/health")
        demo()
        if not args.once:
            print(f"mosnpy is serving on {PROXY} (try: curl -H 'x-canary: 1' {PROXY}/); Ctrl-C stops")
            proxy.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for s in servers:
            s.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
