"""Closed-loop dubbo / bolt load with checked answers, and the echo provider it talks to.

    python benchmarks/rpc_load.py provide --proto dubbo|bolt --port P
    python benchmarks/rpc_load.py load --proto dubbo|bolt --port P [--conns 4] [--inflight 32] [--duration 8]

``provide`` answers every two-way request with the captured real response of the same
call (``<proto>-node-echo-response``) with the request's id copied in, and every
heartbeat with the captured heartbeat response; all the frames of one read are answered
in one write.

``load`` keeps ``--inflight`` calls outstanding on each of ``--conns`` connections for
``--duration`` seconds.  Each call is the captured real request
(``<proto>-node-echo-request``) with a fresh id: the connection's index in the top bits
(8 of bolt's 32, 32 of dubbo's 64), a counter below.  Every answer is checked:

* ``misroutes``: the id belongs to a call of another connection;
* ``mismatches``: an id that no connection is waiting for (or a repeated answer);
* ``body_diffs``: the bytes around the id differ from the captured response;
* ``lost``: calls still unanswered ``--drain`` seconds after the end;
* ``heartbeats_missing``: each connection first sends one heartbeat (``--heartbeats``);
* ``conn_errors`` / ``frame_errors``: connections that failed or sent unparseable bytes.

The last line of output is JSON: calls (answered before the deadline), calls_per_s,
completed (including the drain), p50_ms, p99_ms, every counter above, and errors (their
sum).  Exit status 1 when errors > 0 or no call completed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import trio
from trio.lowlevel import wait_readable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import rawio
from benchmarks.rpc_frames import (
    HEARTBEAT,
    HEARTBEAT_RESPONSE,
    PROTOCOLS,
    REQUEST,
    RESPONSE,
    FrameError,
    Protocol,
    load_exchange,
)

READ = 65536
COUNTERS = (
    "misroutes",
    "mismatches",
    "body_diffs",
    "lost",
    "heartbeats_missing",
    "conn_errors",
    "frame_errors",
)


# ---------------------------------------------------------------- provider


async def serve_echo(proto: Protocol, port: int) -> None:
    _, response = load_exchange(proto, proto.call)
    _, heartbeat_response = load_exchange(proto, proto.heartbeat)
    r_head, r_tail = proto.around_id(response)
    h_head, h_tail = proto.around_id(heartbeat_response)
    a, b = proto.id_start, proto.id_end
    scan = proto.scan

    async def answer(sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = await rawio.recv(sock, READ)
                if not data:
                    return
                buf = buf + data if buf else data
                frames, used = scan(buf)
                out: list[bytes] = []
                for start, _end, kind in frames:
                    if kind == REQUEST:
                        out += (r_head, buf[start + a : start + b], r_tail)
                    elif kind == HEARTBEAT:
                        out += (h_head, buf[start + a : start + b], h_tail)
                buf = buf[used:]
                if out:
                    await rawio.send_all(sock, b"".join(out))
        except (OSError, FrameError):
            pass
        finally:
            rawio.close(sock)

    lsock = rawio.listen(port)
    print(f"rpc_load provide {proto.name} on 127.0.0.1:{port} ({len(response)}-byte answers)", flush=True)
    async with trio.open_nursery() as nursery:
        while True:
            nursery.start_soon(answer, await rawio.accept(lsock))


# ---------------------------------------------------------------- load


class Caller:
    """One client connection: its outstanding calls (id bytes -> send time in ns)."""

    def __init__(self, index: int, shift: int) -> None:
        self.index = index
        self.base = index << shift
        self.limit = 1 << shift
        self.seq = 0
        self.outstanding: dict[bytes, int] = {}
        self.heartbeats: set[bytes] = set()
        self.latencies: list[int] = []
        self.calls = 0  # answered before the deadline
        self.drained = 0  # answered after it


async def run_load(proto: Protocol, args: argparse.Namespace) -> dict[str, Any]:
    request, response = load_exchange(proto, proto.call)
    heartbeat, _ = load_exchange(proto, proto.heartbeat)
    q_head, q_tail = proto.around_id(request)
    r_head, r_tail = proto.around_id(response)
    h_head, h_tail = proto.around_id(heartbeat)
    a, b, width = proto.id_start, proto.id_end, proto.id_len
    scan = proto.scan
    shift = 8 * width - 8 if width == 4 else 32
    if args.conns > 1 << (8 * width - shift) or args.inflight + 2 >= 1 << shift:
        raise SystemExit("too many connections or calls in flight for the id space")
    counts = dict.fromkeys(COUNTERS, 0)
    callers = [Caller(i, shift) for i in range(args.conns)]
    by_index = {c.index: c for c in callers}
    socks: list[socket.socket] = []
    try:
        with trio.fail_after(5):
            for _ in callers:
                socks.append(await rawio.connect(args.port))
    except (OSError, trio.TooSlowError) as exc:
        for s in socks:
            rawio.close(s)
        counts["conn_errors"] += 1
        return {"error": f"connect: {exc!r}", "calls": 0, "calls_per_s": 0.0, **counts, "errors": 1}

    perf_ns = time.perf_counter_ns
    t0 = perf_ns()
    deadline = t0 + int(args.duration * 1e9)

    def next_id(c: Caller) -> bytes:
        c.seq = c.seq + 1 if c.seq + 1 < c.limit else 1
        return (c.base | c.seq).to_bytes(width, "big")

    async def drive(c: Caller, sock: socket.socket) -> None:
        outstanding = c.outstanding
        parts: list[bytes] = []
        for _ in range(args.heartbeats):
            i = next_id(c)
            c.heartbeats.add(i)
            parts += (h_head, i, h_tail)
        now = perf_ns()
        for _ in range(args.inflight):
            i = next_id(c)
            outstanding[i] = now
            parts += (q_head, i, q_tail)
        buf = b""
        stopping = False
        try:
            await rawio.send_all(sock, b"".join(parts))
            while outstanding or c.heartbeats or not stopping:
                try:
                    data = sock.recv(READ)
                except BlockingIOError:
                    await wait_readable(sock)
                    continue
                if not data:
                    counts["conn_errors"] += 1
                    return
                now = perf_ns()
                buf = buf + data if buf else data
                frames, used = scan(buf)
                done = 0
                for start, end, kind in frames:
                    i = buf[start + a : start + b]
                    if kind == RESPONSE:
                        sent = outstanding.pop(i, None)
                        if sent is None:
                            owner = by_index.get(int.from_bytes(i, "big") >> shift)
                            if owner is not None and owner is not c and i in owner.outstanding:
                                del owner.outstanding[i]
                                counts["misroutes"] += 1
                            else:
                                counts["mismatches"] += 1
                            continue
                        c.latencies.append(now - sent)
                        done += 1
                        if buf[start : start + a] != r_head or buf[start + b : end] != r_tail:
                            counts["body_diffs"] += 1
                    elif kind == HEARTBEAT_RESPONSE and i in c.heartbeats:
                        c.heartbeats.discard(i)
                    else:
                        counts["mismatches"] += 1
                buf = buf[used:]
                if now >= deadline:
                    stopping = True
                    c.drained += done
                elif done:
                    c.calls += done
                    new = [next_id(c) for _ in range(done)]
                    t_new = perf_ns()
                    for i in new:
                        outstanding[i] = t_new
                    await rawio.send_all(sock, b"".join([p for i in new for p in (q_head, i, q_tail)]))
        except FrameError:
            counts["frame_errors"] += 1
        except OSError:
            counts["conn_errors"] += 1

    with trio.move_on_after(args.duration + args.drain):
        async with trio.open_nursery() as nursery:
            for c, s in zip(callers, socks, strict=True):
                nursery.start_soon(drive, c, s)
    for s in socks:
        rawio.close(s)
    counts["lost"] = sum(len(c.outstanding) for c in callers)
    counts["heartbeats_missing"] = sum(len(c.heartbeats) for c in callers)
    latencies = sorted(x for c in callers for x in c.latencies)
    calls = sum(c.calls for c in callers)

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6, 3)

    return {
        "proto": proto.name,
        "conns": args.conns,
        "inflight": args.inflight,
        "calls": calls,
        "calls_per_s": round(calls / args.duration, 1),
        "completed": calls + sum(c.drained for c in callers),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        **counts,
        "errors": sum(counts.values()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    provide = sub.add_parser("provide", help="echo provider")
    provide.add_argument("--proto", choices=sorted(PROTOCOLS), required=True)
    provide.add_argument("--port", type=int, required=True)
    load = sub.add_parser("load", help="load generator")
    load.add_argument("--proto", choices=sorted(PROTOCOLS), required=True)
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--conns", type=int, default=4)
    load.add_argument("--inflight", type=int, default=32, help="calls in flight per connection")
    load.add_argument("--duration", type=float, default=8.0)
    load.add_argument("--drain", type=float, default=5.0, help="seconds to wait for outstanding calls")
    load.add_argument("--heartbeats", type=int, default=1, help="heartbeats per connection at start")
    args = ap.parse_args()
    proto = PROTOCOLS[args.proto]
    if args.mode == "provide":
        trio.run(serve_echo, proto, args.port)
        return 0
    result = trio.run(run_load, proto, args)
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 and result["calls"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
