"""mosnpy against the cheapest trio proxy doing the same job: every row, one run, one table.

    .venv/bin/python benchmarks/compare.py [--reps 3] [--duration 8] [--rows direct,nginx,floor,mosnpy]
                                           [--suites http1,http2,dubbo,bolt,tls,grpc] [--baseline OTHER_CHECKOUT]

Suites and rows:

* ``http1``: ``wrk -t1 -c50`` for ``--duration`` s against an nginx backend that answers
  13 bytes.  Rows: ``direct`` (wrk to the backend), ``nginx`` (nginx as reverse proxy,
  1 worker, keep-alive upstream), ``floor`` (``floors/http1_floor.py``), ``mosnpy``
  (``.venv/bin/mosnpy -c`` a generated config: one route, one cluster).
* ``http2``: ``h2load -t1 -c50 -m10`` (50 h2c connections x 10 streams in flight) for
  ``--duration`` s against an nginx backend (``listen ... http2``, h2c with prior
  knowledge, ``sendfile off``: with it nginx 1.22 delays answers on reused h2
  connections by ~40 ms) that answers the same 13 bytes and allows 128 streams per
  connection.  Rows: ``direct``, ``floor`` (``floors/h2_floor.py``: h2c both ways, one
  shared upstream connection, more only when its MAX_CONCURRENT_STREAMS is reached),
  ``mosnpy`` (downstream_protocol ``Http2``, upstream ``Auto``).  No ``nginx`` row: nginx
  cannot proxy to an HTTP/2 upstream.
* ``dubbo`` / ``bolt``: ``rpc_load.py load``, 4 connections x 32 calls in flight, real
  request frames with fresh ids, every answer checked against its caller, to
  ``rpc_load.py provide`` (answers with the real response frame).  Rows: ``direct``,
  ``floor`` (``floors/rpc_floor.py``: ids rewritten on one shared upstream connection),
  ``mosnpy`` (a config whose route matches the ``service`` header).
* ``tls``: TLS-terminating HTTP/1 in front of the ``http1`` backend, with a certificate for
  127.0.0.1 from a throwaway CA made at run start (``trustme``, PEMs in the log
  directory).  Two runs per row: ``wrk -t1 -c50`` over https with keep-alive (CPU µs per
  request), then with ``Connection: close`` (line ``ROW hs``: one new connection and TLS
  handshake per request, so req/s = handshakes/s, and CPU µs per handshake+request; wrk
  keeps its session across reconnects, so these are resumed TLS 1.2 handshakes on both
  rows).  Rows: ``nginx`` (``listen ... ssl``, 1 worker, keep-alive upstream), ``mosnpy``
  (the http1 config plus ``tls_context`` on the filter chain).  No ``floor`` (there is
  no TLS floor) and no ``direct`` row.
* ``grpc``: ``grpc_load.py load``, ``--grpc-threads`` (8) threads sharing one grpcio
  channel, each making blocking unary calls one after another (so that many in flight)
  with ``--grpc-size`` (64) byte messages, every answer checked equal to its request,
  to ``grpc_load.py serve`` (a grpcio server, 8 worker threads, ``/bench.Echo/Unary``
  echoing raw bytes).  Rows: ``direct`` and ``mosnpy`` (downstream_protocol ``Http2``,
  upstream ``Http2``, one route on prefix ``/``).  No ``floor`` (there is no gRPC floor)
  and no ``nginx`` row; under the table, ``rate / direct`` gives each row's calls/s
  relative to ``direct``.  Needs grpcio (the ``test`` extra).
* ``mosnpy+log`` (any suite): the ``mosnpy`` row with an access log on its listener
  (MOSN's default format, to a file in the log directory): its cost, in the same run.
* ``mosnpy-c`` (any suite): the ``mosnpy`` row run from a ``MOSNPY_MYPYC=1`` build of
  this checkout (``setup.py``: the request path compiled with mypyc, and the plugins'
  codecs), installed once per run into the log directory (needs the ``dev`` extra, a C
  compiler and the Python headers).
* ``--baseline PATH`` adds a row ``@NAME`` per suite: mosnpy from another checkout (e.g.
  a ``git worktree`` of an earlier commit), run as ``python -m mosnpy`` with that
  checkout (and its plugins) first on PYTHONPATH.

The proxy runs alone on CPU 0 (taskset); backend, provider and load run on CPU 1.  Per
row and repetition the proxy is started afresh, checked with one request (HTTP; h2c for
http2) or a 1 s checked run (RPC, gRPC), warmed up for 1 s (http2: 2 s, while the upstream
connections open), then measured.  Columns: requests (calls) per second; CPU µs per
request = the proxy's user+sys time (/proc/PID/stat, summed over its session) during the
measured run / requests completed; errors (wrk socket errors and non-2xx; h2load's
failed requests: stream errors, timeouts, 4xx/5xx; RPC misroutes, mismatches, altered
answers, lost calls, failed connections; gRPC failed calls (any non-OK status, deadline
exceeded) and answers differing from their request), summed over repetitions; and each row's CPU
per request and rate relative to the floor.  Cells are medians over ``--reps``;
repetitions are interleaved so drift hits every row alike.  Compare rows of one run,
never across runs.

Everything runs on 127.0.0.1, on ports picked here; every process is started here and
stopped by its pid; every step has a timeout.  Logs stay in a temporary directory,
kept (and named) when a row fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script: ``benchmarks`` importable
    sys.path.append(str(ROOT))

from benchmarks import compiled  # noqa: E402

PROXY_CPU, LOAD_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = b"Hello, world!"
ROW_KINDS = ("direct", "nginx", "floor", "mosnpy", "mosnpy+log", "mosnpy-c")
SUITES = ("http1", "http2", "dubbo", "bolt", "tls", "grpc")
HTTP_PROTOCOLS = {"http1": "Http1", "http2": "Http2", "tls": "Http1", "grpc": "Http2"}
UPSTREAM_PROTOCOLS = {"grpc": "Http2"}  # the others leave mosnpy's default (Auto)
NO_FLOOR = ("tls", "grpc")
NEEDS_H2LOAD = "needs h2load (bash .ci/run installs nghttp2-client)"
NEEDS_GRPCIO = "needs grpcio in this Python (pip install -e '.[test]')"
START_TIMEOUT = 20.0


class RowFailed(Exception):
    """A row could not be measured; the message says why."""


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu)]
    return []


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str, argv: list[str], cpu: int, logdir: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Proc:
    """Start ``argv`` pinned to ``cpu`` in a session of its own, output to a log file."""
    log = logdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [*pinned(cpu), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid`` (ours: each process is started in its own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[3]) == sid:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()  # [3] session, [11] utime, [12] stime


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU seconds of ``proc`` and every other live process of its session."""
    ticks = 0
    for pid in session_pids(proc.pid) or [proc.pid]:
        try:
            fields = _stat(pid)
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / CLK_TCK


def stop(proc: Proc) -> None:
    """SIGTERM by pid, SIGKILL after 5 s; then the same for any process it left in its session."""
    others = [p for p in session_pids(proc.pid) if p != proc.pid]
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(5)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)
    for pid in others:
        try:
            if int(_stat(pid)[3]) == proc.pid:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


@contextmanager
def running(proc: Proc, port: int) -> Iterator[Proc]:
    """Wait until ``proc`` accepts on ``port``; stop it on the way out."""
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.popen.poll() is not None:
                raise RowFailed(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RowFailed(f"{proc.name} did not listen on {port} in {START_TIMEOUT:g} s") from None
                time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


# ---------------------------------------------------------------- configs


def mosnpy_config(
    port: int,
    upstream_port: int,
    protocol: str,
    access_log: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    upstream_protocol: str | None = None,
) -> dict[str, Any]:
    """One listener, one route, one cluster; RPC routes match on the ``service`` header;
    with ``access_log``, the listener logs every request there (MOSN's default format);
    with ``tls`` (certificate chain, key), the listener terminates TLS (MOSN's ``tls_context``);
    ``upstream_protocol`` sets the proxy's (left out: mosnpy's default, ``Auto``)."""
    tls_context = (
        {"tls_context": {"status": True, "cert_chain": str(tls[0]), "private_key": str(tls[1])}}
        if tls
        else {}
    )
    if protocol in ("Http1", "Http2"):
        match: dict[str, Any] = {"prefix": "/"}
        listener = f"bench_{protocol.lower()}"
    else:
        match = {"headers": [{"name": "service", "value": ".*"}]}
        listener = f"egress_{protocol}"
    return {
        "servers": [
            {
                "default_log_level": "ERROR",
                "routers": [
                    {
                        "router_config_name": "bench",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [{"match": match, "route": {"cluster_name": "backend"}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": listener,
                        **({"access_logs": [{"log_path": str(access_log)}]} if access_log else {}),
                        "address": f"127.0.0.1:{port}",
                        "bind_port": True,
                        "filter_chains": [
                            {
                                **tls_context,
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {
                                            "downstream_protocol": protocol,
                                            **(
                                                {"upstream_protocol": upstream_protocol}
                                                if upstream_protocol
                                                else {}
                                            ),
                                            "router_config_name": "bench",
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "backend",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "connect_timeout": "2s",
                    "hosts": [{"address": f"127.0.0.1:{upstream_port}"}],
                }
            ]
        },
    }


def nginx_config(
    prefix: Path,
    port: int,
    upstream_port: int | None,
    http2: bool = False,
    tls: tuple[Path, Path] | None = None,
) -> Path:
    """nginx: the backend (fixed 13-byte body) or, with ``upstream_port``, a reverse proxy;
    ``http2``: the backend speaks h2c (prior knowledge), with sendfile off (nginx 1.22 with
    sendfile delays answers on reused h2 connections by ~40 ms); ``tls`` (certificate
    chain, key): the listener terminates TLS (``listen ... ssl``)."""
    prefix.mkdir(parents=True, exist_ok=True)
    if upstream_port is None:
        upstream = ""
        location = f"location / {{ default_type text/plain; return 200 '{BODY.decode()}'; }}"
    else:
        upstream = f"upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
        location = (
            "location / { proxy_pass http://backend; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; }'
        )
    temp = " ".join(
        f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    ssl_conf = f" ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off; master_process off; worker_processes 1;
pid {prefix}/nginx.pid; lock_file {prefix}/nginx.lock; error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; {temp}
  keepalive_timeout 65s; keepalive_requests 1000000;{" sendfile off;" if http2 else ""}
  {upstream}
  server {{ listen 127.0.0.1:{port}{" http2" if http2 else ""}{" ssl" if tls else ""} backlog=4096;{ssl_conf} {location} }}
}}
"""
    )
    return conf


# ---------------------------------------------------------------- proxies per row


@dataclass
class Bench:
    args: argparse.Namespace
    logdir: Path
    mosnpy_bin: list[str]
    nginx: str | None
    results: dict[tuple[str, str], list[dict[str, float]]] = field(default_factory=dict)
    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    pems: dict[str, Path] = field(default_factory=dict)

    def rows(self, suite: str) -> list[str]:
        if suite == "tls":  # no TLS floor; direct would be the plain backend, not comparable
            rows = [r for r in self.args.rows if r not in ("direct", "floor")]
        elif suite == "grpc":  # no gRPC floor; nginx is HTTP/1 only here
            rows = [r for r in self.args.rows if r not in ("nginx", "floor")]
        else:
            rows = [r for r in self.args.rows if r != "nginx" or suite == "http1"]
        return rows + [f"@{path.name}" for path in self.args.baseline]

    def compiled(self) -> Path:
        """A ``MOSNPY_MYPYC=1`` install of this checkout, built once per run."""
        try:
            return compiled.build(self.logdir / "compiled", ROOT)
        except compiled.BuildFailed as exc:
            raise RowFailed(str(exc)[-800:]) from None

    def certs(self) -> tuple[Path, Path]:
        """A throwaway CA and a certificate for 127.0.0.1, made once per run with ``trustme``,
        written as PEM files into the log directory: (certificate chain, key)."""
        if not self.pems:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            self.pems = {
                "ca": self.logdir / "tls-ca.pem",
                "chain": self.logdir / "tls-cert.pem",
                "key": self.logdir / "tls-key.pem",
            }
            ca.cert_pem.write_to_path(str(self.pems["ca"]))
            cert.private_key_pem.write_to_path(str(self.pems["key"]))
            for blob in cert.cert_chain_pems:
                blob.write_to_path(str(self.pems["chain"]), append=True)
        return self.pems["chain"], self.pems["key"]

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts only this run's throwaway CA."""
        self.certs()
        return ssl.create_default_context(cafile=str(self.pems["ca"]))

    def proxy(self, suite: str, row: str, upstream_port: int) -> tuple[Proc, int] | None:
        """Start the proxy of ``row`` in front of ``upstream_port``: (process, port), or
        None for ``direct``."""
        if row == "direct":
            return None
        port = free_port()
        tag = f"{suite}-{row.lstrip('@')}-{port}"
        tls = self.certs() if suite == "tls" else None
        if row == "nginx":
            if suite not in ("http1", "tls"):
                raise RowFailed("nginx row is HTTP/1 only")
            if self.nginx is None:
                raise RowFailed("nginx is not installed")
            conf = nginx_config(self.logdir / tag, port, upstream_port, tls=tls)
            argv = [self.nginx, "-c", str(conf), "-p", str(conf.parent)]
            return spawn(tag, argv, PROXY_CPU, self.logdir), port
        if row == "floor":
            if suite in NO_FLOOR:
                raise RowFailed(f"no {suite} floor")
            if suite == "http1":
                argv = [sys.executable, str(HERE / "floors" / "http1_floor.py")]
            elif suite == "http2":
                argv = [sys.executable, str(HERE / "floors" / "h2_floor.py")]
            else:
                argv = [sys.executable, str(HERE / "floors" / "rpc_floor.py"), "--proto", suite]
            argv += ["--listen", str(port), "--upstream", str(upstream_port)]
            return spawn(tag, argv, PROXY_CPU, self.logdir), port
        cfg = self.logdir / f"{tag}.json"
        access_log = self.logdir / f"{tag}.access.log" if row == "mosnpy+log" else None
        protocol = HTTP_PROTOCOLS.get(suite, suite)
        upstream = UPSTREAM_PROTOCOLS.get(suite)
        cfg.write_text(json.dumps(mosnpy_config(port, upstream_port, protocol, access_log, tls, upstream)))
        if row in ("mosnpy", "mosnpy+log"):
            return spawn(tag, [*self.mosnpy_bin, "-c", str(cfg)], PROXY_CPU, self.logdir), port
        if row == "mosnpy-c":
            # -P: the compiled install first, not the checkout (the working directory)
            env = {**os.environ, "PYTHONPATH": str(self.compiled())}
            argv = [sys.executable, "-P", "-m", "mosnpy", "-c", str(cfg)]
            return spawn(tag, argv, PROXY_CPU, self.logdir, env=env, cwd=self.logdir), port
        checkout = next(p for p in self.args.baseline if f"@{p.name}" == row)
        paths = [str(checkout), *(str(p) for p in sorted((checkout / "plugins").glob("*")) if p.is_dir())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        argv = [sys.executable, "-m", "mosnpy", "-c", str(cfg)]
        return spawn(tag, argv, PROXY_CPU, self.logdir, env=env, cwd=checkout), port

    # ------------------------------------------------------------ one measurement

    def measure(self, suite: str, row: str, upstream_port: int) -> dict[str, float]:
        started = self.proxy(suite, row, upstream_port)
        with ExitStack() as stack:
            if started is None:
                proc, port = None, upstream_port
            else:
                proc = stack.enter_context(running(*started))
                port = started[1]
            if suite == "http1":
                check_http(port)
                run_wrk(port, 1, self.args.connections)  # warm-up
            elif suite == "tls":
                check_http(port, self.client_tls())
                run_wrk(port, 1, self.args.connections, https=True)  # warm-up
            elif suite == "http2":
                check_h2(port)
                run_h2load(port, 2, self.args.connections, self.args.streams)  # warm-up
            elif suite == "grpc":
                warm = run_grpc_load(port, 1.0, self.args)
                if warm["errors"] or not warm["calls"]:
                    raise RowFailed(f"checked warm-up run failed: {warm}")
            else:
                warm = run_rpc_load(suite, port, 1.0, self.args)
                if warm["errors"] or not warm["calls"]:
                    raise RowFailed(f"checked warm-up run failed: {warm}")
            before = cpu_seconds(proc) if proc else 0.0
            if suite in ("http1", "tls"):
                out = run_wrk(port, self.args.duration, self.args.connections, https=suite == "tls")
                done, rate, errors = out["requests"], out["rps"], out["errors"]
            elif suite == "http2":
                out = run_h2load(port, self.args.duration, self.args.connections, self.args.streams)
                done, rate, errors = out["requests"], out["rps"], out["errors"]
            elif suite == "grpc":
                res = run_grpc_load(port, float(self.args.duration), self.args)
                if not res["calls"]:
                    raise RowFailed(f"no gRPC call completed: {res}")
                done, rate, errors = res["calls"], res["calls_per_s"], res["errors"]
            else:
                res = run_rpc_load(suite, port, float(self.args.duration), self.args)
                done, rate, errors = res["completed"], res["calls_per_s"], res["errors"]
            result = {"rate": float(rate), "errors": float(errors), "done": float(done)}
            if proc is not None:
                if proc.popen.poll() is not None:
                    raise RowFailed(f"{proc.name} died during the run:\n{proc.tail()}")
                result["cpu_us"] = (cpu_seconds(proc) - before) / max(done, 1) * 1e6
            if suite == "tls":  # second run: a new connection, so a (resumed) handshake, per request
                before = cpu_seconds(proc) if proc else 0.0
                out = run_wrk(port, self.args.duration, self.args.connections, https=True, close=True)
                result["hs_rate"], result["hs_errors"] = out["rps"], out["errors"]
                if proc is not None:
                    if proc.popen.poll() is not None:
                        raise RowFailed(f"{proc.name} died during the handshake run:\n{proc.tail()}")
                    result["hs_cpu_us"] = (cpu_seconds(proc) - before) / max(out["requests"], 1) * 1e6
            return result

    def run_suite(self, suite: str, rep: int) -> None:
        with ExitStack() as stack:
            port = free_port()
            if suite in ("http1", "tls"):
                if self.nginx is None or not find_tool("wrk"):
                    for row in self.rows(suite):
                        self.failures.setdefault((suite, row), []).append(
                            "needs nginx and wrk (bash .ci/run)"
                        )
                    return
                conf = nginx_config(self.logdir / f"backend-{port}", port, None)
                argv = [self.nginx, "-c", str(conf), "-p", str(conf.parent)]
            elif suite == "http2":
                if self.nginx is None or not find_tool("h2load"):
                    why = NEEDS_H2LOAD if self.nginx else "needs nginx (bash .ci/run)"
                    for row in self.rows(suite):
                        self.failures.setdefault((suite, row), []).append(why)
                    return
                conf = nginx_config(self.logdir / f"backend-{port}", port, None, http2=True)
                argv = [self.nginx, "-c", str(conf), "-p", str(conf.parent)]
            elif suite == "grpc":
                if importlib.util.find_spec("grpc") is None:
                    for row in self.rows(suite):
                        self.failures.setdefault((suite, row), []).append(NEEDS_GRPCIO)
                    return
                argv = [sys.executable, str(HERE / "grpc_load.py"), "serve", "--port", str(port)]
            else:
                argv = [
                    sys.executable,
                    str(HERE / "rpc_load.py"),
                    "provide",
                    "--proto",
                    suite,
                    "--port",
                    str(port),
                ]
            try:
                stack.enter_context(
                    running(spawn(f"{suite}-backend-{port}", argv, LOAD_CPU, self.logdir), port)
                )
            except (RowFailed, OSError) as exc:  # no backend: every row of the suite fails
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                for row in self.rows(suite):
                    self.failures.setdefault((suite, row), []).append(f"backend: {why}")
                print(
                    f"[rep {rep + 1}/{self.args.reps}] {suite:5} backend FAILED: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
                return
            for row in self.rows(suite):
                key = (suite, row)
                label = f"[rep {rep + 1}/{self.args.reps}] {suite:5} {row:12}"
                try:
                    result = self.measure(suite, row, port)
                except (RowFailed, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    self.failures.setdefault(key, []).append(why)
                    print(f"{label} FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                self.results.setdefault(key, []).append(result)
                cpu = f"{result['cpu_us']:.1f} µs/req" if "cpu_us" in result else "-"
                hs = ""
                if "hs_rate" in result:
                    hs_cpu = f"{result['hs_cpu_us']:.1f} µs/hs" if "hs_cpu_us" in result else "-"
                    hs = f"; {result['hs_rate']:.0f} handshakes/s  {hs_cpu}  errors {result['hs_errors']:.0f}"
                print(
                    f"{label} {result['rate']:10.0f}/s  {cpu:>14}  errors {result['errors']:.0f}{hs}",
                    file=sys.stderr,
                    flush=True,
                )

    # ------------------------------------------------------------ the table

    def table(self) -> str:
        a = self.args
        lines = [
            f"\nproxy on CPU {PROXY_CPU}, backend and load on CPU {LOAD_CPU}; medians of {a.reps} rep(s) "
            f"x {a.duration} s; http1: wrk -t1 -c{a.connections}; http2: h2load -t1 -c{a.connections} -m{a.streams}; "
            f"rpc: {a.conns} conns x {a.inflight} in flight"
            + (
                f"\ntls: wrk -t1 -c{a.connections} over https (keep-alive) to TLS-terminating proxies in front of "
                "the http1 backend; 'ROW hs' lines: the same with Connection: close, so req/s = TLS "
                "handshakes/s (resumed: wrk reuses its session) and CPU µs per handshake+request; "
                "no floor row (no TLS floor), no direct row"
                if "tls" in a.suites
                else ""
            )
            + (
                f"\ngrpc: grpc_load.py, {a.grpc_threads} threads x 1 unary call in flight on one channel, "
                f"{a.grpc_size}-byte messages, grpcio server (8 workers); mosnpy Http2 -> Http2; "
                "no floor row (no gRPC floor)"
                if "grpc" in a.suites
                else ""
            ),
            f"{'suite':6} {'row':14} {'req/s':>9} {'CPU µs/req':>11} {'errors':>7} {'CPU x floor':>12} {'rate / floor':>13}",
        ]
        for suite in a.suites:
            floor = self.median(suite, "floor")
            for row in self.rows(suite):
                key = (suite, row)
                if key not in self.results:
                    why = self.failures.get(key, ["not run"])[-1]
                    lines.append(f"{suite:6} {row:14} {'failed: ' + why[:90]}")
                    continue
                med = self.median(suite, row)
                errors = sum(r["errors"] for r in self.results[key])
                cpu = f"{med['cpu_us']:.1f}" if "cpu_us" in med else "-"
                cpu_ratio = (
                    f"{med['cpu_us'] / floor['cpu_us']:.2f}"
                    if "cpu_us" in med and floor and floor.get("cpu_us")
                    else "-"
                )
                rate_ratio = f"{med['rate'] / floor['rate']:.2f}" if floor and floor["rate"] else "-"
                lines.append(
                    f"{suite:6} {row:14} {med['rate']:9.0f} {cpu:>11} {errors:7.0f} {cpu_ratio:>12} {rate_ratio:>13}"
                )
                if "hs_rate" in med:
                    hs_errors = sum(r.get("hs_errors", 0.0) for r in self.results[key])
                    hs_cpu = f"{med['hs_cpu_us']:.1f}" if "hs_cpu_us" in med else "-"
                    hs_row = f"{row} hs"
                    lines.append(
                        f"{suite:6} {hs_row:14} {med['hs_rate']:9.0f} {hs_cpu:>11} {hs_errors:7.0f} {'-':>12} {'-':>13}"
                    )
            direct = self.median(suite, "direct")
            if suite in NO_FLOOR and direct.get("rate"):
                ratios = [
                    f"{row} {self.median(suite, row)['rate'] / direct['rate']:.2f}"
                    for row in self.rows(suite)
                    if row != "direct" and (suite, row) in self.results
                ]
                if ratios:
                    lines.append(f"{suite:6} rate / direct: {', '.join(ratios)}")
        for (suite, row), whys in self.failures.items():
            if (suite, row) in self.results:
                lines.append(f"note: {suite} {row} failed in {len(whys)} rep(s): {whys[-1][:90]}")
        return "\n".join(lines)

    def median(self, suite: str, row: str) -> dict[str, float]:
        reps = self.results.get((suite, row))
        if not reps:
            return {}
        keys = set.intersection(*(set(r) for r in reps))
        return {k: statistics.median(r[k] for r in reps) for k in keys}


# ---------------------------------------------------------------- load


def check_http(port: int, tls: ssl.SSLContext | None = None) -> None:
    """One GET through the proxy (over TLS with ``tls``, the certificate verified): status
    200 and the backend's body."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(BODY):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(BODY):
        raise RowFailed(f"GET / through the proxy answered {data[:200]!r}")


def run_wrk(
    port: int, duration: float, connections: int, https: bool = False, close: bool = False
) -> dict[str, float]:
    """wrk against ``port``; ``https``: over TLS; ``close``: ``Connection: close``, one
    connection (and, over TLS, one handshake) per request.  wrk keeps its TLS session
    across reconnects, so those handshakes are resumed ones (TLS 1.2, session ticket)
    when the server allows it (nginx and mosnpy do by default)."""
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}/"
    cmd = [*pinned(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    if close:
        cmd[-1:-1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not requests or not rps:
        raise RowFailed(f"cannot read wrk's output: {out!r}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"requests": float(requests.group(1)), "rps": float(rps.group(1)), "errors": float(errors)}


def check_h2(port: int) -> None:
    """One GET over h2c (prior knowledge) through the proxy: status 200 and the backend's body."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"bench"), (b":path", b"/")]
    conn.send_headers(1, request, end_stream=True)
    status, body, ended = b"", b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(conn.data_to_send())
        while not ended:
            data = s.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(b":status", b"")
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise RowFailed(f"GET / over h2c through the proxy: {event}")
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    if status != b"200" or body != BODY or not ended:
        raise RowFailed(
            f"GET / over h2c through the proxy answered {status!r} {body[:200]!r} (ended: {ended})"
        )


def run_h2load(port: int, duration: float, connections: int, streams: int) -> dict[str, float]:
    if not find_tool("h2load"):
        raise RowFailed(NEEDS_H2LOAD)
    cmd = [
        *pinned(LOAD_CPU),
        "h2load",
        "-t1",
        f"-c{connections}",
        f"-m{streams}",
        "-D",
        f"{duration:g}",
        f"http://127.0.0.1:{port}/",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    if not counts or not rps:
        raise RowFailed(f"cannot read h2load's output: {out[-500:]!r}")
    # "failed" counts errored and timed-out streams and 4xx/5xx answers alike
    done, failed = int(counts.group(3)), int(counts.group(5))
    if not done:
        raise RowFailed(f"h2load completed no request: {out[-500:]!r}")
    return {"requests": float(done), "rps": float(rps.group(1)), "errors": float(failed)}


def run_rpc_load(proto: str, port: int, duration: float, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        *pinned(LOAD_CPU),
        sys.executable,
        str(HERE / "rpc_load.py"),
        "load",
        "--proto",
        proto,
        "--port",
        str(port),
        "--conns",
        str(args.conns),
        "--inflight",
        str(args.inflight),
        "--duration",
        str(duration),
        "--drain",
        "3",
    ]
    return run_json_tool("rpc_load", cmd, duration + 30)


def run_grpc_load(port: int, duration: float, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        *pinned(LOAD_CPU),
        sys.executable,
        str(HERE / "grpc_load.py"),
        "load",
        "--port",
        str(port),
        "--duration",
        str(duration),
        "--threads",
        str(args.grpc_threads),
        "--size",
        str(args.grpc_size),
        "--timeout",
        "5",
    ]
    return run_json_tool("grpc_load", cmd, duration + 30)


def run_json_tool(tool: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run a load tool that ends with one JSON line of results; that line."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RowFailed(f"{tool} printed nothing: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ---------------------------------------------------------------- main


def mosnpy_command() -> list[str]:
    script = Path(sys.executable).parent / "mosnpy"
    if script.exists():
        return [str(script)]
    venv = ROOT / ".venv" / "bin" / "mosnpy"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "mosnpy"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    ap.add_argument("--rows", default="direct,nginx,floor,mosnpy", help=f"any of {','.join(ROW_KINDS)}")
    ap.add_argument("--suites", default=",".join(SUITES), help=f"any of {','.join(SUITES)}")
    ap.add_argument("--connections", type=int, default=50, help="wrk / h2load connections (http1, http2)")
    ap.add_argument("--streams", type=int, default=10, help="h2load streams in flight per connection (http2)")
    ap.add_argument("--conns", type=int, default=4, help="RPC client connections")
    ap.add_argument("--inflight", type=int, default=32, help="RPC calls in flight per connection")
    ap.add_argument(
        "--grpc-threads", type=int, default=8, help="gRPC client threads = calls in flight (grpc)"
    )
    ap.add_argument("--grpc-size", type=int, default=64, help="gRPC request/answer bytes (grpc)")
    ap.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another mosnpy checkout to measure in the same run (e.g. a git worktree); repeatable",
    )
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args()
    args.rows = [r for r in args.rows.split(",") if r]
    args.suites = [s for s in args.suites.split(",") if s]
    bad = [r for r in args.rows if r not in ROW_KINDS] + [s for s in args.suites if s not in SUITES]
    if bad:
        ap.error(f"unknown rows/suites: {', '.join(bad)}")
    args.baseline = [p.resolve() for p in args.baseline]
    for path in args.baseline:
        if not (path / "mosnpy" / "__init__.py").is_file():
            ap.error(f"--baseline {path}: no mosnpy package there")
    if len({p.name for p in args.baseline}) != len(args.baseline):
        ap.error("--baseline checkouts need distinct directory names")

    logdir = Path(tempfile.mkdtemp(prefix="mosnpy-compare-"))
    bench = Bench(args, logdir, mosnpy_command(), find_tool("nginx"))
    print(f"logs in {logdir}", file=sys.stderr, flush=True)
    try:
        for rep in range(args.reps):
            for suite in args.suites:
                bench.run_suite(suite, rep)
    except KeyboardInterrupt:
        print("interrupted: partial results", file=sys.stderr)
    print(bench.table(), flush=True)
    if args.json:
        measured = {f"{s}/{r}": v for (s, r), v in bench.results.items()}
        args.json.write_text(
            json.dumps(
                {"results": measured, "failures": {f"{s}/{r}": v for (s, r), v in bench.failures.items()}},
                indent=1,
            )
        )
    if bench.failures:
        print(f"some rows failed; logs kept in {logdir}", file=sys.stderr)
        return 1 if any(key not in bench.results for key in bench.failures) else 0
    shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
