"""The dubbo 2.x frame, declared once with ``construct`` as the readable specification.

The codec's hot path (:mod:`mosnpy_dubbo.codec`) reads and writes the same layout with
``struct`` and slicing; a Hypothesis test proves the two agree on every frame it
generates.  Everything is big-endian::

    0      2      3        4            12            16
    | magic | flag | status | request id | body length | body ...
      da bb   u8     u8       u64          u32

flag: 0x80 request, 0x40 two-way (expects a response), 0x20 event (heartbeat), low
five bits the serialization id (2 = hessian2).  status: 20 OK, 30 client timeout,
31 server timeout, 40 bad request, 50 bad response, 60 service not found, 70 service
error, 80 server error, 90 client error, 100 thread pool exhausted (0 in requests).
"""

from __future__ import annotations

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Const,
    Flag,
    Int8ub,
    Int32ub,
    Int64ub,
    Rebuild,
    Struct,
    len_,
    this,
)

__all__ = ["FLAG", "FRAME", "MAGIC"]

MAGIC = b"\xda\xbb"

FLAG = BitStruct(
    "request" / Flag,
    "two_way" / Flag,
    "event" / Flag,
    "serialization" / BitsInteger(5),
)

FRAME = Struct(
    "magic" / Const(MAGIC),
    "flag" / FLAG,
    "status" / Int8ub,
    "request_id" / Int64ub,
    "body_length" / Rebuild(Int32ub, len_(this.body)),
    "body" / Bytes(this.body_length),
)
