"""Network filter and listener filter contracts.

A connection carries a chain of *read filters* (fed the bytes that arrived), *write
filters* (shown the bytes about to leave) and, on the listener, *listener filters* that
run on the raw accepted socket before any connection object exists.  These are MOSN's
``ReadFilter`` / ``WriteFilter`` / ``ListenerFilter``, made async where a filter may
need to wait (the ``proxy`` filter awaits its upstream inside ``on_data``).

Factories are what registries hold and configs name: a factory is built once per
listener from its ``config`` mapping and asked to populate each new connection's chain.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mosnpy.net.connection import Connection
    from mosnpy.net.filtermanager import FilterManager

__all__ = [
    "AcceptedSocket",
    "FilterStatus",
    "ListenerFilter",
    "ListenerFilterFactory",
    "NetworkFilterFactory",
    "ReadFilter",
    "WriteFilter",
]


class FilterStatus(Enum):
    """CONTINUE passes to the next filter; STOP ends this pass of the chain."""

    CONTINUE = "continue"
    STOP = "stop"


@runtime_checkable
class ReadFilter(Protocol):
    """Sees inbound bytes.  Consumes what it uses by deleting it from ``buffer``."""

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        """Called once, before any data, with the connection the filter belongs to."""
        ...

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        """Called with the connection's whole accumulated read buffer."""
        ...


@runtime_checkable
class WriteFilter(Protocol):
    """Sees outbound bytes; may edit ``data`` in place or return STOP to drop them."""

    def on_write(self, data: bytearray) -> FilterStatus: ...


class NetworkFilterFactory(Protocol):
    """Builds the network filters of one connection (MOSN's CreateFilterChain)."""

    def create_filter_chain(self, manager: FilterManager) -> None: ...


class AcceptedSocket:
    """What a listener filter sees of a fresh connection, before it is wrapped.

    ``socket`` is the raw accepted socket (None when a test builds one without), for
    filters that ask the kernel about it (``SO_ORIGINAL_DST``) or peek at its first
    bytes; a filter must not read from it or close it.  A filter may change
    ``local_address`` (the ``original_dst`` filter restores the address the client
    asked for): the connection gets the address as the filters left it.
    """

    __slots__ = ("local_address", "remote_address", "socket", "values")

    def __init__(self, local_address: str, remote_address: str, sock: socket.socket | None = None) -> None:
        self.local_address = local_address
        self.remote_address = remote_address
        self.socket = sock
        #: free-form facts a listener filter learned (e.g. an original destination)
        self.values: dict[str, Any] = {}


class ListenerFilter(Protocol):
    """Runs on accept; STOP refuses (closes) the connection."""

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus: ...


class ListenerFilterFactory(Protocol):
    def __call__(self, config: Mapping[str, Any]) -> ListenerFilter: ...
