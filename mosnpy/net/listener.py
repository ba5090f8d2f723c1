"""Listeners: bind, accept, run listener filters, build each connection's filters.

A :class:`Listener` owns a nursery for its connections; :meth:`Listener.serve` runs
until cancelled or until :meth:`Listener.drain` finishes.  Per connection it:

1. refuses it at once if ``max_connections`` connections are already open (an
   explicit close beats a silent backlog that makes clients hang);
2. runs the listener filters on the raw accepted socket;
3. wraps the socket in a :class:`~mosnpy.net.connection.Connection`, asks each network
   filter factory to populate its chain, and runs its reader task.

An idle sweeper closes connections that moved no bytes for ``idle_timeout`` seconds.

Several filter chains (Envoy's ``filter_chain_match``, given as ``filter_chains``):
between steps 2 and 3 the listener picks one chain for the connection
(:mod:`mosnpy.net.filterchain`) from its addresses and, when some chain matches on
them, the TLS ClientHello's SNI and ALPN peeked without consuming it
(:mod:`mosnpy.net.tls_inspector`); that chain's TLS context then runs the handshake and
its network filters populate the connection.  A connection no chain matches is closed
(counted in :attr:`Listener.no_filter_chain_match`).  Without ``filter_chains`` every
connection gets ``filter_factories`` and ``tls``, with no peeking.

Transparent interception (MOSN's ``use_original_dst`` and virtual listeners): a
listener with ``use_original_dst`` hands each connection whose listener filters found
an original destination (the ``original_dst`` filter) to the listener that owns that
address, found through :attr:`Listener.find_listener` (the server's lookup: that exact
address, else ``0.0.0.0`` / ``[::]`` on its port); with none it serves the connection
itself.  The listener handed to runs its own listener filters and serves the
connection in its own nursery, counted as its own.  A listener with ``bind_port``
false opens no socket and serves only connections handed to it.
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
import ssl
import stat
from collections.abc import Callable, Sequence
from typing import Final

import trio

from mosnpy.net.connection import Connection, format_address, resolve
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import AcceptedSocket, FilterStatus, ListenerFilter, NetworkFilterFactory
from mosnpy.net.filterchain import ConnectionInfo, FilterChain, FilterChains, parse_address
from mosnpy.net.original_dst import ORIGINAL_DST, current_original_dst
from mosnpy.net.stats import Traffic
from mosnpy.net.tls import TLSConnection, TLSHandshakeError
from mosnpy.net.tls_inspector import TLS, inspect

__all__ = ["ACCEPT_BURST", "Listener"]

#: connections accepted back to back before the accept loop lets others run
ACCEPT_BURST: Final = 64

log: Final = logging.getLogger("mosnpy.net")

_ACCEPT_RETRY_ERRNOS: Final = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class Listener:
    """Accepts connections on one address and serves them with a filter chain.

    Args:
        name: the listener's name, for logs.
        address: ``host:port`` (port 0 picks one; see :attr:`address` once started) or
            a unix socket path.
        filter_factories: network filter factories, in chain order (with
            ``filter_chains``: every chain's, for stats and reloads).
        listener_filters: run on each accepted socket before it becomes a connection.
        max_connections: refuse connections beyond this many (0 = unlimited).
        idle_timeout: close connections idle this long (None or 0 = never).
        bind_port: False: open no socket, serve only connections other listeners
            hand over (a MOSN virtual listener).
        use_original_dst: hand connections to the listener that owns their original
            destination (see the module doc).
        filter_chains: several chains, one chosen per connection (see the module
            doc); ``tls`` and ``tls_fallback`` are then the chains' own.
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
        tls: ssl.SSLContext | None = None,
        tls_fallback: bool = False,
        handshake_timeout: float = 10.0,
        bind_port: bool = True,
        use_original_dst: bool = False,
        filter_chains: FilterChains | None = None,
    ) -> None:
        self.name = name
        self.bind_port = bind_port
        self.use_original_dst = use_original_dst
        #: ``address -> the listener that owns it, or None`` (set by the server), for
        #: ``use_original_dst``
        self.find_listener: Callable[[str], Listener | None] | None = None
        #: set when this listener stops accepting (what one without a socket waits for)
        self._stopped = trio.Event()
        #: TLS terminated here (None: plaintext); with ``tls_fallback`` a connection
        #: whose first byte is not a TLS handshake record is served as plaintext
        self.tls = tls
        self.tls_fallback = tls_fallback
        self.handshake_timeout = handshake_timeout
        #: handshakes that failed (bad certificate, no client certificate, timeout)
        self.tls_failures = 0
        #: one chain chosen per connection (None: ``filter_factories`` and ``tls``)
        self.filter_chains = filter_chains
        #: connections closed because no filter chain matched them
        self.no_filter_chain_match = 0
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
        #: bytes read from and written to this listener's connections
        self.traffic = Traffic()
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
        if self._sock is not None or not self.bind_port:
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
        async with trio.open_nursery() as nursery:
            self._conn_nursery = nursery
            self._accepting = True
            if self.idle_timeout:
                nursery.start_soon(self._sweep_idle)
            if self._sock is None:
                log.info("listener %s serving %s (handed-over connections only)", self.name, self.address)
                task_status.started(self)
                await self._stopped.wait()
                return
            log.info("listener %s serving on %s", self.name, self.address)
            task_status.started(self)
            await self._accept_loop(self._sock)
            # The accept loop ends when draining closed the socket; connections finish
            # in the nursery, and the idle sweeper exits when the last one is gone.

    async def _accept_loop(self, lsock: socket.socket) -> None:
        """Accept until the backlog is empty (up to :data:`ACCEPT_BURST` per scheduler
        turn), then wait.  One accept per turn would starve new clients under load: a
        busy turn serves every connection's batch, so the backlog drained one client
        per turn (tenths of a second each at saturation; h2load saw first requests
        wait seconds)."""
        burst = 0
        while self._accepting:
            try:
                sock, _ = lsock.accept()
            except BlockingIOError:
                burst = 0
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
            burst += 1
            if burst >= ACCEPT_BURST:
                burst = 0
                await trio.lowlevel.checkpoint()

    async def _handle(self, sock: socket.socket, accepted: AcceptedSocket | None = None) -> None:
        try:
            await self._serve_socket(sock, accepted)
        finally:
            self.admitted -= 1

    def adopt(self, sock: socket.socket, accepted: AcceptedSocket) -> bool:
        """Serve ``sock``, accepted by another listener (``use_original_dst``), as one
        of this listener's connections; False (the caller keeps it) when this listener
        is not accepting."""
        if not self._accepting or self._conn_nursery is None:
            return False
        if self.max_connections and self.admitted >= self.max_connections:
            self.refused += 1
            log.warning("listener %s: connection limit %d reached, refusing", self.name, self.max_connections)
            sock.close()
            return True
        self.admitted += 1
        self.connections_total += 1
        self._conn_nursery.start_soon(self._handle, sock, accepted)
        return True

    def _hand_off(self, sock: socket.socket, accepted: AcceptedSocket) -> bool:
        """Give ``sock`` to the listener that owns its original destination (True), or
        keep it here (False: none, or that is this listener)."""
        dst = accepted.values.get(ORIGINAL_DST)
        if not isinstance(dst, str) or self.find_listener is None:
            return False
        target = self.find_listener(dst)
        if target is None or target is self or not target.adopt(sock, accepted):
            return False
        log.debug(
            "listener %s: %s -> %s handed to listener %s",
            self.name,
            accepted.remote_address,
            dst,
            target.name,
        )
        return True

    async def _serve_socket(self, sock: socket.socket, accepted: AcceptedSocket | None = None) -> None:
        handed_over = accepted is not None
        if self.listener_filters or self.use_original_dst:
            if accepted is None:
                accepted = AcceptedSocket(format_address(sock.getsockname()), _peer(sock), sock)
            for lf in self.listener_filters:
                try:
                    status = await lf.on_accept(accepted)
                except Exception:
                    log.exception("listener %s: listener filter failed", self.name)
                    status = FilterStatus.STOP
                if status is FilterStatus.STOP:
                    sock.close()
                    return
            if self.use_original_dst and not handed_over and self._hand_off(sock, accepted):
                return
        factories: Sequence[NetworkFilterFactory] = self.filter_factories
        chains = self.filter_chains
        if chains is None:
            conn = await self._wrap(sock, self.tls, self.tls_fallback)
        else:
            chosen = await self._choose_chain(sock, accepted, chains)
            if chosen is None:
                return
            chain, transport = chosen
            conn = await self._wrap(sock, chain.tls, chain.tls_fallback, transport)
            factories = chain.factories
        if conn is None:
            return
        conn.traffic = self.traffic
        if accepted is not None:
            conn.values.update(accepted.values)
            conn.local_address = accepted.local_address
            dst = accepted.values.get(ORIGINAL_DST)
            if isinstance(dst, str):
                current_original_dst.set(dst)  # for this connection's tasks (ORIGINAL_DST)
        self.connections.add(conn)
        conn.add_event_listener(lambda ev: self._on_conn_event(conn, ev))
        try:
            for factory in factories:
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

    async def _choose_chain(
        self, sock: socket.socket, accepted: AcceptedSocket | None, chains: FilterChains
    ) -> tuple[FilterChain, str] | None:
        """The chain for ``sock`` and its transport protocol as peeked (``""``: not
        looked at), or None: no chain matches, or the peer left (the socket is closed)."""
        info = ConnectionInfo()
        if chains.needs_destination:
            if accepted is not None:
                dst = accepted.values.get(ORIGINAL_DST)
                local = dst if isinstance(dst, str) else accepted.local_address
            else:
                local = _local(sock)
            info.destination_ip, info.destination_port = parse_address(local)
        if chains.needs_source:
            info.source_ip, info.source_port = parse_address(
                accepted.remote_address if accepted is not None else _peer(sock)
            )
        if chains.needs_transport:
            seen = await inspect(sock, self.handshake_timeout, client_hello=chains.needs_client_hello)
            if seen is None:
                log.debug("listener %s: connection from %s closed while inspected", self.name, _peer(sock))
                sock.close()
                return None
            info.transport_protocol = seen.transport_protocol
            info.server_name = seen.hello.server_name
            info.application_protocols = seen.hello.alpn
        chain = chains.select(info)
        if chain is None:
            self.no_filter_chain_match += 1
            log.debug("listener %s: no filter chain matches %s; closing it", self.name, info)
            sock.close()
            return None
        return chain, info.transport_protocol

    async def _wrap(
        self, sock: socket.socket, tls: ssl.SSLContext | None, tls_fallback: bool, transport: str = ""
    ) -> Connection | None:
        """The accepted socket as a connection: plaintext, or TLS once its handshake is
        done (None: it failed, and the socket is closed).  ``transport`` is what was
        peeked already (``"tls"`` / ``"raw_buffer"``; ``""``: nothing)."""
        if tls is None or (tls_fallback and not await self._is_tls(sock, transport)):
            return Connection(sock, server_side=True)
        conn = TLSConnection(sock, tls, server_side=True)
        try:
            await conn.handshake(self.handshake_timeout)
        except TLSHandshakeError as exc:
            self.tls_failures += 1
            log.info("listener %s: connection from %s: %s", self.name, conn.remote_address, exc)
            return None
        conn.values["tls.alpn"] = conn.alpn_protocol
        return conn

    async def _is_tls(self, sock: socket.socket, transport: str) -> bool:
        return transport == TLS if transport else await self._starts_with_tls(sock)

    async def _starts_with_tls(self, sock: socket.socket) -> bool:
        """Peek the first byte: 0x16 opens a TLS handshake record (MOSN's fall_back)."""
        sock.setblocking(False)
        with trio.move_on_after(self.handshake_timeout):
            while True:
                try:
                    first = sock.recv(1, socket.MSG_PEEK)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError:
                    return False
                return first == b"\x16"
        return False

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
        self._stopped.set()
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


def _local(sock: socket.socket) -> str:
    try:
        return format_address(sock.getsockname())
    except OSError:
        return ""


def _peer(sock: socket.socket) -> str:
    try:
        return format_address(sock.getpeername())
    except OSError:
        return ""
