"""The ping-pong connection pool (HTTP/1): one request at a time per connection.

Bookkeeping is synchronous and done before any ``await`` (the lesson of httpcore's
leaked "connecting" slots): :meth:`PingPongPool.acquire` counts a connect attempt
*before* dialing and un-counts it in ``finally``, so a request cancelled at any await
leaves the counts right.  Idle connections sit on a stack (most recently used first,
so a warm connection is reused and cold ones age out); before reuse one that sat idle
for a while gets a non-blocking ``MSG_PEEK``, so a connection the server closed while
idle is dropped instead of failing the request.
"""

from __future__ import annotations

import logging

import trio

from mosnpy.net.connection import Connection
from mosnpy.upstream.dial import Dialer
from mosnpy.upstream.errors import OverflowError_
from mosnpy.upstream.host import Host

__all__ = ["PEEK_AFTER_IDLE", "PingPongPool"]

#: Only a connection idle longer than this gets the ``MSG_PEEK`` liveness probe (one
#: syscall).  A fresher one that turns out dead is caught anyway: the proxy resends a
#: request that got no byte back from a reused connection on a fresh one.
PEEK_AFTER_IDLE = 1.0

log = logging.getLogger("mosnpy.upstream")


class PingPongPool(Dialer):
    """Keep-alive connections to one host, lent out one request at a time.

    Args:
        host: the upstream host.
        max_connections: cap on open connections (lent + connecting); 0 = unlimited.
        connect_timeout: seconds allowed for a connect.
        idle_timeout: close idle connections older than this (0 = keep).
    """

    def __init__(
        self,
        host: Host,
        *,
        max_connections: int = 0,
        connect_timeout: float = 10.0,
        idle_timeout: float = 0.0,
    ) -> None:
        super().__init__(host, connect_timeout)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.idle: list[Connection] = []
        self.lent = 0
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"<PingPongPool {self.host.address} lent={self.lent} idle={len(self.idle)} "
            f"connecting={self.connecting}>"
        )

    async def acquire(self, *, probe: bool = False) -> tuple[Connection, bool]:
        """Lend a connection: ``(connection, reused)``.

        ``probe`` checks even a recently used idle connection for a close by the
        server (for requests that must not be resent blindly if it turns out dead).

        Raises:
            OverflowError_: ``max_connections`` are already lent or connecting.
            ConnectFailedError: the connect failed or timed out.
        """
        # The one checkpoint comes first: from here to a reused connection being handed
        # out nothing awaits, so a cancelled acquire cannot leak a lent slot.
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        while self.idle:
            conn = self.idle.pop()
            if self.idle_timeout and now - conn.last_active > self.idle_timeout:
                conn.close()
                continue
            if (probe or now - conn.last_active > PEEK_AFTER_IDLE) and conn.peer_closed_while_idle():
                conn.close()
                continue
            self.lent += 1
            return conn, True
        if self.max_connections and self.lent + self.connecting >= self.max_connections:
            raise OverflowError_(f"{self.host.address}: max_connections {self.max_connections} reached")
        conn = await self.dial()
        self.lent += 1
        return conn, False

    def release(self, conn: Connection, *, reusable: bool) -> None:
        """Take back a lent connection; keep it for reuse only if ``reusable``."""
        self.lent -= 1
        if reusable and not conn.closed and not self.closed:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close idle connections now; lent ones close when released."""
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.idle.clear()
