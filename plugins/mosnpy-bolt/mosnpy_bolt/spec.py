"""SOFA Bolt v1 and v2 frames, declared once with ``construct`` as the readable spec.

The codec's hot path (:mod:`mosnpy_bolt.codec`) reads and writes the same layouts with
``struct`` and slicing; a Hypothesis test proves the two agree on every frame it
generates.  Everything is big-endian.  Bolt v1 (proto 1)::

    proto u8 | type u8 | cmd code u16 | ver2 u8 | request id u32 | codec u8
    | timeout i32 (requests) or status u16 (responses)
    | class length u16 | header length u16 | content length u32
    | class name | header map | content

so a request header is 22 bytes and a response header 20.  Bolt v2 (proto 2) inserts
``ver1`` after proto and a ``switch`` byte after codec (24 and 22 bytes); with
``ver1 > 1`` and switch bit 0 set a CRC32 trailer follows, which mosnpy rejects.

type: 0 response, 1 request, 2 oneway.  cmd code: 0 heartbeat, 1 request, 2 response.
codec: 1 hessian2, 11 protobuf.  The header map is ``[u32 length][key][u32 length][value]``
repeated (UTF-8; a length of 0xFFFFFFFF, not modelled here, is a null that the codec
skips).  Response status: 0 ok, 1 error, 2 server exception, 3 unknown, 4 server thread
pool busy, 5 error comm, 6 no processor, 7 timeout, 8 client send error, 9 codec
exception, 0x10 connection closed, 0x11 server serial exception, 0x12 server
deserial exception.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Bytes,
    Const,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Int32sb,
    Int32ub,
    PascalString,
    Rebuild,
    Struct,
    len_,
    this,
)

__all__ = ["FRAME_V1", "FRAME_V2", "HEADER_MAP"]

HEADER_MAP = GreedyRange(
    Struct(
        "key" / PascalString(Int32ub, "utf8"),
        "value" / PascalString(Int32ub, "utf8"),
    )
)


def _frame(proto: int, *, v2: bool) -> Any:
    """The frame of bolt ``proto``; v2 adds ``ver1`` and ``switch``."""
    return Struct(
        "proto" / Const(proto, Int8ub),
        *(["ver1" / Int8ub] if v2 else []),
        "type" / Int8ub,
        "cmd_code" / Int16ub,
        "ver2" / Int8ub,
        "request_id" / Int32ub,
        "codec" / Int8ub,
        *(["switch" / Int8ub] if v2 else []),
        "timeout" / If(this.type != 0, Int32sb),
        "status" / If(this.type == 0, Int16ub),
        "class_length" / Rebuild(Int16ub, len_(this.class_name)),
        "header_length" / Rebuild(Int16ub, len_(this.header)),
        "content_length" / Rebuild(Int32ub, len_(this.content)),
        "class_name" / Bytes(this.class_length),
        "header" / Bytes(this.header_length),  # a HEADER_MAP
        "content" / Bytes(this.content_length),
    )


FRAME_V1 = _frame(1, v2=False)
FRAME_V2 = _frame(2, v2=True)
