"""A small HTTP/2 (h2c) backend and client on trio + h2, for flow-control tests.

Unlike nginx, both ends here can be told to read slowly, so a test can hold a window
shut and watch what the proxy does meanwhile.  Everything listens and connects on
127.0.0.1 only.

Backend paths:

* ``GET /bytes/<n>`` — ``n`` bytes of :func:`pattern`, sent as fast as the client's
  window allows;
* ``GET /slow/<s>`` — ``slow`` after ``s`` seconds;
* ``POST /upload`` — reads the body (``?delay=<s>`` sleeps that long before reading
  any of it) and answers ``<length>:<sha256 hex>``;
* ``GET /malformed`` — a response head HTTP/2 forbids (an upper-case field name), sent
  as it is (the backend's outbound checks are off).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import trio

LOCALHOST = "127.0.0.1"
CHUNK = 16384


def pattern(n: int) -> bytes:
    """``n`` deterministic bytes (what ``/bytes/<n>`` sends)."""
    block = bytes(range(256)) * 64
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


@dataclass
class _Upload:
    delay: float
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    length: int = 0


class H2Backend:
    """Serve the paths above; ``await nursery.start(backend.serve)`` returns the port."""

    def __init__(self) -> None:
        self.port = 0
        #: connections accepted so far
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=LOCALHOST)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding="utf-8",
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        conn.initiate_connection()
        windows: dict[int, trio.Event] = {}
        uploads: dict[int, _Upload] = {}
        lock = trio.Lock()

        async def flush() -> None:
            data = conn.data_to_send()
            if data:
                async with lock:
                    await stream.send_all(data)

        async def send_body(sid: int, body: bytes) -> None:
            view = memoryview(body)
            while view:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    windows[sid] = trio.Event()
                    await windows[sid].wait()
                    continue
                n = min(window, CHUNK)
                conn.send_data(sid, bytes(view[:n]))
                view = view[n:]
                await flush()
            conn.end_stream(sid)
            await flush()

        async def respond(sid: int, status: int, body: bytes, delay: float = 0.0) -> None:
            if delay:
                await trio.sleep(delay)
            conn.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body)))])
            await flush()
            await send_body(sid, body)

        async with trio.open_nursery() as nursery:
            await flush()
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = dict(event.headers)
                        path = headers[":path"]
                        if path.startswith("/bytes/"):
                            nursery.start_soon(respond, event.stream_id, 200, pattern(int(path[7:])))
                        elif path.startswith("/slow/"):
                            nursery.start_soon(respond, event.stream_id, 200, b"slow", float(path[6:]))
                        elif path == "/malformed":
                            conn.send_headers(
                                event.stream_id, [(":status", "200"), ("X-Upper", "1")], end_stream=True
                            )
                        elif path.startswith("/upload"):
                            delay = float(path.split("delay=")[1]) if "delay=" in path else 0.0
                            uploads[event.stream_id] = _Upload(delay)
                        else:
                            nursery.start_soon(respond, event.stream_id, 404, b"no such path\n")
                    elif isinstance(event, h2.events.DataReceived):
                        up = uploads.get(event.stream_id)
                        if up is not None:
                            if up.delay:
                                await trio.sleep(up.delay)  # hold every window shut meanwhile
                                up.delay = 0.0
                            up.digest.update(event.data)
                            up.length += len(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        up = uploads.pop(event.stream_id, None)
                        if up is not None:
                            answer = f"{up.length}:{up.digest.hexdigest()}".encode()
                            nursery.start_soon(respond, event.stream_id, 200, answer)
                    elif isinstance(event, h2.events.WindowUpdated):
                        targets = list(windows) if event.stream_id == 0 else [event.stream_id]
                        for sid in targets:
                            waiting = windows.pop(sid, None)
                            if waiting is not None:
                                waiting.set()
                await flush()
            nursery.cancel_scope.cancel()


class H2Client:
    """One h2c connection; requests one at a time, reading as slowly as asked."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )

    @classmethod
    async def connect(cls, port: int) -> H2Client:
        client = cls(await trio.open_tcp_stream(LOCALHOST, port))
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def get(
        self, path: str, *, pause_after: int = 0, pause: float = 0.0, on_pause: object = None
    ) -> tuple[int, bytes]:
        """GET ``path``; after ``pause_after`` body bytes stop reading for ``pause``
        seconds (awaiting ``on_pause()`` if given, while paused).  Returns (status, body)."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)],
            end_stream=True,
        )
        await self.flush()
        status = 0
        body = bytearray()
        paused = False
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("connection closed mid-response")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    await self.flush()
                    return status, bytes(body)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    raise ConnectionError(f"stream reset: {event.error_code!r}")
            if pause_after and not paused and len(body) >= pause_after:
                paused = True
                if on_pause is not None:
                    await on_pause()  # type: ignore[operator]
                await trio.sleep(pause)
            await self.flush()


async def upload(client: H2Client, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to ``path`` within the windows the peer grants; (status, answer)."""
    conn = client.conn
    sid = conn.get_next_available_stream_id()
    conn.send_headers(
        sid, [(":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", path)]
    )
    await client.flush()
    view = memoryview(body)
    status = 0
    answer = bytearray()
    ended = False

    def handle(data: bytes) -> None:
        nonlocal status, ended
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                answer.extend(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                ended = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                raise ConnectionError(f"stream reset: {event.error_code!r}")

    while view:
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if window <= 0:
            data = await client.stream.receive_some(65536)
            if not data:
                raise ConnectionError("connection closed mid-upload")
            handle(data)
            await client.flush()
            continue
        n = min(window, CHUNK)
        conn.send_data(sid, bytes(view[:n]))
        view = view[n:]
        await client.flush()
    conn.end_stream(sid)
    await client.flush()
    while not ended:
        data = await client.stream.receive_some(65536)
        if not data:
            raise ConnectionError("connection closed before the answer")
        handle(data)
        await client.flush()
    return status, bytes(answer)
