"""Listeners: bind, accept, run listener filters, build each connection's filters.

A :class:`Listener` owns a nursery for its connections; :meth:`Listener.serve` runs
until cancelled or until :meth:`Listener.drain` finishes.  Per connection it:

1. refuses it at once if ``max_connections`` connections are already open (an
   explicit close beats a silent backlog that makes clients hang);
2. runs the listener filters on the raw accepted socket;
3. wraps the socket in a :class:`~mosnpy.net.connection.Connection`, asks each network
   filter factory to populate its chain, and runs its reader task.

An idle sweeper closes connections that moved no bytes for ``idle_timeout`` seconds.
Draining (graceful shutdown) closes the listening socket, tells every connection
SHUTDOWN (the proxy closes idle ones at once and the rest after their in-flight
request), then waits for them until the deadline and cancels what is left.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import stat
from collections.abc import Sequence

import trio

from mosnpy.net.connection import Connection, format_address, resolve
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import AcceptedSocket, FilterStatus, ListenerFilter, NetworkFilterFactory

__all__ = ["Listener"]

log = logging.getLogger("mosnpy.net")

_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class Listener:
    """Accepts connections on one address and serves them with a filter chain.

    Args:
        name: the listener's name, for logs.
        address: ``host:port`` (port 0 picks one; see :attr:`address` once started) or
            a unix socket path.
        filter_factories: network filter factories, in chain order.
        listener_filters: run on each accepted socket before it becomes a connection.
        max_connections: refuse connections beyond this many (0 = unlimited).
        idle_timeout: close connections idle this long (None or 0 = never).
    """

    def __init__(
        self,
        name: str,
        address: str,
        filter_factories: Sequence[NetworkFilterFactory],
        *,
        listener_filters: Sequence[ListenerFilter] = (),
        max_connections: int = 0,
        idle_timeout: float | None = 90.0,
        backlog: int = 1024,
        reuse_port: bool = False,
    ) -> None:
        self.name = name
        self.requested_address = address
        self.filter_factories = list(filter_factories)
        self.listener_filters = list(listener_filters)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout or None
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.connections: set[Connection] = set()
        self.address = address
        self.refused = 0
        #: sockets accepted and not yet finished (in listener filters or connected)
        self.admitted = 0
        #: sockets accepted since start (refused ones not counted)
        self.connections_total = 0
        self._sock: socket.socket | None = None
        self._conn_nursery: trio.Nursery | None = None
        self._accepting = False
        self._all_closed = trio.Event()
        self._sweeper = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<Listener {self.name} {self.address} conns={len(self.connections)}>"

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`bind`)."""
        return int(self.address.rpartition(":")[2])

    def bind(self) -> None:
        """Create, bind and listen on the socket (done by :meth:`serve` if needed)."""
        if self._sock is not None:
            return
        family, sockaddr = resolve(self.requested_address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_UNIX:
                path = str(sockaddr)
                if os.path.exists(path):
                    if not stat.S_ISSOCK(os.stat(path).st_mode):
                        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
                    os.unlink(path)  # a stale socket from an earlier run
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.address = format_address(sock.getsockname())

    async def serve(self, *, task_status: trio.TaskStatus[Listener] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report started, and serve until cancelled or drained."""
        self.bind()
        assert self._sock is not None
        async with trio.open_nursery() as nursery:
            self._conn_nursery = nursery
            self._accepting = True
            if self.idle_timeout:
                nursery.start_soon(self._sweep_idle)
            log.info("listener %s serving on %s", self.name, self.address)
            task_status.started(self)
            await self._accept_loop(self._sock)
            # The accept loop ends when draining closed the socket; connections finish
            # in the nursery, and the idle sweeper exits when the last one is gone.

    async def _accept_loop(self, lsock: socket.socket) -> None:
        while self._accepting:
            try:
                sock, _ = lsock.accept()
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(lsock)
                except (trio.ClosedResourceError, OSError):
                    return
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    log.error("listener %s: accept failed (%s); retrying in 100 ms", self.name, exc)
                    await trio.sleep(0.1)
                    continue
                if lsock.fileno() < 0:  # closed by stop_accepting()
                    return
                raise
            if self.max_connections and self.admitted >= self.max_connections:
                self.refused += 1
                log.warning(
                    "listener %s: connection limit %d reached, refusing", self.name, self.max_connections
                )
                sock.close()
                await trio.lowlevel.checkpoint()
                continue
            assert self._conn_nursery is not None
            # Counted from accept (not once wrapped): sockets still in listener filters
            # hold a slot too, so a burst cannot overshoot the limit.
            self.admitted += 1
            self.connections_total += 1
            self._conn_nursery.start_soon(self._handle, sock)
            await trio.lowlevel.checkpoint()

    async def _handle(self, sock: socket.socket) -> None:
        try:
            await self._serve_socket(sock)
        finally:
            self.admitted -= 1

    async def _serve_socket(self, sock: socket.socket) -> None:
        accepted: AcceptedSocket | None = None
        if self.listener_filters:
            accepted = AcceptedSocket(format_address(sock.getsockname()), _peer(sock))
            for lf in self.listener_filters:
                try:
                    status = await lf.on_accept(accepted)
                except Exception:
                    log.exception("listener %s: listener filter failed", self.name)
                    status = FilterStatus.STOP
                if status is FilterStatus.STOP:
                    sock.close()
                    return
        conn = Connection(sock, server_side=True)
        if accepted is not None:
            conn.values.update(accepted.values)
        self.connections.add(conn)
        conn.add_event_listener(lambda ev: self._on_conn_event(conn, ev))
        try:
            for factory in self.filter_factories:
                factory.create_filter_chain(conn.filter_manager)
            if not self._accepting:
                conn.notify(ConnectionEvent.SHUTDOWN)
            # Closing the connection (peer gone, idle, drained) cancels everything
            # working for it: a request stuck upstream must not outlive its client.
            with trio.CancelScope() as scope:
                conn.cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    conn.nursery = nursery
                    await conn.serve()
        except Exception:
            log.exception("listener %s: connection %s failed", self.name, conn.id)
        finally:
            conn.close()
            self.connections.discard(conn)

    def _on_conn_event(self, conn: Connection, event: ConnectionEvent) -> None:
        if event.is_close:
            self.connections.discard(conn)
            if not self.connections:
                self._all_closed.set()

    async def _sweep_idle(self) -> None:
        assert self.idle_timeout is not None
        period = max(0.05, min(1.0, self.idle_timeout / 4))
        with self._sweeper:
            while True:
                await trio.sleep(period)
                deadline = trio.current_time() - self.idle_timeout
                for conn in list(self.connections):
                    if conn.last_active < deadline:
                        log.debug("listener %s: closing idle connection %s", self.name, conn.id)
                        conn.close(ConnectionEvent.IDLE_TIMEOUT)

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections are not touched."""
        self._accepting = False
        self._sweeper.cancel()  # draining closes idle connections itself
        if self._sock is not None:
            try:
                trio.lowlevel.notify_closing(self._sock)
            except RuntimeError:
                pass
            self._sock.close()
            if self._sock.family == socket.AF_UNIX:
                try:
                    os.unlink(self.requested_address.removeprefix("unix:"))
                except OSError:
                    pass

    async def drain(self, timeout: float) -> None:
        """Stop accepting, ask connections to finish, force-close after ``timeout``."""
        self.stop_accepting()
        for conn in list(self.connections):
            conn.notify(ConnectionEvent.SHUTDOWN)
        with trio.move_on_after(timeout if math.isfinite(timeout) else 1e9):
            while self.connections:
                self._all_closed = trio.Event()
                await self._all_closed.wait()
        for conn in list(self.connections):
            conn.close()


def _peer(sock: socket.socket) -> str:
    try:
        return format_address(sock.getpeername())
    except OSError:
        return ""
