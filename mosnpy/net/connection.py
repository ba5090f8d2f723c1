"""A connection: one non-blocking socket, its filter chains, events and idle clock.

Theory of operation
-------------------
The hot path of a Python proxy is dominated by interpreter work around each syscall
(DESIGN §8), so a :class:`Connection` talks to a plain non-blocking stdlib socket and
parks with ``trio.lowlevel.wait_readable`` / ``wait_writable`` only when the kernel says
EAGAIN, instead of going through ``trio.SocketStream``.  Two habits keep the syscall
count low:

* :meth:`Connection.receive_some` yields to the scheduler once *before* trying ``recv``:
  after we sent a request, that one yield usually gives the peer time to answer, so the
  ``recv`` succeeds at once instead of failing with EAGAIN and registering with epoll.
* :meth:`Connection.send_all` tries ``send`` immediately and only waits when the socket
  buffer is full, so backpressure is the kernel's: a slow reader slows its writer.

Closing is synchronous (:meth:`Connection.close`): it wakes any task parked on the
socket (``notify_closing``), which then sees :class:`ConnectionClosedError`.  Every
close fires exactly one close event to the registered listeners.

A server-side connection is driven by :meth:`Connection.serve`, the one reader task per
connection: read, append to the read buffer, run the read filter chain.  Client-side
(upstream) connections are read by whoever owns them (a ping-pong pool's borrower, or a
multiplexing pool's reader task).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable
from time import perf_counter
from typing import Final

import trio

from mosnpy.native import mypyc_attr
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.stats import Traffic

__all__ = ["ConnectionClosedError", "Connection", "connect", "open_socket"]

log: Final = logging.getLogger("mosnpy.net")

_ids: Final = itertools.count(1)
#: where connections nobody counts for add their bytes (never read)
_UNCOUNTED: Final = Traffic()

#: How much one ``recv`` asks for.
READ_SIZE: Final = 65536

# Final aliases of what every message calls: compiled, ``trio.lowlevel.checkpoint`` is
# three lookups and an imported name one, where a Final is a C static.
_checkpoint: Final = trio.lowlevel.checkpoint
_perf_counter: Final = perf_counter


@mypyc_attr(native_class=False)
class ConnectionClosedError(ConnectionError):
    """The connection is closed (by us or the peer) or broke while in use."""


def _system_clock_offset(clock: trio.abc.Clock) -> float | None:
    """trio's default clock reads ``offset + perf_counter()``: its offset, so that
    :meth:`Connection.now` can read it inline; None for any other clock (a
    ``MockClock`` in tests), which is then called."""
    kind = type(clock)
    if kind.__name__ != "SystemClock" or not kind.__module__.startswith("trio."):
        return None
    offset = getattr(clock, "offset", None)
    return offset if isinstance(offset, float) else None


def format_address(addr: object) -> str:
    """Render a socket address as ``host:port`` (or the unix path)."""
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(addr, bytes):
        return addr.decode(errors="replace")
    return str(addr)


class Connection:
    """A non-blocking socket with filter chains, events and an idle clock.

    Args:
        sock: a connected socket; it is switched to non-blocking mode and owned by the
            connection from now on.
        server_side: True for accepted (downstream) connections.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_clock_offset",
        "_close_listeners",
        "_drained",
        "_fast_clock",
        "_send_lock",
        "_sending",
        "_sock",
        "_wbuf",
        "cancel_scope",
        "close_event",
        "closed",
        "filter_manager",
        "id",
        "last_active",
        "local_address",
        "nursery",
        "read_buffer",
        "remote_address",
        "server_side",
        "traffic",
        "values",
    )

    def __init__(self, sock: socket.socket, *, server_side: bool) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.id = next(_ids)
        self.server_side = server_side
        #: bytes moved, added to a counter shared with the listener or cluster that owns it
        self.traffic: Traffic = _UNCOUNTED
        self.local_address = format_address(sock.getsockname())
        try:
            self.remote_address = format_address(sock.getpeername())
        except OSError:
            self.remote_address = ""
        self.closed = False
        self.close_event: ConnectionEvent | None = None
        self.read_buffer = bytearray()
        self.filter_manager = FilterManager(self)
        clock = trio.lowlevel.current_clock()
        offset = _system_clock_offset(clock)
        self._clock: Callable[[], float] = clock.current_time
        self._fast_clock = offset is not None
        self._clock_offset = offset if offset is not None else 0.0
        self.last_active = self.now()
        #: free-form per-connection facts (listener filter findings, protocol state)
        self.values: dict[str, object] = {}
        #: for tasks that belong to this connection (e.g. one per multiplexed request);
        #: the listener provides it for accepted connections
        self.nursery: trio.Nursery | None = None
        #: cancelled by :meth:`close`: the work bound to this connection stops with it
        self.cancel_scope: trio.CancelScope | None = None
        self._close_listeners: list[Callable[[ConnectionEvent], None]] = []
        self._send_lock = trio.StrictFIFOLock()
        self._sending = False  # the send lock is held (see _send_holding_lock)
        #: bytes :meth:`write_nowait` could not send at once (a writer task drains them)
        self._wbuf = bytearray()
        self._drained: trio.Event | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection #{self.id} {self.local_address} <-> {self.remote_address} {state}>"

    # -- events ------------------------------------------------------------------

    def add_event_listener(self, callback: Callable[[ConnectionEvent], None]) -> None:
        """Call ``callback(event)`` on close events and on :meth:`notify`."""
        self._close_listeners.append(callback)

    def notify(self, event: ConnectionEvent) -> None:
        """Deliver a non-close event (e.g. SHUTDOWN) to the listeners."""
        for cb in list(self._close_listeners):
            try:
                cb(event)
            except Exception:
                log.exception("connection event listener failed on %s", event)

    # -- I/O ---------------------------------------------------------------------

    async def receive_some(self, max_bytes: int = READ_SIZE) -> bytes:
        """Return the next bytes from the peer, or ``b""`` once the peer has closed.

        Raises:
            ConnectionClosedError: the connection was closed locally or broke.

        Cancellation: safe; nothing is consumed unless it is returned.
        """
        await _checkpoint()
        while True:
            data = self.receive_nowait(max_bytes)
            if data is not None:
                return data
            try:
                await trio.lowlevel.wait_readable(self._sock)
            except trio.ClosedResourceError:
                raise ConnectionClosedError(f"{self!r} was closed while reading") from None

    def receive_nowait(self, max_bytes: int = READ_SIZE) -> bytes | None:
        """What has already arrived, without waiting: bytes, ``b""`` at EOF, or None.

        Not a checkpoint.  A caller that just yielded (say, after sending a request)
        often finds the answer here and skips arming a timeout for the wait.

        Raises:
            ConnectionClosedError: the connection was closed locally or broke.
        """
        if self.closed:
            raise ConnectionClosedError(f"{self!r} is closed")
        try:
            data = self._sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            self.close(ConnectionEvent.READ_ERROR_CLOSE)
            raise ConnectionClosedError(f"read failed: {exc}") from exc
        self.last_active = self.now()
        self.traffic.read += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of ``data``, waiting while the socket buffer is full.

        Write filters see the bytes first.  Concurrent senders are served in order.

        Raises:
            ConnectionClosedError: the connection is closed or the send failed.
        """
        if self.filter_manager.write_filters:
            buf = bytearray(data)
            if not self.filter_manager.on_write(buf):
                await trio.lowlevel.checkpoint()
                return
            data = buf
        lock = self._send_lock
        if self._wbuf:
            await self.drain()  # after what write_nowait queued, in order
        if self._sending:
            # Another task is mid-send on this connection (multiplexed streams):
            # queue behind it so frames never interleave.
            async with lock:
                await self._send_holding_lock(data)
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        lock.acquire_nowait()
        try:
            await self._send_holding_lock(data)
        finally:
            lock.release()

    async def _send_holding_lock(self, data: bytes | bytearray | memoryview) -> None:
        # ``_sending`` mirrors "the send lock is held" as a plain field: the write path
        # reads it on every message, where ``Lock.locked()`` would be a Python call.
        self._sending = True
        try:
            await self._send_unlocked(data)
        finally:
            self._sending = False

    def write_nowait(self, data: bytes | bytearray) -> None:
        """Send ``data`` without waiting: what the kernel does not take now is kept and
        sent by a writer task in :attr:`nursery`, in order.

        For a task that must not block on this peer (an upstream reader answering many
        clients: a slow one must not stall the others).  :attr:`write_backlog` says how
        much is waiting; whoever feeds this connection bounds it with :meth:`drain`.

        Raises:
            ConnectionClosedError: the connection is closed or the send failed.
        """
        if self.filter_manager.write_filters:
            buf = bytearray(data)
            if not self.filter_manager.on_write(buf):
                return
            data = buf
        self._write_wire(data)

    def _write_wire(self, data: bytes | bytearray) -> None:
        """Put bytes on the wire without waiting (the transport seam: TLS encrypts here
        and hands the records on)."""
        if self._wbuf or self._sending:
            # A writer holds the socket: queue behind it, in order.
            if self.closed:
                raise ConnectionClosedError(f"{self!r} is closed")
            start = not self._wbuf
            self._wbuf += data
            if start:
                self._start_writer()
            return
        if self.closed:
            raise ConnectionClosedError(f"{self!r} is closed")
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.close(ConnectionEvent.WRITE_ERROR_CLOSE)
            raise ConnectionClosedError(f"write failed: {exc}") from exc
        self.traffic.written += sent
        if sent == len(data):
            self.last_active = self.now()
            return
        self._wbuf += memoryview(data)[sent:]
        self._start_writer()

    def _start_writer(self) -> None:
        if self.nursery is None:
            self.close(ConnectionEvent.WRITE_ERROR_CLOSE)
            raise ConnectionClosedError(f"{self!r}: socket full and no nursery for a writer task")
        self.nursery.start_soon(self._write_backlog)

    @property
    def write_backlog(self) -> int:
        """Bytes queued by :meth:`write_nowait` and not yet sent."""
        return len(self._wbuf)

    async def drain(self) -> None:
        """Wait until :meth:`write_nowait`'s backlog is sent (or the connection closed)."""
        while self._wbuf and not self.closed:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()
        await trio.lowlevel.checkpoint()

    async def _write_backlog(self) -> None:
        try:
            async with self._send_lock:
                while self._wbuf:
                    data = bytes(self._wbuf)
                    self._wbuf.clear()
                    await self._send_holding_lock(data)
        except ConnectionClosedError:
            self._wbuf.clear()
        finally:
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    async def _send_unlocked(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        total = len(view)
        try:
            while view:
                if self.closed:
                    raise ConnectionClosedError(f"{self!r} is closed")
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    try:
                        await trio.lowlevel.wait_writable(self._sock)
                    except trio.ClosedResourceError:
                        raise ConnectionClosedError(f"{self!r} was closed while writing") from None
                    continue
                except OSError as exc:
                    self.close(ConnectionEvent.WRITE_ERROR_CLOSE)
                    raise ConnectionClosedError(f"write failed: {exc}") from exc
                self.traffic.written += sent
                view = view[sent:]
        except BaseException:
            if 0 < len(view) < total:
                # Interrupted (cancelled) part way: the peer has half a message and
                # the stream can never carry another one.  Nobody may send on it.
                self.close(ConnectionEvent.WRITE_ERROR_CLOSE)
            raise
        self.last_active = self.now()

    def now(self) -> float:
        """The run's clock (``trio.current_time()``, which takes three calls), read
        without a Python call when it is trio's own: a request reads it several times."""
        if self._fast_clock:
            return self._clock_offset + _perf_counter()
        return self._clock()

    def peer_closed_while_idle(self) -> bool:
        """True if an idle connection's peer has closed it (or sent unexpected bytes).

        A pool calls this before reusing a kept-alive connection: one non-blocking
        ``MSG_PEEK`` tells a dead idle connection from a live one without waiting.
        """
        if self.closed:
            return True
        try:
            data = self._sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        # EOF, or bytes nobody asked for: either way the connection is unusable.
        del data
        return True

    def shutdown_write(self) -> None:
        """Send FIN after what is queued (a half-close); reading goes on."""
        if not self.closed:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.close()

    def close(self, event: ConnectionEvent = ConnectionEvent.LOCAL_CLOSE) -> None:
        """Close now (idempotent); wake parked tasks; fire ``event`` once."""
        if self.closed:
            return
        self.closed = True
        self.close_event = event
        try:
            trio.lowlevel.notify_closing(self._sock)
        except RuntimeError:  # outside trio (e.g. at interpreter exit)
            pass
        try:
            if event is ConnectionEvent.LOCAL_CLOSE and self._sock.family != socket.AF_UNIX:
                # Send FIN after what is already queued, so a final response arrives.
                self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()
        for cb in list(self._close_listeners):
            try:
                cb(event)
            except Exception:
                log.exception("connection close listener failed")

    # -- the reader task ---------------------------------------------------------------

    async def serve(self) -> None:
        """Run the read filter chain until the connection closes (the reader task)."""
        fm = self.filter_manager
        try:
            if not fm.start():
                return
            while not self.closed:
                try:
                    data = await self.receive_some()
                except ConnectionClosedError:
                    break
                if not data:
                    if not await fm.on_eof():
                        self.close(ConnectionEvent.REMOTE_CLOSE)
                    break
                self.read_buffer += data
                await fm.on_read()
        finally:
            self.close()


async def connect(address: str, *, timeout: float) -> Connection:
    """Open a client connection to ``host:port`` or a unix socket path (see
    :func:`open_socket`)."""
    return Connection(await open_socket(address, timeout=timeout), server_side=False)


async def open_socket(address: str, *, timeout: float) -> socket.socket:
    """A connected non-blocking socket to ``host:port`` or a unix socket path.

    A host name is resolved with ``getaddrinfo`` in a worker thread (trio's), so a
    slow DNS answer never blocks the event loop; IP literals skip that.

    Raises:
        ConnectionRefusedError, OSError: the connect failed.
        TimeoutError: it (with the name lookup) did not finish within ``timeout``.
    """
    try:
        with trio.fail_after(timeout):
            family, sockaddr = resolve(address)
            if family == socket.AF_UNIX or _is_ip_literal(str(sockaddr[0])):
                candidates = [(family, sockaddr)]
            else:
                candidates = await _lookup(str(sockaddr[0]), int(sockaddr[1]))
            # Each address in the resolver's order, until one answers.
            for i, (family, sockaddr) in enumerate(candidates):
                try:
                    sock = await _connect_one(family, sockaddr, address)
                    break
                except OSError:
                    if i == len(candidates) - 1:
                        raise
    except trio.TooSlowError:
        raise TimeoutError(f"connect to {address} timed out after {timeout}s") from None
    return sock


async def _connect_one(
    family: socket.AddressFamily, sockaddr: str | tuple[str, int], address: str
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect(sockaddr)
        except (BlockingIOError, InterruptedError):
            pass
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {address}: {errno.errorcode.get(err, err)}")
    except BaseException:
        sock.close()
        raise
    return sock


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _lookup(host: str, port: int) -> list[tuple[socket.AddressFamily, str | tuple[str, int]]]:
    """Every address of ``host``, in the resolver's order (no blocking: a thread)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host}: no address")
    return [(family, (str(sa[0]), int(sa[1]))) for family, _, _, _, sa in infos]


def resolve(address: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """Turn ``host:port``, ``[v6]:port`` or ``/unix/path`` into (family, sockaddr).

    No name lookup happens here (a host name stays as it is): :func:`connect` looks
    names up without blocking, and listeners bind addresses.
    """
    if address.startswith("/") or address.startswith("unix:"):
        return socket.AF_UNIX, address.removeprefix("unix:")
    host, sep, port_s = address.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f"bad address {address!r}: expected host:port or a unix socket path")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port_s))
