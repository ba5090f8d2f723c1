"""The Protocol layer's cost per exchange, in process: no sockets, no scheduler, no peers.

    .venv/bin/python benchmarks/layers.py [--suites http1,dubbo,bolt] [--reps 15] [--baseline OTHER_CHECKOUT]

``compare.py`` measures whole proxies, and on a shared machine its runs drift by 30%
or more; an RPC row also moves with how many frames each read happens to carry.  That
is too coarse to tell whether a change to a codec or a stream connection helped.  This
tool drives the stream connections alone, the way the proxy does, and reports two
figures per suite:

* **µs per exchange**, the best of ``--reps`` timed rounds (the minimum is the figure
  least disturbed by the rest of the machine);
* **Python calls per exchange**, counted with ``cProfile`` over one round: it does not
  drift at all, so a change that saves work shows even when the timings are noisy.

Suites (each exchange is checked once before timing: the bytes out must be right):

* ``http1``: a wrk-like ``GET`` through ``Http1ServerStreamConnection.dispatch``, sent on
  with ``Http1ClientStreamConnection``, an nginx-like 13-byte response dispatched there
  and sent back to the client (head, body, end) — what one proxied request costs the
  HTTP/1 protocol layer;
* ``dubbo`` / ``bolt``: 32 captured request frames (fresh ids) in one read through
  ``XServerStreamConnection``, each sent on a client stream connection (its id
  remapped), the route's ``service`` read, the 32 captured responses dispatched there
  and sent back (ids restored) — per call.

``--baseline PATH`` runs the same in another checkout (its ``mosnpy`` and plugins first
on ``PYTHONPATH``, as ``compare.py`` does), ``--compiled`` in a ``MOSNPY_MYPYC=1`` build
of this one (``benchmarks/compiled.py``), and prints both, one line per suite.  (Calls
into compiled modules are not counted: cProfile sees only Python frames.)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: ``benchmarks`` importable (a
    sys.path.append(str(HERE.parent))  # baseline's PYTHONPATH still comes first)

SUITES = ("http1", "dubbo", "bolt")

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 07:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"hello, world\n"
)
#: What the client gets: the response without its hop-by-hop Connection line.
HTTP_FORWARDED = HTTP_RESPONSE.replace(b"Connection: keep-alive\r\n", b"")

BATCH = 32  # calls per read, as compare.py's rpc load keeps in flight per connection


def http1_exchange() -> tuple[Callable[[], object], int]:
    """One proxied HTTP/1 request's protocol work; returns (run once, exchanges per run)."""
    from mosnpy.protocol.http1.stream import Http1ClientStreamConnection, Http1ServerStreamConnection

    server = Http1ServerStreamConnection()
    client = Http1ClientStreamConnection()

    def once() -> bytes:
        (request,) = server.dispatch(HTTP_REQUEST)
        sid = client.new_stream()
        client.send_headers(sid, request.headers, end_stream=True)
        sent = client.data_to_send()
        head, *rest = client.dispatch(HTTP_RESPONSE)
        server.send_headers(request.stream_id, head.headers, status=head.status, end_stream=head.end_stream)
        for part in rest:
            server.send_data(request.stream_id, part.data, part.end_stream)
        server.resume()
        return sent + server.data_to_send()

    got = once()
    if got != HTTP_REQUEST + HTTP_FORWARDED:
        raise SystemExit(f"http1: the exchange is wrong: {got!r}")
    return once, 1


def rpc_exchange(name: str) -> tuple[Callable[[], object], int]:
    """32 calls of captured ``name`` frames through the xprotocol stream connections."""
    from benchmarks.rpc_frames import PROTOCOLS, load_vector
    from mosnpy.protocol.xprotocol.registry import descriptor

    proto = PROTOCOLS[name]
    request, response = load_vector(f"{proto.call}-request"), load_vector(f"{proto.call}-response")
    head, tail = proto.around_id(request)
    rhead, rtail = proto.around_id(response)
    batch = b"".join(head + (i + 1).to_bytes(proto.id_len, "big") + tail for i in range(BATCH))
    id_len = proto.id_len
    desc = descriptor(name)
    server = desc.server_stream_connection()
    client = desc.client_stream_connection()

    def once() -> bytes:
        events = server.dispatch(batch)
        ups = []
        for event in events:
            event.headers.get("service")  # the route's key
            sid = client.new_stream()
            client.send_headers(sid, event.headers, end_stream=True)
            ups.append(sid)
        client.data_to_send()
        responses = client.dispatch(b"".join(rhead + sid.to_bytes(id_len, "big") + rtail for sid in ups))
        by_sid = {r.stream_id: r for r in responses}
        for event, sid in zip(events, ups, strict=True):
            answer = by_sid[sid]
            server.send_headers(event.stream_id, answer.headers, status=answer.status, end_stream=True)
        return server.data_to_send()

    want = b"".join(rhead + (i + 1).to_bytes(proto.id_len, "big") + rtail for i in range(BATCH))
    got = once()
    if got != want:
        raise SystemExit(f"{name}: the answers are wrong (ids not restored?)")
    return once, BATCH


def measure(suite: str, reps: int, rounds: int) -> dict[str, float]:
    once, per_run = http1_exchange() if suite == "http1" else rpc_exchange(suite)
    runs = max(1, rounds // per_run)
    for _ in range(runs):  # warm up
        once()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(runs):
            once()
        best = min(best, (time.perf_counter() - start) / (runs * per_run))
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(runs):
        once()
    profile.disable()
    calls = sum(v[1] for v in pstats.Stats(profile).stats.values())
    return {"us": round(best * 1e6, 2), "calls": round(calls / (runs * per_run), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--reps", type=int, default=15, help="timed rounds per suite (the best counts)")
    ap.add_argument("--rounds", type=int, default=3200, help="exchanges per timed round")
    ap.add_argument("--baseline", type=Path, help="another checkout to measure the same way")
    ap.add_argument(
        "--compiled", action="store_true", help="also measure a MOSNPY_MYPYC=1 build of this checkout"
    )
    ap.add_argument("--json", action="store_true", help="one JSON line {suite: {us, calls}} only")
    args = ap.parse_args(argv)
    suites = [s for s in args.suites.split(",") if s]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        ap.error(f"unknown suites {', '.join(unknown)} (known: {', '.join(SUITES)})")
    results = {suite: measure(suite, args.reps, args.rounds) for suite in suites}
    if args.json:
        print(json.dumps(results))
        return 0
    if args.baseline is not None and args.compiled:
        ap.error("--baseline and --compiled: one at a time")
    base: dict[str, dict[str, float]] = {}
    label = ""
    argv_other = [sys.executable, "-P", str(Path(__file__).resolve()), "--json", "--suites", ",".join(suites)]
    argv_other += ["--reps", str(args.reps), "--rounds", str(args.rounds)]
    if args.baseline is not None:
        checkout = args.baseline.resolve()
        if not (checkout / "mosnpy").is_dir():
            ap.error(f"--baseline {checkout}: no mosnpy package there")
        paths = [str(checkout), *(str(p) for p in sorted((checkout / "plugins").glob("*")) if p.is_dir())]
        base = _other_run(argv_other, paths, checkout)
        label = "@" + checkout.name
    elif args.compiled:
        from benchmarks import compiled

        with tempfile.TemporaryDirectory(prefix="mosnpy-compiled-") as tmp:
            target = compiled.build(Path(tmp) / "build")
            base = _other_run(argv_other, [str(target)], Path(tmp))
        label = "compiled"
    print(f"best of {args.reps} rounds x {args.rounds} exchanges; calls counted over one round")
    print(f"{'suite':6} {'µs/exchange':>12} {'calls':>7}" + (f" {label:>16} {'calls':>7}" if base else ""))
    for suite, r in results.items():
        line = f"{suite:6} {r['us']:12.2f} {r['calls']:7.1f}"
        if suite in base:
            line += f" {base[suite]['us']:16.2f} {base[suite]['calls']:7.1f}"
        print(line)
    return 0


def _other_run(argv: list[str], paths: list[str], cwd: Path) -> dict[str, dict[str, float]]:
    """This tool's ``--json`` figures with ``paths`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"the other run failed:\n{out.stderr}")
    result: dict[str, dict[str, float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    sys.exit(main())
