"""NET/IO layer: listeners, connections, network and listener filters.

This layer moves bytes and knows nothing of protocols.  Connections wrap non-blocking
stdlib sockets with trio's low-level waits (see ``connection.py`` for why).
"""

from mosnpy.net.connection import Connection, ConnectionClosedError, connect, resolve
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import (
    AcceptedSocket,
    FilterStatus,
    ListenerFilter,
    NetworkFilterFactory,
    ReadFilter,
    WriteFilter,
)
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.listener import Listener
from mosnpy.net.registry import LISTENER_FILTERS, NETWORK_FILTERS

__all__ = [
    "LISTENER_FILTERS",
    "NETWORK_FILTERS",
    "AcceptedSocket",
    "Connection",
    "ConnectionClosedError",
    "ConnectionEvent",
    "FilterManager",
    "FilterStatus",
    "Listener",
    "ListenerFilter",
    "NetworkFilterFactory",
    "ReadFilter",
    "WriteFilter",
    "connect",
    "resolve",
]
