"""Closed-loop gRPC unary load with checked answers, and the echo server it talks to (grpcio).

    python benchmarks/grpc_load.py serve --port P [--workers 8]
    python benchmarks/grpc_load.py load --port P [--duration 8] [--threads 8] [--size 64] [--timeout 5]

``serve`` runs a grpcio server on 127.0.0.1:P with one unary-unary method,
``/bench.Echo/Unary`` (``grpc.method_handlers_generic_handler``, raw bytes both ways:
no protobuf, identity (de)serializers), answering each request with its own bytes, on a
thread pool of ``--workers``; it exits on SIGTERM or SIGINT (1 s grace for calls in
flight).

``load`` shares one ``grpc.insecure_channel`` to 127.0.0.1:P among ``--threads`` threads;
each makes blocking unary calls one after another for ``--duration`` seconds, with a
per-call timeout of ``--timeout`` seconds.  Each request is ``--size`` bytes starting
with the thread's index and the call's number (so no two calls send the same bytes),
and each answer must equal its request:

* ``errors``: calls that failed (any ``grpc.RpcError``: status other than OK, deadline
  exceeded, connection refused or reset) plus ``mismatches``, plus 1 if the channel did not
  become ready within 5 s;
* ``mismatches``: calls answered OK with bytes other than the request's;
* ``stuck_threads``: threads still in a call ``--timeout`` + 5 s after the end (counted
  in ``errors`` too).

The last line of output is JSON: calls (answered OK and equal), calls_per_s (calls over
the time from the first call to the last answer), errors, mismatches, p50_ms, p99_ms,
first_error (the first failure's status and details, or null).  Exit status 1 when
errors > 0 or no call completed.  Everything binds and connects to 127.0.0.1 only; every
wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc  # type: ignore[import-untyped]

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Unary"
READY_TIMEOUT = 5.0
#: never an HTTP proxy from the environment
OPTIONS = [("grpc.enable_http_proxy", 0)]


def _identity(data: bytes) -> bytes:
    return data


# ---------------------------------------------------------------- server


def serve(port: int, workers: int) -> int:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        print(f"grpc_load serve: cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server.start()
    print(f"grpc_load serve {METHOD} on 127.0.0.1:{port} ({workers} workers)", flush=True)
    while not stopping.wait(0.5):
        pass
    server.stop(grace=1).wait(5)
    return 0


# ---------------------------------------------------------------- load


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "threads": args.threads,
        "size": args.size,
        "calls": 0,
        "calls_per_s": 0.0,
        "errors": 0,
        "mismatches": 0,
        "stuck_threads": 0,
        "p50_ms": None,
        "p99_ms": None,
        "first_error": None,
    }
    channel = grpc.insecure_channel(f"127.0.0.1:{args.port}", options=OPTIONS)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT)
        except grpc.FutureTimeoutError:
            result["errors"] = 1
            result["first_error"] = f"channel to 127.0.0.1:{args.port} not ready in {READY_TIMEOUT:g} s"
            return result
        call = channel.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity)
        lock = threading.Lock()
        calls = [0] * args.threads
        errors = [0] * args.threads
        mismatches = [0] * args.threads
        latencies: list[list[int]] = [[] for _ in range(args.threads)]
        first_error: list[str] = []
        perf_ns = time.perf_counter_ns
        t0 = time.monotonic()
        deadline = t0 + args.duration

        def drive(t: int) -> None:
            lat = latencies[t]
            n = 0
            while time.monotonic() < deadline:
                n += 1
                head = f"{t}:{n}:".encode()
                request = head + b"x" * max(args.size - len(head), 0)
                sent = perf_ns()
                try:
                    answer = call(request, timeout=args.timeout)
                except grpc.RpcError as exc:
                    errors[t] += 1
                    with lock:
                        if not first_error:
                            code = exc.code() if hasattr(exc, "code") else None
                            details = exc.details() if hasattr(exc, "details") else str(exc)
                            first_error.append(f"{code}: {details}")
                    continue
                lat.append(perf_ns() - sent)
                if answer == request:
                    calls[t] += 1
                else:
                    mismatches[t] += 1

        threads = [threading.Thread(target=drive, args=(t,), daemon=True) for t in range(args.threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(max(deadline - time.monotonic(), 0) + args.timeout + 5)
        elapsed = time.monotonic() - t0
        stuck = sum(th.is_alive() for th in threads)
        ordered = sorted(x for lat in latencies for x in lat)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 3)

        result.update(
            calls=sum(calls),
            calls_per_s=round(sum(calls) / elapsed, 1) if elapsed > 0 else 0.0,
            errors=sum(errors) + sum(mismatches) + stuck,
            mismatches=sum(mismatches),
            stuck_threads=stuck,
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            first_error=first_error[0] if first_error else None,
        )
        return result
    finally:
        channel.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("serve", help="echo server")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--workers", type=int, default=8, help="server thread pool size")
    load = sub.add_parser("load", help="load generator")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--duration", type=float, default=8.0)
    load.add_argument("--threads", type=int, default=8, help="threads on one channel, a call each")
    load.add_argument("--size", type=int, default=64, help="request (and answer) bytes")
    load.add_argument("--timeout", type=float, default=5.0, help="per-call timeout, seconds")
    args = ap.parse_args()
    if args.mode == "serve":
        return serve(args.port, args.workers)
    result = run_load(args)
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 and result["calls"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
