"""The HTTP/2 floor: the cheapest trio h2c reverse proxy that still does the job properly.

    python benchmarks/floors/h2_floor.py --listen PORT --upstream PORT

The job of mosnpy's Http2 listener with an HTTP/2 (``Auto``) upstream, and nothing more:

* h2c with prior knowledge on both sides, on the ``h2`` library.  h2 validates every
  header block it receives (``validate_inbound_headers``, from clients and from the
  upstream alike, as mosnpy does): names, pseudo headers, and the connection-specific
  headers of RFC 9113 §8.2.2 (``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding``, ``upgrade``, ``te`` other than ``trailers``), which make a
  message malformed, so none of them can be forwarded.  What goes out was validated on
  the way in, so outbound validation and normalisation are off.
* ONE upstream connection, shared by every downstream connection.  Another one is opened
  only when each open one carries as many streams as its ``MAX_CONCURRENT_STREAMS``
  allows; a new connection takes streams once the upstream's SETTINGS have arrived.
  Requests that find no room wait, in order, for the next free slot.
* Every downstream stream gets one upstream stream; the header block (``:authority`` and
  the other pseudo headers as received), DATA, trailers and END_STREAM are forwarded as
  they arrive, both ways, and so are resets (with their error code).
* Flow control end to end: DATA is sent only within the receiver's stream and
  connection windows; the rest waits on its stream until a WINDOW_UPDATE (or SETTINGS)
  opens them.  Received DATA is acknowledged (its window reopened) only when it has been
  passed on, so a slow reader slows its sender down instead of filling memory.
* The events of one read are handled in one go, then each connection they touched gets
  its output in one write.
* An upstream GOAWAY: the streams it accepted finish, later ones get 502, new streams go
  to another connection.  A lost upstream connection answers its streams 502 (resets
  those whose response had started); a lost client connection cancels its streams
  upstream; a malformed message ends its connection (h2 sends GOAWAY), as in mosnpy.

Omitted (mosnpy has them): routing, filters, retries, timeouts, HTTP/1 on either side,
gRPC, abuse limits (rapid reset, control-frame floods), PING keep-alive, graceful
shutdown.  Settings are h2's defaults (100 concurrent streams per client connection,
64 KiB windows) plus no server push from upstream.

I/O is on plain non-blocking sockets (:mod:`benchmarks.rawio`), as in the other floors:
yield, then recv, and park in ``wait_readable`` only on EAGAIN.  SIGTERM ends the process.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio
from trio.lowlevel import checkpoint, wait_readable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rawio

READ = 65536
CANCEL = h2.errors.ErrorCodes.CANCEL
INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
BAD_GATEWAY = [(b":status", b"502"), (b"content-length", b"0")]
# A send on a stream or connection the peer has just closed or reset.
SEND_FAILED = (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError)


def h2_config(client_side: bool) -> h2.config.H2Configuration:
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


DOWN_CONFIG = h2_config(False)
UP_CONFIG = h2_config(True)


class Side:
    """One HTTP/2 connection, downstream or upstream: its socket, writer, h2 state and streams."""

    __slots__ = ("blocked", "dirty", "h2", "out", "pairs", "sock")

    def __init__(self, sock: socket.socket, conn: h2.connection.H2Connection) -> None:
        self.sock = sock
        self.h2 = conn
        self.out = rawio.Out(sock)
        #: stream id on this connection -> the proxied stream
        self.pairs: dict[int, Pair] = {}
        #: stream id on this connection -> the flow waiting for this peer's windows
        self.blocked: dict[int, Flow] = {}
        #: h2 may hold output for this connection (see Proxy.flush)
        self.dirty = False


class Upstream(Side):
    __slots__ = ("active", "draining", "limit", "ready", "scope")

    def __init__(self, sock: socket.socket, conn: h2.connection.H2Connection) -> None:
        super().__init__(sock, conn)
        self.active = 0  # streams on it not yet finished both ways
        self.limit = 0  # the upstream's MAX_CONCURRENT_STREAMS
        self.ready = False  # its SETTINGS arrived
        self.draining = False  # GOAWAY received (or stream ids used up): no new stream
        self.scope = trio.CancelScope()


class Flow:
    """One direction of a proxied stream: received on ``src`` (stream ``src_sid``), sent on
    ``dst`` (stream ``dst_sid``; ``dst`` is None while the request waits for an upstream
    stream).  ``queue`` holds received DATA not yet sent (not yet acknowledged)."""

    __slots__ = ("dst", "dst_sid", "ended", "pair", "queue", "sent_end", "src", "src_sid", "trailers")

    def __init__(self, pair: Pair, src: Side | None, src_sid: int, dst: Side | None, dst_sid: int) -> None:
        self.pair = pair
        self.src, self.src_sid = src, src_sid
        self.dst, self.dst_sid = dst, dst_sid
        self.queue: deque[bytes] = deque()
        self.ended = False  # END_STREAM received from src
        self.sent_end = False  # END_STREAM sent to dst
        self.trailers: list[Any] | None = None


class Pair:
    """A downstream stream and the upstream stream it is forwarded on."""

    __slots__ = ("dead", "down", "dsid", "head", "req", "resp", "started", "up", "usid")

    def __init__(self, down: Side, dsid: int, head: list[Any]) -> None:
        self.down, self.dsid = down, dsid
        self.up: Upstream | None = None
        self.usid = 0
        self.head = head  # the request's header block
        self.started = False  # response headers sent downstream
        self.dead = False
        self.req = Flow(self, down, dsid, None, 0)
        self.resp = Flow(self, None, 0, down, dsid)


Handler = Callable[[Any, Any, Any], None]


class Proxy:
    def __init__(self, upstream_port: int, nursery: trio.Nursery) -> None:
        self.upstream_port = upstream_port
        self.nursery = nursery
        self.pool: list[Upstream] = []  # ready, not draining
        self.pending: deque[Pair] = deque()  # requests waiting for room upstream
        self.opening = False  # a new upstream connection is on its way
        self.dirty: list[Side] = []

    # ------------------------------------------------------------ output

    def mark(self, side: Side) -> None:
        if not side.dirty:
            side.dirty = True
            self.dirty.append(side)

    def flush(self) -> None:
        """Every connection touched since the last flush: its output in one write."""
        for side in self.dirty:
            side.dirty = False
            data = side.h2.data_to_send()
            if data:
                side.out.write(data)
        self.dirty.clear()

    # ------------------------------------------------------------ reading

    async def read(self, side: Side, handlers: dict[type, Handler]) -> None:
        """Feed ``side``'s bytes to h2 and its events to ``handlers`` until EOF or error."""
        sock, conn = side.sock, side.h2
        while True:
            await checkpoint()  # yield, then recv: more frames usually arrived meanwhile
            try:
                data = sock.recv(READ)
            except BlockingIOError:
                await wait_readable(sock)
                continue
            except OSError:
                return
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                side.out.write(conn.data_to_send())  # h2's GOAWAY
                return
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, side, event)
            self.mark(side)  # SETTINGS / PING acks, WINDOW_UPDATEs
            self.flush()

    # ------------------------------------------------------------ downstream

    async def downstream(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(DOWN_CONFIG)
        conn.initiate_connection()
        down = Side(sock, conn)
        down.out.write(conn.data_to_send())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(down.out.flush_forever)
                await self.read(down, DOWN_HANDLERS)
                nursery.cancel_scope.cancel()
        finally:
            down.out.broken = True
            rawio.close(sock)
            for pair in list(down.pairs.values()):
                self.kill(pair, CANCEL)
            self.flush()

    def on_request(self, down: Side, event: h2.events.RequestReceived) -> None:
        pair = Pair(down, event.stream_id, event.headers)
        down.pairs[event.stream_id] = pair
        pair.req.ended = event.stream_ended is not None
        if not self.pending:
            up = self.room()
            if up is not None:
                self.start(pair, up)
                return
        self.pending.append(pair)
        self.assign()

    # ------------------------------------------------------------ upstream connections

    def room(self) -> Upstream | None:
        for up in self.pool:
            if up.active < up.limit:
                return up
        return None

    def assign(self) -> None:
        """Start waiting requests while an upstream connection has room; else open one."""
        pending = self.pending
        while pending:
            pair = pending[0]
            if pair.dead:
                pending.popleft()
                continue
            up = self.room()
            if up is None:
                if not self.opening:
                    self.opening = True
                    self.nursery.start_soon(self.upstream)
                return
            pending.popleft()
            self.start(pair, up)

    def start(self, pair: Pair, up: Upstream) -> None:
        """Open ``pair``'s stream on ``up``: the request's header block, then what waits."""
        conn = up.h2
        req = pair.req
        try:
            usid = conn.get_next_available_stream_id()
            end = req.ended and not req.queue and req.trailers is None
            conn.send_headers(usid, pair.head, end_stream=end)
        except h2.exceptions.NoAvailableStreamIDError:
            self.retire(up)
            self.pending.appendleft(pair)
            self.assign()
            return
        except h2.exceptions.TooManyStreamsError:  # its limit fell under what we counted
            up.limit = up.active
            self.pending.appendleft(pair)
            self.assign()
            return
        pair.up, pair.usid = up, usid
        up.pairs[usid] = pair
        up.active += 1
        req.dst, req.dst_sid = up, usid
        pair.resp.src, pair.resp.src_sid = up, usid
        self.mark(up)
        if end:
            req.sent_end = True
        elif req.queue or req.ended:
            self.pump(req)

    def retire(self, up: Upstream) -> None:
        """No new streams on ``up``; it closes with its last one."""
        up.draining = True
        if up in self.pool:
            self.pool.remove(up)
        if not up.active:
            up.scope.cancel()

    async def upstream(self) -> None:
        """Open one upstream connection and serve it until it closes."""
        try:
            sock = await rawio.connect(self.upstream_port)
        except OSError:
            self.opening = False
            self.fail_pending()
            self.flush()
            return
        conn = h2.connection.H2Connection(UP_CONFIG)
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        conn.initiate_connection()
        up = Upstream(sock, conn)
        up.out.write(conn.data_to_send())
        try:
            with up.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(up.out.flush_forever)
                    await self.read(up, UP_HANDLERS)
                    nursery.cancel_scope.cancel()
        finally:
            up.out.broken = True
            rawio.close(sock)
            self.up_lost(up)
            self.flush()

    def up_lost(self, up: Upstream) -> None:
        if up in self.pool:
            self.pool.remove(up)
        if not up.ready:
            self.opening = False
            self.fail_pending()  # it closed before its SETTINGS: do not loop reconnecting
        for pair in list(up.pairs.values()):
            self.fail(pair)
        self.assign()

    def fail_pending(self) -> None:
        while self.pending:
            self.fail(self.pending.popleft())

    def on_settings(self, up: Upstream, event: h2.events.RemoteSettingsChanged) -> None:
        up.limit = up.h2.remote_settings.max_concurrent_streams
        if not up.ready:
            up.ready = True
            self.opening = False
            self.pool.append(up)
        self.on_window(up, event)
        self.assign()

    def on_goaway(self, side: Side, event: h2.events.ConnectionTerminated) -> None:
        """The peer goes away: streams it accepted finish (h2 would refuse their frames:
        its state goes back to open); upstream, later streams fail and no new one starts."""
        conn = side.h2
        client = conn.config.client_side
        open_state = h2.connection.ConnectionState
        conn.state_machine.state = open_state.CLIENT_OPEN if client else open_state.SERVER_OPEN
        if isinstance(side, Upstream):
            last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
            for usid, pair in list(side.pairs.items()):
                if usid > last:
                    self.fail(pair)
            self.retire(side)

    # ------------------------------------------------------------ forwarding

    def on_response(self, up: Upstream, event: h2.events.ResponseReceived) -> None:
        pair = up.pairs.get(event.stream_id)
        if pair is None:
            return
        resp = pair.resp
        resp.ended = event.stream_ended is not None
        try:
            pair.down.h2.send_headers(pair.dsid, event.headers, end_stream=resp.ended)
        except SEND_FAILED:
            self.kill(pair, CANCEL)
            return
        pair.started = True
        self.mark(pair.down)
        if resp.ended:
            resp.sent_end = True
            if pair.req.sent_end:
                self.finish(pair)

    def on_informational(self, up: Upstream, event: h2.events.InformationalResponseReceived) -> None:
        pair = up.pairs.get(event.stream_id)
        if pair is None:
            return
        try:
            pair.down.h2.send_headers(pair.dsid, event.headers)
        except SEND_FAILED:
            self.kill(pair, CANCEL)
            return
        self.mark(pair.down)

    def on_data(self, side: Side, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        data = event.data
        pair = side.pairs.get(sid)
        if pair is None:  # a stream we no longer forward: keep the connection window open
            if event.flow_controlled_length:
                side.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            return
        padding = event.flow_controlled_length - len(data)
        if padding > 0:
            side.h2.acknowledge_received_data(padding, sid)
        flow = pair.req if side is pair.down else pair.resp
        if data:
            flow.queue.append(data)
        if event.stream_ended is not None:
            flow.ended = True
        if flow.dst is not None:
            self.pump(flow)

    def on_trailers(self, side: Side, event: h2.events.TrailersReceived) -> None:
        pair = side.pairs.get(event.stream_id)
        if pair is None:
            return
        flow = pair.req if side is pair.down else pair.resp
        flow.trailers = event.headers
        flow.ended = True
        if flow.dst is not None:
            self.pump(flow)

    def pump(self, flow: Flow) -> None:
        """Send what ``flow`` holds within the receiver's windows, acknowledge it to the
        sender, and END_STREAM (or the trailers) once all of it is out."""
        dst, sid = flow.dst, flow.dst_sid
        assert dst is not None and flow.src is not None
        conn = dst.h2
        queue = flow.queue
        try:
            if queue:
                window = conn.local_flow_control_window(sid)
                frame = conn.max_outbound_frame_size
                sent = 0
                while queue and window > 0:
                    chunk = queue[0]
                    n = min(len(chunk), window, frame)
                    if n < len(chunk):
                        queue[0] = chunk[n:]
                        chunk = chunk[:n]
                    else:
                        queue.popleft()
                    window -= n
                    sent += n
                    last = not queue and flow.ended and flow.trailers is None
                    conn.send_data(sid, chunk, end_stream=last)
                    flow.sent_end = last
                if sent:
                    flow.src.h2.acknowledge_received_data(sent, flow.src_sid)
                    self.mark(flow.src)
                    self.mark(dst)
                if queue:
                    dst.blocked[sid] = flow
                    return
                if dst.blocked:
                    dst.blocked.pop(sid, None)
            if flow.ended and not flow.sent_end:
                if flow.trailers is not None:
                    conn.send_headers(sid, flow.trailers, end_stream=True)
                else:
                    conn.send_data(sid, b"", end_stream=True)
                flow.sent_end = True
                self.mark(dst)
        except SEND_FAILED:
            self.kill(flow.pair, CANCEL)
            return
        if flow.sent_end:
            pair = flow.pair
            if pair.req.sent_end and pair.resp.sent_end:
                self.finish(pair)

    def on_window(self, side: Side, event: Any) -> None:
        """A WINDOW_UPDATE (or SETTINGS): move what waits for this peer's windows."""
        if not side.blocked:
            return
        sid = event.stream_id if isinstance(event, h2.events.WindowUpdated) else 0
        if sid:
            flow = side.blocked.get(sid)
            if flow is not None:
                self.pump(flow)
        else:
            for flow in list(side.blocked.values()):
                if not flow.pair.dead:
                    self.pump(flow)

    # ------------------------------------------------------------ ends of streams

    def finish(self, pair: Pair) -> None:
        """Both directions are complete: forget the pair; its upstream slot is free."""
        pair.dead = True
        pair.down.pairs.pop(pair.dsid, None)
        up = pair.up
        if up is not None and up.pairs.pop(pair.usid, None) is not None:
            up.active -= 1
            if up.draining and not up.active:
                up.scope.cancel()
            elif self.pending:
                self.assign()

    def on_reset(self, side: Side, event: h2.events.StreamReset) -> None:
        pair = side.pairs.get(event.stream_id)
        if pair is not None:
            self.kill(pair, event.error_code, origin=side)

    def kill(self, pair: Pair, code: int, origin: Side | None = None) -> None:
        """Reset ``pair`` with ``code`` on both sides (but ``origin``, which reset it)."""
        if pair.dead:
            return
        for side, sid in ((pair.down, pair.dsid), (pair.up, pair.usid)):
            if side is not None and side is not origin:
                self.reset(side, sid, code)
        self.drop(pair)

    def fail(self, pair: Pair) -> None:
        """The upstream failed ``pair``: 502 if its response has not started, else a reset."""
        if pair.dead:
            return
        if pair.started:
            self.kill(pair, INTERNAL_ERROR)
            return
        down = pair.down
        try:
            down.h2.send_headers(pair.dsid, BAD_GATEWAY, end_stream=True)
        except SEND_FAILED:
            pass
        self.mark(down)
        if not pair.req.ended:  # the answer is complete: the client may stop sending
            self.reset(down, pair.dsid, NO_ERROR)
        if pair.up is not None:
            self.reset(pair.up, pair.usid, CANCEL)
        self.drop(pair)

    def reset(self, side: Side, sid: int, code: int) -> None:
        try:
            side.h2.reset_stream(sid, code)
        except SEND_FAILED:
            return  # closed there already
        self.mark(side)

    def drop(self, pair: Pair) -> None:
        """Forget ``pair`` before its end; acknowledge the DATA it held, so that the
        connection windows stay open."""
        for flow in (pair.req, pair.resp):
            if flow.dst is not None:
                flow.dst.blocked.pop(flow.dst_sid, None)
            if flow.queue and flow.src is not None:
                held = sum(len(chunk) for chunk in flow.queue)
                flow.queue.clear()
                flow.src.h2.acknowledge_received_data(held, flow.src_sid)
                self.mark(flow.src)
        self.finish(pair)


DOWN_HANDLERS: dict[type, Handler] = {
    h2.events.RequestReceived: Proxy.on_request,
    h2.events.DataReceived: Proxy.on_data,
    h2.events.TrailersReceived: Proxy.on_trailers,
    h2.events.StreamReset: Proxy.on_reset,
    h2.events.WindowUpdated: Proxy.on_window,
    h2.events.RemoteSettingsChanged: Proxy.on_window,
    h2.events.ConnectionTerminated: Proxy.on_goaway,
}
UP_HANDLERS: dict[type, Handler] = {
    h2.events.ResponseReceived: Proxy.on_response,
    h2.events.InformationalResponseReceived: Proxy.on_informational,
    h2.events.DataReceived: Proxy.on_data,
    h2.events.TrailersReceived: Proxy.on_trailers,
    h2.events.StreamReset: Proxy.on_reset,
    h2.events.WindowUpdated: Proxy.on_window,
    h2.events.RemoteSettingsChanged: Proxy.on_settings,
    h2.events.ConnectionTerminated: Proxy.on_goaway,
}


async def main(args: argparse.Namespace) -> None:
    lsock = rawio.listen(args.listen)
    print(f"h2_floor: 127.0.0.1:{args.listen} -> 127.0.0.1:{args.upstream} (h2c both ways)", flush=True)
    async with trio.open_nursery() as nursery:
        proxy = Proxy(args.upstream, nursery)
        while True:
            nursery.start_soon(proxy.downstream, await rawio.accept(lsock))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    trio.run(main, ap.parse_args())
