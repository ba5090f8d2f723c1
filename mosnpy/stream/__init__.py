"""Stream layer: the Stream, the header map, stream filters and their chains."""

from mosnpy.protocol.headers import HeaderMap
from mosnpy.stream.chain import StreamFilterChain
from mosnpy.stream.filter import (
    FilterPhase,
    StreamFilterFactory,
    StreamFilterStatus,
    StreamReceiverFilter,
    StreamSenderFilter,
)
from mosnpy.stream.registry import STREAM_FILTERS
from mosnpy.stream.stream import LocalReply, ResetReason, Stream

__all__ = [
    "STREAM_FILTERS",
    "FilterPhase",
    "HeaderMap",
    "LocalReply",
    "ResetReason",
    "Stream",
    "StreamFilterChain",
    "StreamFilterFactory",
    "StreamFilterStatus",
    "StreamReceiverFilter",
    "StreamSenderFilter",
]
