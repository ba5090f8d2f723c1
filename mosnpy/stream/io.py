"""A stream connection bound to a net connection, and the one flush per batch.

Theory of operation
-------------------
Stream connections (:mod:`mosnpy.protocol.api`) never write: every command they take
appends to an outbox.  :class:`StreamIO` pairs one with the
:class:`~mosnpy.net.connection.Connection` its bytes travel on.  Whoever queues bytes on
a stream connection calls :meth:`StreamIO.touch`; whoever drives a batch of events (a
connection's reader task after one ``recv``, a timer, a parked stream's task) calls
:func:`flush_touched` once at the end, which empties every touched outbox into its
socket with :meth:`~mosnpy.net.connection.Connection.write_nowait`.  So all answers one
``recv`` produced leave in one ``send`` per connection, and a reader never blocks on a
slow peer: what a socket does not take at once waits in that connection's backlog,
which its own reader bounds (:meth:`StreamIO.over_backlog`).

A connection that carries one exchange at a time has no reader task armed while idle
(an epoll registration per exchange is the costliest part of a wait, DESIGN §8).  Once
its request is flushed it is *awaiting an answer*: whoever flushed either yields once
and reads it at once (:meth:`StreamIO.poll`: the answer is usually there by then) —
the downstream reader does this — or, by default, wakes the connection's own reader
(:meth:`StreamIO.wake`).

The touched list is per process, which is per trio run: batches never interleave,
because flushing is synchronous and every batch ends with it.
"""

from __future__ import annotations

import logging
from typing import Final, Generic, TypeVar

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.protocol.api import StreamConnection

__all__ = ["MAX_BACKLOG", "STREAM_BUFFER", "StreamIO", "flush_touched"]

log: Final = logging.getLogger("mosnpy.stream")

#: Bytes a connection may have queued for a slow peer before its feeders wait.
MAX_BACKLOG: Final = 1 << 20
#: Bytes one stream may hold waiting for its peer's flow-control window before the
#: proxy stops acknowledging what it forwards there (so that stream's sender waits).
STREAM_BUFFER: Final = 1 << 16

_touched: Final[list[StreamIO[StreamConnection]]] = []
_awaiting: Final[list[StreamIO[StreamConnection]]] = []

#: the side of the stream connection a :class:`StreamIO` drives
SC = TypeVar("SC", bound=StreamConnection, covariant=True)


class StreamIO(Generic[SC]):
    """One stream connection and the connection it speaks over."""

    __slots__ = ("conn", "sc", "touched")

    def __init__(self, conn: Connection, sc: SC) -> None:
        self.conn = conn
        self.sc = sc
        self.touched = False

    def touch(self) -> None:
        """Bytes were queued on :attr:`sc`: flush them at the end of this batch."""
        if not self.touched:
            self.touched = True
            _touched.append(self)

    def flush(self) -> None:
        """Hand the outbox to the socket now (never waits)."""
        self.touched = False
        data = self.sc.data_to_send()
        if data and not self.conn.closed:
            try:
                self.conn.write_nowait(data)
            except ConnectionClosedError as exc:
                log.debug("connection %s: write failed: %s", self.conn.id, exc)

    def over_backlog(self) -> bool:
        """The peer reads slower than we write: stop feeding it until it drains."""
        return self.conn.write_backlog > MAX_BACKLOG

    def await_answer(self) -> None:
        """A request is going out and nobody reads this connection yet: after the
        flush, :meth:`poll` or :meth:`wake` it."""
        _awaiting.append(self)

    def poll(self) -> None:
        """Read what has arrived, without waiting (and wake the reader for the rest)."""
        self.wake()

    def wake(self) -> None:
        """Let the connection's own reader wait for the answer."""


def flush_touched(
    *, awaiting: list[StreamIO[StreamConnection]] | None = None
) -> list[StreamIO[StreamConnection]]:
    """Flush every stream connection touched since the last call; return those whose
    peer is not keeping up (their feeders should :meth:`~Connection.drain` them).

    Connections now awaiting an answer are woken, or handed to the caller in
    ``awaiting`` to :meth:`~StreamIO.poll` after a yield.
    """
    slow: list[StreamIO[StreamConnection]] = []
    while _touched:
        io = _touched.pop()
        io.flush()
        if io.over_backlog():
            slow.append(io)
    if _awaiting:
        if awaiting is None:
            while _awaiting:
                _awaiting.pop().wake()
        else:
            awaiting.extend(_awaiting)
            _awaiting.clear()
    return slow
