"""One deadline structure per downstream connection, instead of a cancel scope per request.

Theory of operation
-------------------
A parked stream that waits for its upstream needs a timeout, and a cancel scope per
request costs ~9% of an RPC's CPU (DESIGN §8).  A :class:`Timers` keeps the deadlines of
every stream of one connection in a heap and runs one task that sleeps until the
earliest.  Arming is a ``heappush``; disarming only marks the entry (most timers are
disarmed by their response long before they fire), and the heap is rebuilt without the
dead entries when they outnumber the live ones, so memory stays bounded under load.
Deadlines of one route are pushed in increasing order, so the task's sleep rarely needs
moving; when a new deadline is the earliest, the sleeping scope's deadline is lowered.

A timer's callback runs in the timer task, synchronously, followed by one flush of
whatever it queued (:func:`~mosnpy.stream.io.flush_touched`).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Final

import trio

from mosnpy.stream.io import flush_touched

__all__ = ["Timer", "Timers"]

log: Final = logging.getLogger("mosnpy.proxy")

_heappush: Final = heapq.heappush  # (a C static compiled, not a module lookup per arm)


class Timer:
    """One armed deadline; :meth:`cancel` disarms it."""

    __slots__ = ("callback", "deadline", "owner", "seq")

    def __init__(self, owner: Timers, deadline: float, seq: int, callback: Callable[[], None]) -> None:
        self.owner = owner
        self.deadline = deadline
        self.seq = seq
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self.owner._dead += 1


class Timers:
    """The deadlines of one connection's streams, run by one task in ``nursery``."""

    __slots__ = ("_dead", "_heap", "_running", "_scope", "_seq", "nursery")

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        #: (deadline, seq, timer): tuples, so the heap compares in C
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._dead = 0
        self._running = False
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap) - self._dead

    def arm(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` at ``deadline`` (trio time) unless cancelled first."""
        self._seq += 1
        timer = Timer(self, deadline, self._seq, callback)
        heap = self._heap
        _heappush(heap, (deadline, self._seq, timer))
        if not self._running:
            self._running = True
            self.nursery.start_soon(self._run)
        elif heap[0][2] is timer and self._scope is not None:
            self._scope.deadline = deadline
        if self._dead > 64 and self._dead > len(heap) // 2:
            self._compact()
        return timer

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].callback is not None]
        heapq.heapify(self._heap)
        self._dead = 0

    async def _run(self) -> None:
        heap = self._heap
        try:
            while True:
                heap = self._heap
                while heap and heap[0][2].callback is None:
                    heapq.heappop(heap)
                    self._dead -= 1
                if not heap:
                    return
                top = heap[0][2]
                if top.deadline > trio.current_time():
                    with trio.CancelScope(deadline=top.deadline) as self._scope:
                        await trio.sleep_forever()
                    self._scope = None
                    continue
                heapq.heappop(heap)
                callback = top.callback
                top.callback = None
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("timer callback failed")
                    flush_touched()
        finally:
            self._running = False
            self._scope = None
