"""Dialing a host for a pool: one place for connect bookkeeping and its error."""

from __future__ import annotations

from mosnpy.net.connection import Connection, connect
from mosnpy.upstream.errors import ConnectFailedError
from mosnpy.upstream.host import Host

__all__ = ["Dialer"]


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

    async def dial(self) -> Connection:
        """Connect to the host.

        Raises:
            ConnectFailedError: refused, unreachable or timed out (retryable, 502).
        """
        self.connecting += 1
        try:
            return await connect(self.host.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailedError(f"connect to {self.host.address} failed: {exc}") from exc
        finally:
            self.connecting -= 1
