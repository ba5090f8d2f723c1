"""A tstream backend and a multiplexing tstream client on trio, for end-to-end tests.

Both speak the ``mosnpy_toy`` plugin's tstream protocol over real sockets on 127.0.0.1
by driving its sans-I/O stream connections (``examples/custom_protocol``).

The backend answers every request once its request has ended: response head
(``:status`` 200, or the request's ``x-status``, or 503 for the first ``x-fail-first``
requests to its path; with ``x-method``, ``x-path``, ``x-authority``, ``x-seen`` (the
how-manieth request to that path) and ``x-request-<name>`` echoing the request), then the request body
back in ``x-pieces`` (default 4) DATA frames written separately, then trailers:
``x-echo-count`` (DATA frames the request had), ``x-echo-bytes`` and
``x-trailer-<name>`` for each request trailer.  A ``slow: <ms>`` header delays the
answer; ``x-reset: before`` resets the stream instead of answering, ``x-reset: mid``
resets it after the head and the first body piece.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio
from mosnpy_toy.tstream import TStreamClientConnection, TStreamHeaders, TStreamServerConnection

from mosnpy.protocol.api import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.headers import HeaderMap

__all__ = ["BackendRequest", "Response", "TStreamBackend", "TStreamClient"]


@dataclass
class BackendRequest:
    """What the backend received on one stream."""

    stream_id: int
    method: str
    path: str
    authority: str
    headers: HeaderMap
    body: list[bytes] = field(default_factory=list)
    trailers: HeaderMap | None = None
    reset: str | None = None


class _Wire:
    """A stream connection and the socket its outbox goes to, one writer at a time."""

    def __init__(
        self, stream: trio.SocketStream, sc: TStreamServerConnection | TStreamClientConnection
    ) -> None:
        self.stream = stream
        self.sc = sc
        self.lock = trio.Lock()

    async def flush(self) -> None:
        async with self.lock:
            data = self.sc.data_to_send()
            if data:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass


class TStreamBackend:
    """A tstream server on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[BackendRequest] = []
        self.resets: list[BackendRequest] = []
        self.connections = 0
        #: path → requests seen, for ``x-fail-first``
        self.seen: dict[str, int] = {}
        self._scope = trio.CancelScope()

    async def serve(self, *, task_status: trio.TaskStatus[TStreamBackend] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    def kill(self) -> None:
        """Stop listening and drop every connection."""
        self._scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        wire = _Wire(stream, TStreamServerConnection())
        sc = wire.sc
        assert isinstance(sc, TStreamServerConnection)
        open_: dict[int, BackendRequest] = {}
        async with stream, trio.open_nursery() as nursery:
            try:
                async for data in stream:
                    ended: list[BackendRequest] = []
                    for event in sc.dispatch(bytes(data)):
                        if isinstance(event, ConnectionTerminated):
                            return
                        if isinstance(event, RequestReceived):
                            req = BackendRequest(
                                event.stream_id, event.method, event.path, event.host, event.headers
                            )
                            open_[event.stream_id] = req
                            self.requests.append(req)
                            if event.end_stream:
                                ended.append(req)
                            continue
                        req_or_none = open_.get(event.stream_id)
                        if req_or_none is None:
                            continue
                        req = req_or_none
                        if isinstance(event, DataReceived):
                            if event.data:
                                req.body.append(event.data)
                            if event.end_stream:
                                ended.append(req)
                        elif isinstance(event, TrailersReceived):
                            req.trailers = event.trailers
                            ended.append(req)
                        elif isinstance(event, StreamReset):
                            req.reset = event.message
                            self.resets.append(req)
                            open_.pop(event.stream_id, None)
                    for req in ended:
                        nursery.start_soon(self._answer, wire, sc, req)
                    await wire.flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()

    async def _answer(self, wire: _Wire, sc: TStreamServerConnection, req: BackendRequest) -> None:
        slow = req.headers.get("slow")
        if slow:
            await trio.sleep(int(slow) / 1000)
        sid = req.stream_id
        if not sc.expects_response(sid):
            return  # reset while we slept
        self.seen[req.path] = seen = self.seen.get(req.path, 0) + 1
        reset = req.headers.get("x-reset")
        if reset == "before":
            sc.reset(sid, ResetReason.REMOTE_RESET)
            await wire.flush()
            return
        status = int(req.headers.get("x-status", "200"))
        if seen <= int(req.headers.get("x-fail-first", "0")):
            status = 503
        head = HeaderMap(
            [
                ("x-method", req.method),
                ("x-path", req.path),
                ("x-authority", req.authority),
                ("x-seen", str(seen)),
            ]
            + [(f"x-request-{k}", v) for k, v in req.headers.items_all()]
        )
        sc.send_headers(sid, head, status=status, end_stream=False)
        await wire.flush()
        body = b"".join(req.body)
        pieces = max(1, int(req.headers.get("x-pieces", "4")))
        size = -(-len(body) // pieces) or 1
        for i in range(0, len(body), size):
            sc.send_data(sid, body[i : i + size], False)
            await wire.flush()
            if reset == "mid":
                await trio.sleep(0.05)
                sc.reset(sid, ResetReason.REMOTE_RESET)
                await wire.flush()
                return
        trailers = HeaderMap([("x-echo-count", str(len(req.body))), ("x-echo-bytes", str(len(body)))])
        for k, v in (req.trailers or HeaderMap()).items_all():
            trailers.add(f"x-trailer-{k}", v)
        sc.send_trailers(sid, trailers)
        await wire.flush()


@dataclass
class Response:
    """One answer as the client saw it."""

    status: int = 0
    headers: HeaderMap = field(default_factory=HeaderMap)
    body: list[bytes] = field(default_factory=list)
    trailers: HeaderMap | None = None
    reset: str | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def data(self) -> bytes:
        return b"".join(self.body)


class TStreamClient:
    """A tstream client over ONE connection: many streams in flight."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.sc = TStreamClientConnection()
        self.wire = _Wire(stream, self.sc)
        self.waiting: dict[int, Response] = {}
        self.closed = trio.Event()

    @classmethod
    async def connect(cls, port: int) -> TStreamClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.wire.stream.aclose()

    async def reader(self) -> None:
        try:
            async for data in self.wire.stream:
                self._deliver(self.sc.dispatch(bytes(data)))
                await self.wire.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            self._deliver(self.sc.connection_lost("connection closed"))

    def _deliver(self, events: list[StreamEvent]) -> None:
        for event in events:
            resp = self.waiting.get(event.stream_id)
            if resp is None:
                continue
            ended = False
            if isinstance(event, ResponseReceived):
                resp.status = event.status
                resp.headers = event.headers
                ended = event.end_stream
            elif isinstance(event, DataReceived):
                if event.data:
                    resp.body.append(event.data)
                ended = event.end_stream
            elif isinstance(event, TrailersReceived):
                resp.trailers = event.trailers
                ended = True
            elif isinstance(event, StreamReset):
                resp.reset = event.message or event.reason.value
                ended = True
            if ended:
                del self.waiting[event.stream_id]
                resp.done.set()

    async def request(
        self,
        path: str,
        *,
        method: str = "POST",
        authority: str = "svc",
        headers: Mapping[str, str] | None = None,
        body: Sequence[bytes] = (),
        trailers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a request (each body piece its own DATA frame, written separately) and
        wait for the whole answer."""
        sc = self.sc
        sid = sc.new_stream()
        resp = self.waiting[sid] = Response()
        head = TStreamHeaders(list((headers or {}).items()), method=method, target=path, authority=authority)
        sc.send_headers(sid, head, end_stream=not body and trailers is None)
        await self.wire.flush()
        for i, piece in enumerate(body):
            sc.send_data(sid, piece, i == len(body) - 1 and trailers is None)
            await self.wire.flush()
        if trailers is not None:
            sc.send_trailers(sid, HeaderMap(list(trailers.items())))
            await self.wire.flush()
        await resp.done.wait()
        return resp
