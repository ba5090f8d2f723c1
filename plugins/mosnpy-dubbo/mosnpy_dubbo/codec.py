"""The dubbo 2.x codec: framing, request ids, heartbeats and error replies.

The layout is :mod:`mosnpy_dubbo.spec`; this module is its fast path (``struct`` and
slicing).  A frame keeps its wire bytes: re-encoding returns them, and changing the
request id patches only the eight id bytes, so bodies pass through untouched whatever
their serialization.  The header view (service, method, version, group) is read from a
hessian2 request body only when first asked for, and only as far as asked
(:class:`~mosnpy_dubbo.request.RequestView`).

Mappings (MOSN's):

===================================  =====================================
framework status → dubbo status      dubbo status → framework (HTTP) code
===================================  =====================================
200 → 20 (OK)                        20 (OK) → 200
403 → 80 (server error)              30, 31 (client/server timeout) → 504
404, 502 → 60 (service not found)    100 (thread pool exhausted) → 503
503, 509 → 40 (bad request)          anything else → 500
504 → 30 (client timeout)
0, 2, 3, 500, anything else → 70
===================================  =====================================

Heartbeats follow the real frames (``dubbo-node-heartbeat-*``): the probe is flag
``0xe2`` with body ``N`` (hessian null), the answer flag ``0x22``, status 20, body ``N``.
Replies are always hessian2 (serialization id 2), as MOSN's are.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final

from mosnpy.native import mypyc_attr
from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, PoolMode, StreamType, XFrame
from mosnpy_dubbo.hessian import encode_string
from mosnpy_dubbo.request import RequestView

if TYPE_CHECKING:
    from mosnpy.protocol.xprotocol import HeartbeatCodec, HijackCodec, XCodec

__all__ = ["DubboCodec", "DubboFrame"]

MAGIC: Final = b"\xda\xbb"
HEADER: Final = struct.Struct(">2sBBQI")  # magic, flag, status, request id, body length
_HEADER_SIZE: Final = HEADER.size  # (a C static compiled; ``HEADER.size`` is a lookup)
_ID: Final = struct.Struct(">Q")
_ID_OFFSET: Final = 4
FLAG_REQUEST: Final = 0x80
FLAG_TWO_WAY: Final = 0x40
FLAG_EVENT: Final = 0x20
SERIALIZATION_MASK: Final = 0x1F
HESSIAN2: Final = 2
STATUS_OK: Final = 20
_NULL: Final = b"N"  # a hessian2 null: the body of heartbeats

_TO_DUBBO: Final = {200: 20, 403: 80, 404: 60, 502: 60, 503: 40, 509: 40, 504: 30}
_DEFAULT_DUBBO: Final = 70
_FROM_DUBBO: Final = {20: 200, 30: 504, 31: 504, 100: 503}
_DEFAULT_CODE: Final = 500

# (Final aliases: compiled, a member read through the enum class is a generic lookup.)
_REQUEST: Final = StreamType.REQUEST
_ONEWAY: Final = StreamType.ONEWAY
_RESPONSE: Final = StreamType.RESPONSE


class DubboFrame:
    """One dubbo frame: its wire bytes plus the header fields the framework reads.

    A plain class, not a dataclass: compiled, a dataclass keeps the ``__init__`` that
    :mod:`dataclasses` writes in Python, and a frame is built per call.
    """

    __slots__ = ("_view", "flag", "is_heartbeat", "raw", "request_id", "status", "stream_type", "timeout_ms")

    def __init__(
        self,
        raw: bytearray,
        flag: int,
        status: int,
        request_id: int,
        stream_type: StreamType,
        is_heartbeat: bool,
    ) -> None:
        self.raw = raw  # the whole frame (header and body) as on the wire
        self.flag = flag
        self.status = status
        self.request_id = request_id
        self.stream_type = stream_type
        self.is_heartbeat = is_heartbeat
        self.timeout_ms = 0  # dubbo has no timeout in its header: the route's applies
        self._view: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return (
            f"DubboFrame(flag={self.flag:#04x}, status={self.status}, request_id={self.request_id},"
            f" stream_type={self.stream_type}, is_heartbeat={self.is_heartbeat})"
        )

    @classmethod
    def build(cls, flag: int, status: int, request_id: int, body: bytes) -> DubboFrame:
        """A new frame (for heartbeats and error replies)."""
        raw = bytearray(HEADER.pack(MAGIC, flag, status, request_id, len(body)) + body)
        return _frame(raw, flag, status, request_id)

    @property
    def serialization(self) -> int:
        return self.flag & SERIALIZATION_MASK

    @property
    def body(self) -> bytes:
        return bytes(self.raw[_HEADER_SIZE:])

    def header_view(self) -> Mapping[str, str]:
        """``dubbo``, ``service``, ``version``, ``method`` (and attachments) of a
        hessian2 request; empty for responses, heartbeats and other serializations."""
        if self._view is None:
            readable = self.stream_type is not _RESPONSE and not self.is_heartbeat
            readable = readable and self.serialization == HESSIAN2
            self._view = RequestView(self.raw, _HEADER_SIZE) if readable else {}
        return self._view


def _frame(raw: bytearray, flag: int, status: int, request_id: int) -> DubboFrame:
    kind = (_REQUEST if flag & FLAG_TWO_WAY else _ONEWAY) if flag & FLAG_REQUEST else _RESPONSE
    return DubboFrame(raw, flag, status, request_id, kind, bool(flag & FLAG_EVENT))


def _not_dubbo(buf: bytearray) -> DecodeError:
    return DecodeError(f"not a dubbo frame: starts {bytes(buf[:2]).hex()}")


def _not_ours(frame: XFrame) -> TypeError:
    return TypeError(f"not a dubbo frame: {frame!r}")


def _own(frame: XFrame) -> DubboFrame:
    if not isinstance(frame, DubboFrame):
        raise _not_ours(frame)
    return frame


@mypyc_attr(allow_interpreted_subclasses=True)  # (a subclass may change max_body)
class DubboCodec:
    """Dubbo 2.x over TCP (an :class:`~mosnpy.protocol.xprotocol.XCodec` with heartbeats
    and error replies)."""

    name: ClassVar[str] = "dubbo"
    id_bits: ClassVar[int] = 64
    pool_mode: ClassVar[PoolMode] = PoolMode.MULTIPLEX
    #: a larger body length is garbage (dubbo's own default limit is 8 MiB)
    max_body: ClassVar[int] = 16 << 20

    def decode(self, buf: bytearray) -> DubboFrame | None:
        size = len(buf)
        if size < _HEADER_SIZE:
            if buf[:2] != MAGIC[:size]:
                raise _not_dubbo(buf)
            return None
        magic, flag, status, request_id, length = HEADER.unpack_from(buf)
        if magic != MAGIC:
            raise _not_dubbo(buf)
        if length > self.max_body:
            raise DecodeError(f"dubbo body of {length} bytes exceeds {self.max_body}")
        end = _HEADER_SIZE + length
        if size < end:
            return None
        raw = buf[:end]
        del buf[:end]
        return _frame(raw, flag, status, request_id)

    # The per-call methods check the frame's type inline (a call less each, per frame).

    def encode(self, frame: XFrame) -> bytes:
        if type(frame) is not DubboFrame:
            raise _not_ours(frame)
        return bytes(frame.raw)

    def get_request_id(self, frame: XFrame) -> int:
        if type(frame) is not DubboFrame:
            raise _not_ours(frame)
        return frame.request_id

    def set_request_id(self, frame: XFrame, request_id: int) -> None:
        if type(frame) is not DubboFrame:
            raise _not_ours(frame)
        own = frame
        _ID.pack_into(own.raw, _ID_OFFSET, request_id)
        own.request_id = request_id

    def match(self, data: bytes) -> MatchResult:
        if data[:2] != MAGIC[: len(data)]:
            return MatchResult.FAILED
        return MatchResult.MATCH if len(data) >= _HEADER_SIZE else MatchResult.AGAIN

    # -- heartbeats ---------------------------------------------------------------------

    def trigger(self, request_id: int) -> DubboFrame:
        flag = FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2
        return DubboFrame.build(flag, 0, request_id, _NULL)

    def reply(self, request: XFrame) -> DubboFrame:
        return DubboFrame.build(FLAG_EVENT | HESSIAN2, STATUS_OK, _own(request).request_id, _NULL)

    # -- error replies ------------------------------------------------------------------

    def hijack(self, request: XFrame, status: int, message: str) -> DubboFrame:
        dubbo_status = _TO_DUBBO.get(status, _DEFAULT_DUBBO)
        return DubboFrame.build(HESSIAN2, dubbo_status, _own(request).request_id, encode_string(message))

    def response_code(self, response: XFrame) -> int:
        return _FROM_DUBBO.get(_own(response).status, _DEFAULT_CODE)


if TYPE_CHECKING:  # mypy proves the codec keeps the contract

    def _conforms(codec: DubboCodec) -> tuple[XCodec, HeartbeatCodec, HijackCodec]:
        return codec, codec, codec
