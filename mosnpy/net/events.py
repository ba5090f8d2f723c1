"""Connection events, delivered to listeners registered on a connection."""

from __future__ import annotations

from enum import Enum

__all__ = ["ConnectionEvent"]


class ConnectionEvent(Enum):
    """Why a connection's state changed (MOSN's event strings, as an enum)."""

    CONNECTED = "Connected"
    CONNECT_TIMEOUT = "ConnectTimeout"
    CONNECT_FAILED = "ConnectFailed"
    REMOTE_CLOSE = "RemoteClose"
    LOCAL_CLOSE = "LocalClose"
    READ_ERROR_CLOSE = "OnReadErrClose"
    WRITE_ERROR_CLOSE = "OnWriteErrClose"
    IDLE_TIMEOUT = "IdleTimeout"
    SHUTDOWN = "OnShutdown"

    @property
    def is_close(self) -> bool:
        return self in _CLOSES


_CLOSES = frozenset(
    {
        ConnectionEvent.REMOTE_CLOSE,
        ConnectionEvent.LOCAL_CLOSE,
        ConnectionEvent.READ_ERROR_CLOSE,
        ConnectionEvent.WRITE_ERROR_CLOSE,
        ConnectionEvent.IDLE_TIMEOUT,
    }
)
