"""Cheap socket I/O on trio for the benchmark tools: plain non-blocking stdlib sockets.

``sock.recv`` / ``sock.send`` are called directly and a task parks in
``trio.lowlevel.wait_readable`` / ``wait_writable`` only when the kernel says EAGAIN.
trio's own socket methods add a schedule point and some objects to every call; the floors
and the load generator here avoid that, so that what they cost is the least a trio
program doing the same job must pay.  Everything binds and connects to 127.0.0.1.
"""

from __future__ import annotations

import errno
import socket

import trio
from trio.lowlevel import notify_closing, wait_readable, wait_writable

HOST = "127.0.0.1"


def nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listen(port: int) -> socket.socket:
    """A non-blocking listening socket on 127.0.0.1:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def accept(lsock: socket.socket) -> socket.socket:
    """The next accepted connection, non-blocking with TCP_NODELAY."""
    while True:
        try:
            conn, _ = lsock.accept()
        except BlockingIOError:
            await wait_readable(lsock)
            continue
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                await trio.sleep(0.01)
                continue
            raise
        return nonblocking(conn)


async def connect(port: int) -> socket.socket:
    """A non-blocking connection to 127.0.0.1:port (raises OSError on refusal)."""
    sock = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        err = sock.connect_ex((HOST, port))
        if err == errno.EINPROGRESS:
            await wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect 127.0.0.1:{port}: {errno.errorcode.get(err, err)}")
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_retry(port: int, seconds: float = 10.0) -> socket.socket:
    """:func:`connect`, retried every 0.1 s for up to ``seconds``."""
    with trio.fail_after(seconds):
        while True:
            try:
                return await connect(port)
            except OSError:
                await trio.sleep(0.1)


async def recv(sock: socket.socket, size: int = 65536) -> bytes:
    """Up to ``size`` bytes, waiting only if none are there yet; ``b""`` at EOF."""
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            await wait_readable(sock)


def send_now(sock: socket.socket, data: bytes | bytearray | memoryview) -> int:
    """One ``send`` that does not wait: the number of bytes the kernel took (0 on EAGAIN)."""
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


async def send_all(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """Send every byte: one ``send`` call unless the kernel takes only part of it."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await wait_writable(sock)
            continue
        view = view[sent:]


def close(sock: socket.socket) -> None:
    """Close a socket that trio may be waiting on (wakes those waiters first)."""
    try:
        notify_closing(sock)
    except Exception:
        pass
    sock.close()


class Out:
    """Writes from any task to one socket, never interleaved, without a task switch.

    :meth:`write` tries a direct ``send``; bytes the kernel does not take at once are
    queued, and :meth:`flush_forever` (one task per socket) sends the queue, joined, as
    soon as the socket is writable.  Once a send fails the socket counts as ``broken``
    and further writes are dropped.
    """

    __slots__ = ("broken", "pending", "sock", "wakeup")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending: list[bytes] = []
        self.wakeup = trio.Event()
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        if self.pending:
            self.pending.append(data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.broken = True
            self.wakeup.set()
            return
        if sent != len(data):
            self.pending.append(data[sent:])
            self.wakeup.set()

    async def flush_forever(self) -> None:
        """Send queued bytes until the socket breaks (then return)."""
        pending = self.pending
        while not self.broken:
            if not pending:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            await wait_writable(self.sock)
            data = b"".join(pending)
            pending.clear()
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.broken = True
                return
            if sent != len(data):
                pending.insert(0, data[sent:])
