"""A tiny HTTP/1.1 backend on trio whose behaviour a test switches while it runs.

It runs in the test's own trio loop on 127.0.0.1 (port chosen by the OS), keeps
connections alive, and answers every request head (bodies are not expected) with
:attr:`SwitchBackend.status` and ``x-backend: NAME``.  While :attr:`SwitchBackend.stalled`
it holds every answer until :meth:`SwitchBackend.release` (or until it is unstalled).
"""

from __future__ import annotations

import trio

__all__ = ["SwitchBackend"]

_REASONS = {200: "OK", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class SwitchBackend:
    def __init__(self, name: str, *, status: int = 200) -> None:
        self.name = name
        self.status = status
        self.port = 0
        #: connections accepted and request heads received so far
        self.accepted = 0
        self.requests = 0
        #: answers held back while stalled
        self.stalled = False
        self._released = trio.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stall(self) -> None:
        self.stalled = True
        self._released = trio.Event()

    def release(self) -> None:
        """Answer every held request, and the next ones at once."""
        self.stalled = False
        self._released.set()

    async def serve(self, *, task_status: trio.TaskStatus[SwitchBackend] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        buf = b""
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                    while b"\r\n\r\n" in buf:
                        _, _, buf = buf.partition(b"\r\n\r\n")
                        self.requests += 1
                        if self.stalled:
                            await self._released.wait()
                        body = f"{self.name} {self.status}\n".encode()
                        head = (
                            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}\r\n"
                            f"content-length: {len(body)}\r\nx-backend: {self.name}\r\n\r\n"
                        )
                        await stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
