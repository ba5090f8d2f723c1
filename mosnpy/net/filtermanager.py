"""The per-connection chain of read and write filters (MOSN's FilterManager).

Read filters run in order on every read with the connection's accumulated buffer;
a filter that returns STOP ends the pass (the bytes it left stay buffered for the next
one).  Filters never read the socket themselves: the connection's reader feeds every
pass, so nothing before the proxy in the chain is bypassed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from mosnpy.net.filter import FilterStatus, ReadFilter, WriteFilter

if TYPE_CHECKING:
    from mosnpy.net.connection import Connection

__all__ = ["FilterManager"]

log: Final = logging.getLogger("mosnpy.net")

#: (a C static compiled: a member of an Enum from a plain module is otherwise looked
#: up through the Enum metaclass on every use, which is slow)
_STOP: Final = FilterStatus.STOP


class FilterManager:
    """Holds one connection's read and write filters and runs them."""

    __slots__ = ("connection", "read_filters", "write_filters")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.read_filters: list[ReadFilter] = []
        self.write_filters: list[WriteFilter] = []

    def add_read_filter(self, f: ReadFilter) -> None:
        self.read_filters.append(f)

    def add_write_filter(self, f: WriteFilter) -> None:
        self.write_filters.append(f)

    def start(self) -> bool:
        """Give every read filter ``on_new_connection``; False if the chain is empty."""
        if not self.read_filters:
            return False
        for f in self.read_filters:
            if f.on_new_connection(self.connection) is _STOP:
                break
        return True

    async def on_read(self) -> None:
        """Run the read filters over the connection's read buffer."""
        buf = self.connection.read_buffer
        for f in self.read_filters:
            if not buf:
                return
            if await f.on_data(buf) is _STOP:
                return

    async def on_eof(self) -> bool:
        """The peer half-closed: True if a read filter carries that on (one with an
        ``on_eof`` coroutine, e.g. a TCP proxy passing the FIN upstream), in which case
        it has finished with the connection; False: the connection simply closes."""
        for f in self.read_filters:
            handler = getattr(f, "on_eof", None)
            if handler is not None and await handler():
                return True
        return False

    def on_write(self, data: bytearray) -> bool:
        """Run the write filters; False if one of them dropped the bytes."""
        return all(f.on_write(data) is not _STOP for f in self.write_filters)
