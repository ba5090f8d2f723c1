"""A stream's filter chain: receiver filters per phase, sender filters."""

from __future__ import annotations

from mosnpy.stream.filter import (
    FilterPhase,
    StreamFilterStatus,
    StreamReceiverFilter,
    StreamSenderFilter,
)
from mosnpy.stream.stream import Stream

__all__ = ["StreamFilterChain"]


class StreamFilterChain:
    """The filters of one stream, populated by the listener's filter factories."""

    __slots__ = ("receivers", "senders")

    def __init__(self) -> None:
        self.receivers: dict[FilterPhase, list[StreamReceiverFilter]] = {}
        self.senders: list[StreamSenderFilter] = []

    def add_receiver(self, f: StreamReceiverFilter, phase: FilterPhase = FilterPhase.BEFORE_ROUTE) -> None:
        self.receivers.setdefault(phase, []).append(f)

    def add_sender(self, f: StreamSenderFilter) -> None:
        self.senders.append(f)

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
