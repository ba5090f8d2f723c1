"""The RPC floor: the cheapest trio dubbo / bolt forwarder that multiplexes like MOSN.

    python benchmarks/floors/rpc_floor.py --proto dubbo|bolt --listen PORT --upstream PORT

What it does, and nothing more (no routing, no filters, no decoding of bodies):

* one upstream connection, opened at start-up and shared by every downstream connection;
* each downstream read is cut into whole frames by their length fields; each request's
  id is replaced by the next id of the upstream connection (a counter from 1, wrapping
  at the id width) and ``{upstream id: (downstream, original id)}`` is remembered; all the
  frames of one read leave in one write;
* each upstream read is cut the same way; each response's id is looked up, the original
  id restored, and the frames for one downstream connection leave in one write;
  responses with unknown ids are dropped;
* heartbeats are answered here with the captured heartbeat response (as MOSN answers
  them below the proxy); oneway requests get a fresh id and no table entry.

I/O is on plain non-blocking sockets (:mod:`benchmarks.rawio`): yield, then recv, and
park in ``wait_readable`` only on EAGAIN.  SIGTERM ends the process.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import trio
from trio.lowlevel import checkpoint, wait_readable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rawio
from benchmarks.rpc_frames import (
    HEARTBEAT,
    ONEWAY,
    PROTOCOLS,
    REQUEST,
    RESPONSE,
    FrameError,
    Protocol,
    load_exchange,
)

READ = 65536


class Forwarder:
    def __init__(self, proto: Protocol, upstream: socket.socket, heartbeat_response: bytes) -> None:
        self.proto = proto
        self.up = rawio.Out(upstream)
        self.next_id = 1
        # upstream id bytes -> (downstream writer, the caller's id bytes)
        self.calls: dict[bytes, tuple[rawio.Out, bytes]] = {}
        self.hb_head, self.hb_tail = proto.around_id(heartbeat_response)
        self.stray = 0

    async def serve(self, lsock: socket.socket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.up.flush_forever)
            nursery.start_soon(self.read_upstream)
            while True:
                conn = await rawio.accept(lsock)
                nursery.start_soon(self.downstream, conn)

    async def downstream(self, sock: socket.socket) -> None:
        out = rawio.Out(sock)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(out.flush_forever)
                try:
                    await self.read_downstream(sock, out)
                except (OSError, FrameError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            out.broken = True
            rawio.close(sock)

    async def read_downstream(self, sock: socket.socket, out: rawio.Out) -> None:
        scan = self.proto.scan
        a, b, width, space = self.proto.id_start, self.proto.id_end, self.proto.id_len, self.proto.id_space
        calls, up = self.calls, self.up
        hb_head, hb_tail = self.hb_head, self.hb_tail
        buf = b""
        while True:
            await checkpoint()  # yield, then recv: the next calls usually arrived meanwhile
            try:
                data = sock.recv(READ)
            except BlockingIOError:
                await wait_readable(sock)
                continue
            if not data:
                return
            buf = buf + data if buf else data
            frames, used = scan(buf)
            if not frames:
                continue
            parts: list[bytes] = []
            replies: list[bytes] = []
            nid = self.next_id
            for start, end, kind in frames:
                if kind in (REQUEST, ONEWAY):
                    new = nid.to_bytes(width, "big")
                    nid = nid + 1 if nid + 1 < space else 1
                    if kind == REQUEST:
                        calls[new] = (out, buf[start + a : start + b])
                    parts += (buf[start : start + a], new, buf[start + b : end])
                elif kind == HEARTBEAT:
                    replies += (hb_head, buf[start + a : start + b], hb_tail)
                # responses from a client are dropped
            self.next_id = nid
            buf = buf[used:]
            if parts:
                up.write(b"".join(parts))
            if replies:
                out.write(b"".join(replies))

    async def read_upstream(self) -> None:
        sock = self.up.sock
        scan = self.proto.scan
        a, b = self.proto.id_start, self.proto.id_end
        calls = self.calls
        buf = b""
        while True:
            await checkpoint()
            try:
                data = sock.recv(READ)
            except BlockingIOError:
                await wait_readable(sock)
                continue
            if not data:
                raise SystemExit("rpc_floor: the upstream closed its connection")
            buf = buf + data if buf else data
            frames, used = scan(buf)
            if not frames:
                continue
            batches: dict[rawio.Out, list[bytes]] = {}
            for start, end, kind in frames:
                if kind != RESPONSE:
                    continue
                entry = calls.pop(buf[start + a : start + b], None)
                if entry is None:
                    self.stray += 1
                    continue
                down, orig = entry
                parts = batches.get(down)
                if parts is None:
                    parts = batches[down] = []
                parts += (buf[start : start + a], orig, buf[start + b : end])
            buf = buf[used:]
            for down, parts in batches.items():
                down.write(b"".join(parts))


async def main(args: argparse.Namespace) -> None:
    proto = PROTOCOLS[args.proto]
    _, heartbeat_response = load_exchange(proto, proto.heartbeat)
    lsock = rawio.listen(args.listen)
    upstream = await rawio.connect_retry(args.upstream)
    print(f"rpc_floor {proto.name}: 127.0.0.1:{args.listen} -> 127.0.0.1:{args.upstream}", flush=True)
    await Forwarder(proto, upstream, heartbeat_response).serve(lsock)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proto", choices=sorted(PROTOCOLS), required=True)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    trio.run(main, ap.parse_args())
