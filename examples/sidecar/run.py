"""mosnpy as a transparent sidecar: an app's traffic caught by iptables, in a netns.

    sudo .venv/bin/python examples/sidecar/run.py          # demo, then serve until Ctrl-C
    sudo .venv/bin/python examples/sidecar/run.py --once   # demo, then clean up and exit

Needs root, ``ip`` (iproute2), ``iptables`` and ``setpriv`` (util-linux).  It makes a
network namespace (``--netns``, default ``mosnpy-sidecar``) with only ``lo`` up, and in
it, all on 127.0.0.1:

* backends: HTTP ``web`` (:8080) and ``api`` (:8081), dubbo providers ``greeter``
  (:20880, ``com.example.Greeter``) and ``echo`` (:20881, ``com.example.Echo``), and
  a raw TCP echo (:9000);
* mosnpy from ``config.json``, run with group id 1337 (``setpriv --regid``);
* istio-style iptables rules: every TCP connection opened in the namespace goes to
  mosnpy's 127.0.0.1:15001, except the ones mosnpy itself opens (owner match on group
  1337, so mosnpy's upstream connections are not caught again);
* the "app": plain HTTP, dubbo and TCP clients that connect to the backends'
  addresses, knowing nothing of mosnpy.

mosnpy's ``virtualOutbound`` listener (``use_original_dst``) reads each connection's
original destination and hands it to the listener that owns that address: HTTP to
:8080 is routed by Host (``api`` goes to :8081; an unknown Host to the original
destination), dubbo to :20880 by service; everything else is forwarded by
``tcp_proxy`` to the original destination (the ``ORIGINAL_DST`` cluster).

The runner prints what each call got back and the iptables counters: the REDIRECT rule
counted exactly the app's connections, the owner rule mosnpy's own.  ``--json`` adds one
line ``RESULT {...}`` with all of it (the end-to-end test reads that).

SIGINT or SIGTERM stops everything: the processes are stopped by pid and waited for,
and the namespace (and with it the iptables rules) is deleted.  Internally the runner
starts itself again inside the namespace (``ip netns exec ... run.py --inside``).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from mosnpy_dubbo.hessian import Reader, encode_string

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.json"
LOCALHOST = "127.0.0.1"
#: the group mosnpy runs with; the iptables owner match lets its connections through
PROXY_GID = 1337
#: where the iptables rule sends the app's connections (virtualOutbound)
PROXY_PORT = 15001
HTTP_BACKENDS = {"web": 8080, "api": 8081}
DUBBO_PROVIDERS = {"greeter": 20880, "echo": 20881}
TCP_ECHO_PORT = 9000
CHAIN = "MOSNPY_OUTPUT"
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


class Stop(Exception):
    """Raised in the main thread by SIGINT or SIGTERM."""


def on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        raise SystemExit(f"run.py: {name!r} not found (install iproute2, iptables and util-linux)")
    return path


def run(*argv: str) -> str:
    """Run a command; its stdout, or SystemExit naming it and its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run.py: {' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --------------------------------------------------------------------------- backends


def http_backend(name: str, port: int) -> http.server.ThreadingHTTPServer:
    """Answers any GET with JSON: its name, the request's headers and the peer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "backend": name,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "peer": "{}:{}".format(*self.client_address),
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer((LOCALHOST, port), Handler)


# Dubbo 2.x framing: magic, flag, status, request id, body length; hessian2 bodies.
DUBBO_HEADER = struct.Struct(">2sBBQI")
DUBBO_MAGIC = b"\xda\xbb"
FLAG_REQUEST_TWO_WAY_HESSIAN2 = 0x80 | 0x40 | 2
FLAG_RESPONSE_HESSIAN2 = 2
RESPONSE_VALUE = b"\x91"  # hessian2 int 1: "a value follows"


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def dubbo_request(request_id: int, service: str, method: str, arg: str) -> bytes:
    body = b"".join(encode_string(s) for s in ("2.0.2", service, "1.0.0", method, "Ljava/lang/String;", arg))
    body += b"H" + encode_string("path") + encode_string(service) + b"Z"  # attachments
    return DUBBO_HEADER.pack(DUBBO_MAGIC, FLAG_REQUEST_TWO_WAY_HESSIAN2, 0, request_id, len(body)) + body


def read_dubbo_frame(sock: socket.socket) -> tuple[int, int, int, bytes]:
    magic, flag, status, request_id, length = DUBBO_HEADER.unpack(recv_exactly(sock, DUBBO_HEADER.size))
    if magic != DUBBO_MAGIC:
        raise ConnectionError(f"not a dubbo frame: {magic.hex()}")
    return flag, status, request_id, recv_exactly(sock, length)


def dubbo_provider(name: str, port: int) -> socketserver.ThreadingTCPServer:
    """Answers each call with ``"<name>: <service>.<method>(<arg>)"``."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            try:
                while True:
                    _, _, request_id, body = read_dubbo_frame(sock)
                    reader = Reader(body)
                    _, service, _, method, _, arg = (reader.read_string() for _ in range(6))
                    value = encode_string(f"{name}: {service}.{method}({arg})")
                    sock.sendall(
                        DUBBO_HEADER.pack(DUBBO_MAGIC, FLAG_RESPONSE_HESSIAN2, 20, request_id, 1 + len(value))
                        + RESPONSE_VALUE
                        + value
                    )
            except (ConnectionError, OSError):
                pass

    return TcpServer((LOCALHOST, port), Handler)


class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class TcpEcho(TcpServer):
    """Echoes bytes until the client half-closes; remembers who connected."""

    def __init__(self, port: int) -> None:
        self.peers: list[str] = []
        super().__init__((LOCALHOST, port), EchoHandler)


class EchoHandler(socketserver.BaseRequestHandler):
    server: TcpEcho

    def handle(self) -> None:
        sock: socket.socket = self.request
        self.server.peers.append("{}:{}".format(*self.client_address))
        while data := sock.recv(65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------- the app


def app(echo: TcpEcho) -> dict[str, Any]:
    """The application: it connects to the backends' own addresses, as if no proxy
    existed.  Returns what each call got back."""
    report: dict[str, Any] = {"http": [], "dubbo": [], "tcp": {}, "app_connections": 0}
    for host in ("web", "api", "unknown.example"):
        conn = http.client.HTTPConnection(LOCALHOST, HTTP_BACKENDS["web"], timeout=5)
        try:
            conn.request("GET", "/hello", headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        report["app_connections"] += 1
        entry: dict[str, Any] = {
            "host": host,
            "address": f"{LOCALHOST}:{HTTP_BACKENDS['web']}",
            "status": resp.status,
        }
        entry.update(json.loads(body) if resp.status == 200 else {"body": body.decode(errors="replace")})
        report["http"].append(entry)
    with socket.create_connection((LOCALHOST, DUBBO_PROVIDERS["greeter"]), timeout=5) as sock:
        report["app_connections"] += 1
        calls = [("com.example.Greeter", "sayHello", "app"), ("com.example.Echo", "echo", "ping")]
        for request_id, (service, method, arg) in enumerate(calls, start=1):
            sock.sendall(dubbo_request(request_id, service, method, arg))
            _, status, got_id, body = read_dubbo_frame(sock)
            value = (
                Reader(body, 1).read_string() if body[:1] == RESPONSE_VALUE else body.decode(errors="replace")
            )
            report["dubbo"].append(
                {
                    "address": f"{LOCALHOST}:{DUBBO_PROVIDERS['greeter']}",
                    "service": service,
                    "status": status,
                    "request_id": got_id,
                    "value": value,
                }
            )
    payload = b"raw bytes that no protocol of mosnpy understands\n" * 64
    with socket.create_connection((LOCALHOST, TCP_ECHO_PORT), timeout=5) as sock:
        report["app_connections"] += 1
        local = "{}:{}".format(*sock.getsockname())
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
        report["tcp"] = {
            "address": f"{LOCALHOST}:{TCP_ECHO_PORT}",
            "sent": len(payload),
            "echoed": bytes(received) == payload,
            "app_address": local,
            "peer_seen_by_backend": echo.peers[-1] if echo.peers else "",
        }
    return report


# --------------------------------------------------------------------------- inside the namespace


def install_iptables() -> None:
    """The istio-style rules: catch the namespace's outbound TCP, except mosnpy's own."""
    iptables = tool("iptables")
    run(iptables, "-t", "nat", "-N", CHAIN)
    run(iptables, "-t", "nat", "-A", CHAIN, "-m", "owner", "--gid-owner", str(PROXY_GID), "-j", "RETURN")
    run(iptables, "-t", "nat", "-A", CHAIN, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(PROXY_PORT))
    run(iptables, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", CHAIN)


def iptables_counters() -> dict[str, int]:
    """Connections each rule caught (the nat table sees a connection's first packet)."""
    out = run(tool("iptables"), "-t", "nat", "-L", CHAIN, "-n", "-v", "-x")
    counts: dict[str, int] = {}
    for line in out.splitlines()[2:]:
        fields = line.split()
        if len(fields) >= 3:
            counts[{"RETURN": "proxy_own", "REDIRECT": "redirected"}.get(fields[2], fields[2])] = int(
                fields[0]
            )
    return counts


def listening(port: int) -> bool:
    """Whether something listens on TCP ``port`` (read from /proc: no connection made)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                return True
    return False


def start_mosnpy() -> subprocess.Popen[bytes]:
    argv = [tool("setpriv"), f"--regid={PROXY_GID}", "--clear-groups", "--"]
    argv += [sys.executable, "-m", "mosnpy", "-c", str(CONFIG)]
    proxy = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not listening(PROXY_PORT):
        if proxy.poll() is not None:
            raise SystemExit(f"run.py: mosnpy exited with status {proxy.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"run.py: mosnpy did not listen on {PROXY_PORT} within 15 s")
        time.sleep(0.05)
    return proxy


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a child by its pid and wait for it (SIGKILL after ``timeout``)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def print_report(report: dict[str, Any]) -> None:
    for h in report["http"]:
        print(
            f"app: GET http://{h['address']}/hello Host: {h['host']} -> {h['status']} from {h.get('backend')}"
            f" (x-mosnpy-sidecar: {h.get('headers', {}).get('x-mosnpy-sidecar', '-')})",
            flush=True,
        )
    for d in report["dubbo"]:
        print(f"app: dubbo {d['service']} at {d['address']} -> {d['status']} {d['value']!r}", flush=True)
    t = report["tcp"]
    print(
        f"app: {t['sent']} bytes to tcp {t['address']} echoed={t['echoed']}; the app was {t['app_address']}, "
        f"the echo server saw {t['peer_seen_by_backend']} (mosnpy)",
        flush=True,
    )
    c = report["iptables"]
    print(
        f"iptables: REDIRECT caught {c.get('redirected')} connections "
        f"(the app made {report['app_connections']}); mosnpy's own {c.get('proxy_own')} went out untouched",
        flush=True,
    )


def inside(args: argparse.Namespace) -> int:
    """In the namespace: backends, mosnpy, iptables, then the app."""
    servers: list[socketserver.BaseServer] = []
    proxy: subprocess.Popen[bytes] | None = None
    try:
        servers += [http_backend(name, port) for name, port in HTTP_BACKENDS.items()]
        servers += [dubbo_provider(name, port) for name, port in DUBBO_PROVIDERS.items()]
        echo = TcpEcho(TCP_ECHO_PORT)
        servers.append(echo)
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        proxy = start_mosnpy()
        install_iptables()
        report = app(echo)
        report["iptables"] = iptables_counters()
        report["mosnpy_pid"] = proxy.pid
        print_report(report)
        if args.json:
            print("RESULT " + json.dumps(report), flush=True)
        if not args.once:
            print(
                f"READY: mosnpy (pid {proxy.pid}) intercepts the namespace {args.netns!r}; try\n"
                f"  sudo ip netns exec {args.netns} curl -s -H 'Host: api' http://127.0.0.1:8080/\n"
                "Ctrl-C stops",
                flush=True,
            )
            while proxy.poll() is None:
                time.sleep(0.5)
            return 1  # mosnpy died
        return 0
    except Stop as exc:
        print(f"{exc}: stopping", flush=True)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if proxy is not None:
            stop(proxy)
        for server in servers:
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------- outside


def outside(args: argparse.Namespace) -> int:
    """Make the namespace, run ``inside`` in it, delete it (also on SIGTERM)."""
    if os.geteuid() != 0:
        raise SystemExit("run.py: needs root (ip netns, iptables)")
    ip = tool("ip")
    tool("iptables")
    tool("setpriv")
    run(ip, "netns", "add", args.netns)
    child: subprocess.Popen[bytes] | None = None
    try:
        run(ip, "-n", args.netns, "link", "set", "lo", "up")
        argv = [ip, "netns", "exec", args.netns, sys.executable, str(Path(__file__).resolve()), "--inside"]
        argv += (
            ["--netns", args.netns] + (["--once"] if args.once else []) + (["--json"] if args.json else [])
        )
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        return child.wait()
    except Stop as exc:
        print(f"{exc}: stopping", flush=True)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if child is not None:
            stop(child)
        # Anything still in the namespace was started by this run: stop it by pid.
        pids = subprocess.run([ip, "netns", "pids", args.netns], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run([ip, "netns", "del", args.netns], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="run the demo, then clean up and exit")
    parser.add_argument(
        "--json", action="store_true", help="also print the results as one RESULT {json} line"
    )
    parser.add_argument(
        "--netns", default="mosnpy-sidecar", help="network namespace to create (default: %(default)s)"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return inside(args) if args.inside else outside(args)


if __name__ == "__main__":
    sys.exit(main())
