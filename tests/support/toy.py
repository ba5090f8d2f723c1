"""A toy-protocol provider and multiplexing consumer on trio, for engine tests.

The provider answers ``method=echo`` with the request body, ``method=slow`` after
``delay_ms``, ``method=fail`` with status 1, and stays silent to ``method=silent``.
Both sides use the example plugin's codec (``examples/custom_protocol``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import trio
from mosnpy_toy.codec import ToyCodec, ToyFrame

from mosnpy.protocol.xprotocol import XClientStreamConnection, XHeaders
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import MultiplexPool

__all__ = ["ToyClient", "ToyProvider", "call", "toy_pool"]


def toy_pool(
    host: Host,
    nursery: trio.Nursery,
    *,
    keepalive_interval: float = 15.0,
    keepalive_timeout: float = 1.0,
    keepalive_failures: int = 6,
    **options: int,
) -> MultiplexPool:
    """A stream pool of toy-protocol client stream connections."""

    def factory() -> XClientStreamConnection:
        return XClientStreamConnection(
            ToyCodec(),
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            keepalive_failures=keepalive_failures,
        )

    return MultiplexPool(host, factory, nursery, **options)


async def call(pool: MultiplexPool, frame: ToyFrame, *, oneway: bool = False) -> ToyFrame | None:
    """One toy call through ``pool``: the response frame (None for oneway)."""
    event = await pool.call(XHeaders(frame, ToyCodec.name), oneway=oneway)
    if event is None:
        return None
    headers = getattr(event, "headers", None)
    assert isinstance(headers, XHeaders), event
    frame = headers.frame
    assert isinstance(frame, ToyFrame)
    return frame


class ToyProvider:
    """A toy RPC server on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.heartbeats = 0
        self.oneways: list[ToyFrame] = []
        self.seen_ids: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._scope = trio.CancelScope()
        self.streams: list[trio.SocketStream] = []

    async def serve(
        self, *, port: int = 0, task_status: trio.TaskStatus[ToyProvider] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with self._scope:
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    def kill(self) -> None:
        """Stop listening and drop every connection at once (calls in flight die)."""
        self._scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.streams.append(stream)
        codec = ToyCodec()
        buf = bytearray()
        lock = trio.Lock()
        async with stream, trio.open_nursery() as nursery:
            async for data in stream:
                buf += data
                while (frame := codec.decode(buf)) is not None:
                    nursery.start_soon(self._answer, stream, lock, codec, frame)

    async def _answer(
        self, stream: trio.SocketStream, lock: trio.Lock, codec: ToyCodec, req: ToyFrame
    ) -> None:
        if req.kind == 3:
            self.heartbeats += 1
            resp: ToyFrame | None = codec.reply(req)
        elif req.kind == 1:
            self.oneways.append(req)
            resp = None
        else:
            self.requests += 1
            self.seen_ids.append(req.request_id)
            method = req.headers.get("method", "echo")
            if method == "slow":
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await trio.sleep(int(req.headers.get("delay_ms", "100")) / 1000)
                finally:
                    self.in_flight -= 1
            if method == "silent":
                resp = None
            elif method == "fail":
                resp = ToyFrame(2, req.request_id, {"error": "provider failed"}, status=1)
            else:
                resp = ToyFrame(2, req.request_id, {"served-by": "provider"}, req.body)
        if resp is not None:
            async with lock:
                try:
                    await stream.send_all(codec.encode(resp))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass


class ToyClient:
    """A multiplexing toy consumer over ONE connection: many calls in flight."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.codec = ToyCodec()
        self.ids = itertools.count(1000)
        self.waiting: dict[int, trio.MemorySendChannel[ToyFrame]] = {}
        self.send_lock = trio.Lock()
        self.closed = trio.Event()

    @classmethod
    async def connect(cls, port: int) -> ToyClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def reader(self) -> None:
        buf = bytearray()
        try:
            async for data in self.stream:
                buf += data
                while (frame := self.codec.decode(buf)) is not None:
                    ch = self.waiting.pop(frame.request_id, None)
                    if ch is not None:
                        ch.send_nowait(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            for ch in self.waiting.values():
                ch.close()

    async def send(self, frame: ToyFrame) -> None:
        async with self.send_lock:
            await self.stream.send_all(self.codec.encode(frame))

    async def call(
        self, headers: Mapping[str, str], body: bytes = b"", *, kind: int = 0, timeout_ms: int = 0
    ) -> ToyFrame:
        rid = next(self.ids)
        send_ch, recv_ch = trio.open_memory_channel[ToyFrame](1)
        self.waiting[rid] = send_ch
        await self.send(ToyFrame(kind, rid, dict(headers), body, timeout_ms=timeout_ms))
        try:
            return await recv_ch.receive()
        except trio.EndOfChannel:
            raise ConnectionError("connection closed before the answer") from None
