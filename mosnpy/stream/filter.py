"""Stream filter contracts: receiver filters by phase, sender filters, factories.

Receiver filters see the request at one of three phases (before route, after route,
after choose host); sender filters see the response before it is sent downstream.
Statuses follow MOSN: STOP ends only this phase's chain (it does not pause the request;
pair it with :meth:`~mosnpy.stream.stream.Stream.send_local_reply` to answer locally),
TERMINATE drops the stream with no response, and the two jumps re-run route matching
(after-route only) or host choice (after-choose-host only).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mosnpy.stream.chain import StreamFilterChain
    from mosnpy.stream.stream import Stream

__all__ = [
    "FilterPhase",
    "StreamFilterFactory",
    "StreamFilterStatus",
    "StreamReceiverFilter",
    "StreamSenderFilter",
]


class FilterPhase(Enum):
    """Where a receiver filter runs in the downstream phase machine."""

    BEFORE_ROUTE = "DownFilter"
    AFTER_ROUTE = "DownFilterAfterRoute"
    AFTER_CHOOSE_HOST = "DownFilterAfterChooseHost"


class StreamFilterStatus(Enum):
    CONTINUE = "continue"
    STOP = "stop"
    TERMINATE = "terminate"
    REMATCH_ROUTE = "rematch_route"
    RECHOOSE_HOST = "rechoose_host"


@runtime_checkable
class StreamReceiverFilter(Protocol):
    """Sees (and may edit or answer) a request."""

    async def on_receive(self, stream: Stream) -> StreamFilterStatus: ...


@runtime_checkable
class StreamSenderFilter(Protocol):
    """Sees (and may edit) a response before it goes downstream."""

    async def append(self, stream: Stream) -> StreamFilterStatus: ...


class StreamFilterFactory(Protocol):
    """Built once per listener from its config; adds filters to each stream's chain."""

    def create_filter_chain(self, chain: StreamFilterChain) -> None: ...
