"""A stream's filter chain: receiver filters per phase, sender filters.

Filters are coroutines, but most never wait (they read and edit headers).  A filter
says so with a ``may_wait = False`` attribute; a chain whose filters all say so has
``may_wait`` false, and the proxy runs it inline with :func:`run_now` — no task, no
scheduling — while a chain that may wait (a ``fault`` delay, or any filter that does
not say) runs where waiting is allowed, parking only its own stream.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from mosnpy.stream.filter import (
    FilterPhase,
    StreamFilterStatus,
    StreamReceiverFilter,
    StreamSenderFilter,
)
from mosnpy.stream.stream import Stream

__all__ = ["StreamFilterChain", "run_now"]

T = TypeVar("T")


class StreamFilterChain:
    """The filters of one stream, populated by the listener's filter factories."""

    __slots__ = ("may_wait", "receivers", "senders")

    def __init__(self) -> None:
        self.receivers: dict[FilterPhase, list[StreamReceiverFilter]] = {}
        self.senders: list[StreamSenderFilter] = []
        #: some filter may wait (sleep, do I/O): run the chain where waiting is allowed
        self.may_wait = False

    def add_receiver(self, f: StreamReceiverFilter, phase: FilterPhase = FilterPhase.BEFORE_ROUTE) -> None:
        self.receivers.setdefault(phase, []).append(f)
        self.may_wait = self.may_wait or bool(getattr(f, "may_wait", True))

    def add_sender(self, f: StreamSenderFilter) -> None:
        self.senders.append(f)
        self.may_wait = self.may_wait or bool(getattr(f, "may_wait", True))

    async def run_receivers(self, phase: FilterPhase, stream: Stream) -> StreamFilterStatus:
        """Run one phase's receivers; the first non-CONTINUE status ends the phase."""
        for f in self.receivers.get(phase, ()):
            status = await f.on_receive(stream)
            if status is not StreamFilterStatus.CONTINUE:
                return status
        return StreamFilterStatus.CONTINUE

    async def run_senders(self, stream: Stream) -> StreamFilterStatus:
        for f in self.senders:
            status = await f.append(stream)
            if status is not StreamFilterStatus.CONTINUE:
                return status
        return StreamFilterStatus.CONTINUE


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits to its end, synchronously, and return its value.

    Raises:
        RuntimeError: it tried to wait (a filter that declared ``may_wait = False`` but
            awaited the scheduler): a bug in that filter.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError(f"{coro!r} waited although its filters declared may_wait = False")
