"""Dialing a host for a pool: one place for connect bookkeeping and its error."""

from __future__ import annotations

import logging
import ssl

from mosnpy.net.connection import Connection, connect, resolve
from mosnpy.net.stats import Traffic
from mosnpy.net.tls import TLSHandshakeError, connect_tls
from mosnpy.upstream.errors import ConnectFailedError
from mosnpy.upstream.host import Host

__all__ = ["Dialer"]

log = logging.getLogger("mosnpy.upstream")


class Dialer:
    """The connect half every pool shares.

    ``connecting`` counts dials in progress; it is raised before the ``await`` and
    lowered in ``finally``, so a dial cancelled at any point leaves it right (the
    leak httpcore#1093 describes).
    """

    def __init__(self, host: Host, connect_timeout: float) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self.connecting = 0
        #: where dialed connections count their bytes (the cluster sets its own)
        self.traffic = Traffic()
        #: TLS to the host (the cluster's tls_context), and the SNI name to send
        #: (None: the host's address)
        self.tls: ssl.SSLContext | None = None
        self.tls_server_name: str | None = None

    async def dial(self) -> Connection:
        """Connect to the host.

        Raises:
            ConnectFailedError: refused, unreachable or timed out (retryable, 502).
        """
        self.connecting += 1
        try:
            if self.tls is None:
                conn = await connect(self.host.address, timeout=self.connect_timeout)
            else:
                conn = await self._dial_tls(self.tls)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailedError(f"connect to {self.host.address} failed: {exc}") from exc
        finally:
            self.connecting -= 1
        conn.traffic = self.traffic
        return conn

    async def _dial_tls(self, context: ssl.SSLContext) -> Connection:
        name = self.tls_server_name
        if name is None:
            _, sockaddr = resolve(self.host.address)
            name = sockaddr[0] if isinstance(sockaddr, tuple) else None
        try:
            return await connect_tls(
                self.host.address, context, server_hostname=name, timeout=self.connect_timeout
            )
        except TLSHandshakeError as exc:
            # Never a silent plaintext fallback: the request fails, and says why.
            log.warning("upstream %s: %s", self.host.address, exc)
            raise
