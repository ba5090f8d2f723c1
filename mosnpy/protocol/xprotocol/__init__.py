"""The xprotocol engine's sans-I/O part: the codec contract plugins implement, the
``xprotocols`` registry, and the stream connections that turn any codec into streams."""

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
from mosnpy.protocol.xprotocol.stream import XClientStreamConnection, XHeaders, XServerStreamConnection

__all__ = [
    "XPROTOCOLS",
    "DecodeError",
    "HeartbeatCodec",
    "HijackCodec",
    "PoolMode",
    "StreamType",
    "XClientStreamConnection",
    "XCodec",
    "XFrame",
    "XHeaders",
    "XProtocolDescriptor",
    "XServerStreamConnection",
    "descriptor",
]
