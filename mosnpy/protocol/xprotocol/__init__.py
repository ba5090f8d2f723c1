"""The xprotocol engine's sans-I/O part: the codec contract plugins implement, the
``xprotocols`` registry, and the per-connection sessions the proxy drives."""

from mosnpy.protocol.xprotocol.codec import (
    DecodeError,
    HeartbeatCodec,
    HijackCodec,
    PoolMode,
    StreamType,
    XCodec,
    XFrame,
)
from mosnpy.protocol.xprotocol.registry import XPROTOCOLS, XProtocolDescriptor, descriptor
from mosnpy.protocol.xprotocol.session import ClientSession, Received, ServerSession

__all__ = [
    "XPROTOCOLS",
    "ClientSession",
    "DecodeError",
    "HeartbeatCodec",
    "HijackCodec",
    "PoolMode",
    "Received",
    "ServerSession",
    "StreamType",
    "XCodec",
    "XFrame",
    "XProtocolDescriptor",
    "descriptor",
]
