"""The SOFA Bolt codecs (v1 ``bolt`` and v2 ``boltv2``): framing, ids, heartbeats, errors.

The layouts are :mod:`mosnpy_bolt.spec`; this module is their fast path (``struct`` and
slicing).  A frame keeps its wire bytes: re-encoding returns them and a new request id
patches only the four id bytes, so class names, header maps and contents (hessian2,
protobuf, ...) pass through untouched.  The header map is decoded eagerly: it is the
frame's header view, where SOFA puts ``service``, ``sofa_head_method_name`` and
``sofa_head_target_service``.  A request whose header map is malformed raises a
:class:`DecodeError` that carries the request, so the framework answers it with a
codec-exception response instead of closing the connection.

Mappings (MOSN's):

==================================  ==================================
framework status → bolt status      bolt status → framework (HTTP) code
==================================  ==================================
200 → 0 (success)                   0 (success) → 200
403 → 2 (server exception)          4 (server thread pool busy) → 503
404, 502 → 6 (no processor)         7 (timeout) → 504
503 → 4 (server thread pool busy)   0x10 (connection closed) → 502
504 → 7 (timeout)                   anything else → 500
0 → 9 (codec exception)
3 → 0x12 (deserialization error)
anything else → 3 (unknown)
==================================  ==================================

Heartbeats follow the real frames (``bolt-node-heartbeat-*``): the probe is a request
with command code 0, codec 1 (hessian2) and a 3000 ms timeout (MOSN's doc says -1; the
SOFA node peers send 3000), the answer a response with command code 0 and status 0.
Error replies carry no class name, header or content: only the status speaks.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from mosnpy.native import mypyc_attr
from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, PoolMode, StreamType, XFrame

if TYPE_CHECKING:
    from mosnpy.protocol.xprotocol import HeartbeatCodec, HijackCodec, XCodec

__all__ = ["BoltCodec", "BoltFrame", "BoltV2Codec"]

TYPE_RESPONSE: Final = 0
TYPE_REQUEST: Final = 1
TYPE_ONEWAY: Final = 2
CMD_HEARTBEAT: Final = 0
CMD_REQUEST: Final = 1
CMD_RESPONSE: Final = 2
CODEC_HESSIAN2: Final = 1
HEARTBEAT_TIMEOUT_MS: Final = 3000
_STREAM_TYPES: Final = {
    TYPE_RESPONSE: StreamType.RESPONSE,
    TYPE_REQUEST: StreamType.REQUEST,
    TYPE_ONEWAY: StreamType.ONEWAY,
}
_U32: Final = struct.Struct(">I")
_NULL: Final = 0xFFFFFFFF  # a header-map length meaning "null": the entry is skipped

_TO_BOLT: Final = {200: 0, 403: 2, 404: 6, 502: 6, 503: 4, 504: 7, 0: 9, 3: 0x12}
_DEFAULT_BOLT: Final = 3
_FROM_BOLT: Final = {0: 200, 4: 503, 7: 504, 0x10: 502}
_DEFAULT_CODE: Final = 500


@dataclass(frozen=True)
class _Layout:
    """Where the fields of one bolt version are."""

    proto: int
    request: struct.Struct  # proto, [ver1], type, cmd, ver2, id, codec, [switch], timeout, 3 lengths
    response: struct.Struct  # the same with status (u16) instead of timeout
    type_offset: int
    id_offset: int

    def unpack(
        self, data: bytes | bytearray, kind: int
    ) -> tuple[int, int, int, int, int, int, int, int, int, int]:
        """(ver1, switch, cmd, ver2, id, codec, timeout or status, class, header and
        content lengths) whatever the version (v1 has ver1 = switch = 0)."""
        f = (self.response if kind == TYPE_RESPONSE else self.request).unpack_from(data)
        if self.proto == 1:
            return 0, 0, f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
        return f[1], f[7], f[3], f[4], f[5], f[6], f[8], f[9], f[10], f[11]

    def pack(self, kind: int, ver1: int, switch: int, fields: tuple[int, ...]) -> bytes:
        """A header from (cmd, ver2, id, codec, timeout or status, 3 lengths)."""
        head = self.response if kind == TYPE_RESPONSE else self.request
        if self.proto == 1:
            return head.pack(self.proto, kind, *fields)
        return head.pack(self.proto, ver1, kind, *fields[:4], switch, *fields[4:])


V1: Final = _Layout(1, struct.Struct(">BBHBIBiHHI"), struct.Struct(">BBHBIBHHHI"), 1, 5)
V2: Final = _Layout(2, struct.Struct(">BBBHBIBBiHHI"), struct.Struct(">BBBHBIBBHHHI"), 2, 6)


class BoltFrame:
    """One bolt frame: its wire bytes plus the fields the framework and routing read.

    A plain class, not a dataclass: compiled, a dataclass keeps the ``__init__`` that
    :mod:`dataclasses` writes in Python, and a frame is built per call.
    """

    __slots__ = (
        "class_length",
        "cmd_code",
        "codec",
        "head_size",
        "header_length",
        "headers",
        "is_heartbeat",
        "kind",
        "layout",
        "raw",
        "request_id",
        "status",
        "stream_type",
        "switch",
        "timeout_ms",
        "ver1",
        "ver2",
    )

    def __init__(
        self,
        raw: bytearray,
        layout: _Layout,
        kind: int,
        ver1: int,
        switch: int,
        cmd_code: int,
        ver2: int,
        request_id: int,
        codec: int,
        status: int,
        timeout_ms: int,
        headers: dict[str, str],
        head_size: int,
        class_length: int,
        header_length: int,
        stream_type: StreamType,
        is_heartbeat: bool,
    ) -> None:
        self.raw = raw  # the whole frame as on the wire
        self.layout = layout
        self.kind = kind  # the type byte: 0 response, 1 request, 2 oneway
        self.ver1 = ver1  # v2 only (0 in v1)
        self.switch = switch  # v2 only (0 in v1)
        self.cmd_code = cmd_code
        self.ver2 = ver2
        self.request_id = request_id
        self.codec = codec  # the content's serialization: 1 hessian2, 11 protobuf
        self.status = status  # responses (0 in requests)
        self.timeout_ms = timeout_ms  # requests (0 in responses)
        self.headers = headers
        self.head_size = head_size  # the fixed header: the class name starts here
        self.class_length = class_length
        self.header_length = header_length
        self.stream_type = stream_type
        self.is_heartbeat = is_heartbeat

    def __repr__(self) -> str:
        return (
            f"BoltFrame(kind={self.kind}, cmd_code={self.cmd_code}, request_id={self.request_id},"
            f" status={self.status}, timeout_ms={self.timeout_ms}, headers={self.headers!r})"
        )

    @property
    def class_name(self) -> str:
        start = self.head_size
        return self.raw[start : start + self.class_length].decode("utf-8", "surrogateescape")

    @property
    def content(self) -> bytes:
        return bytes(self.raw[self.head_size + self.class_length + self.header_length :])

    def header_view(self) -> Mapping[str, str]:
        """The header map (``service``, ``sofa_head_method_name``, ...)."""
        return self.headers


def _headers(data: bytes) -> dict[str, str]:
    """The header map ``data`` holds; ValueError if it is malformed."""
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _header_string(data, pos, end)
        value, pos = _header_string(data, pos, end)
        if key is not None and value is not None:
            out[key] = value
    return out


def _header_string(data: bytes, pos: int, end: int) -> tuple[str | None, int]:
    """The length-prefixed string at ``pos`` (None: null) and where it ends."""
    if pos + 4 > end:
        raise ValueError("truncated header map")
    size = data[pos] << 24 | data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3]
    pos += 4
    if size == _NULL:
        return None, pos
    if pos + size > end:
        raise ValueError("header map entry overruns the header")
    return data[pos : pos + size].decode("utf-8", "surrogateescape"), pos + size


def _read(layout: _Layout, data: bytearray, max_frame: int) -> BoltFrame | None:
    """The frame at the start of ``data``, or None if it is not all there yet."""
    size = len(data)
    if size and data[0] != layout.proto:
        raise DecodeError(f"not a bolt v{layout.proto} frame: starts {data[0]:#04x}")
    if size <= layout.type_offset:
        return None
    kind = data[layout.type_offset]
    if kind not in _STREAM_TYPES:
        raise DecodeError(f"bad bolt type {kind}")
    head = layout.response if kind == TYPE_RESPONSE else layout.request
    if size < head.size:
        return None
    ver1, switch, cmd, ver2, rid, codec, extra, class_len, header_len, content_len = layout.unpack(data, kind)
    if ver1 > 1 and switch & 1:
        raise DecodeError("bolt v2 frames with a CRC32 trailer are not supported")
    end = head.size + class_len + header_len + content_len
    if end > max_frame:
        raise DecodeError(f"bolt frame of {end} bytes exceeds {max_frame}")
    if size < end:
        return None
    frame = BoltFrame(
        raw=data[:end],
        layout=layout,
        kind=kind,
        ver1=ver1,
        switch=switch,
        cmd_code=cmd,
        ver2=ver2,
        request_id=rid,
        codec=codec,
        status=extra if kind == TYPE_RESPONSE else 0,
        timeout_ms=0 if kind == TYPE_RESPONSE else extra,
        headers={},
        head_size=head.size,
        class_length=class_len,
        header_length=header_len,
        stream_type=_STREAM_TYPES[kind],
        is_heartbeat=cmd == CMD_HEARTBEAT,
    )
    try:
        start = head.size + class_len
        frame.headers = _headers(bytes(data[start : start + header_len])) if header_len else {}
    except ValueError as exc:
        request = frame if kind == TYPE_REQUEST else None
        raise DecodeError(f"bad bolt header map: {exc}", request=request, consumed=end) from None
    return frame


def _not_ours(frame: XFrame) -> TypeError:
    return TypeError(f"not a bolt frame: {frame!r}")


def _own(frame: XFrame) -> BoltFrame:
    if not isinstance(frame, BoltFrame):
        raise _not_ours(frame)
    return frame


@mypyc_attr(allow_interpreted_subclasses=True)  # (a subclass may change max_frame)
class BoltCodec:
    """SOFA Bolt v1 (an :class:`~mosnpy.protocol.xprotocol.XCodec` with heartbeats and
    error replies); :class:`BoltV2Codec` is the same for v2."""

    name: ClassVar[str] = "bolt"
    id_bits: ClassVar[int] = 32
    pool_mode: ClassVar[PoolMode] = PoolMode.MULTIPLEX
    #: a larger frame is garbage
    max_frame: ClassVar[int] = 16 << 20
    layout: ClassVar[_Layout] = V1

    def decode(self, buf: bytearray) -> BoltFrame | None:
        frame = _read(self.layout, buf, self.max_frame)
        if frame is not None:
            del buf[: len(frame.raw)]
        return frame

    # The per-call methods check the frame's type inline (a call less each, per frame).

    def encode(self, frame: XFrame) -> bytes:
        if type(frame) is not BoltFrame:
            raise _not_ours(frame)
        return bytes(frame.raw)

    def get_request_id(self, frame: XFrame) -> int:
        if type(frame) is not BoltFrame:
            raise _not_ours(frame)
        return frame.request_id

    def set_request_id(self, frame: XFrame, request_id: int) -> None:
        if type(frame) is not BoltFrame:
            raise _not_ours(frame)
        own = frame
        _U32.pack_into(own.raw, own.layout.id_offset, request_id)
        own.request_id = request_id

    def match(self, data: bytes) -> MatchResult:
        if not data:
            return MatchResult.AGAIN
        return MatchResult.MATCH if data[0] == self.layout.proto else MatchResult.FAILED

    def _build(self, kind: int, fields: tuple[int, ...], *, ver1: int = 1, switch: int = 0) -> BoltFrame:
        """A frame with no class name, header or content from (cmd, ver2, id, codec,
        timeout or status)."""
        raw = bytearray(self.layout.pack(kind, ver1, switch, (*fields, 0, 0, 0)))
        frame = _read(self.layout, raw, self.max_frame)
        assert frame is not None
        return frame

    # -- heartbeats ---------------------------------------------------------------------

    def trigger(self, request_id: int) -> BoltFrame:
        fields = (CMD_HEARTBEAT, 1, request_id, CODEC_HESSIAN2, HEARTBEAT_TIMEOUT_MS)
        return self._build(TYPE_REQUEST, fields)

    def reply(self, request: XFrame) -> BoltFrame:
        req = _own(request)
        fields = (CMD_HEARTBEAT, req.ver2, req.request_id, req.codec, 0)
        return self._build(TYPE_RESPONSE, fields, ver1=req.ver1, switch=req.switch)

    # -- error replies ------------------------------------------------------------------

    def hijack(self, request: XFrame, status: int, message: str) -> BoltFrame:
        req = _own(request)
        fields = (CMD_RESPONSE, req.ver2, req.request_id, req.codec, _TO_BOLT.get(status, _DEFAULT_BOLT))
        return self._build(TYPE_RESPONSE, fields, ver1=req.ver1, switch=req.switch)

    def response_code(self, response: XFrame) -> int:
        return _FROM_BOLT.get(_own(response).status, _DEFAULT_CODE)


@mypyc_attr(allow_interpreted_subclasses=True)
class BoltV2Codec(BoltCodec):
    """SOFA Bolt v2 (proto 2; the CRC32 trailer is not supported)."""

    name: ClassVar[str] = "boltv2"
    layout: ClassVar[_Layout] = V2


if TYPE_CHECKING:  # mypy proves the codecs keep the contract

    def _conforms(codec: BoltCodec) -> tuple[XCodec, HeartbeatCodec, HijackCodec]:
        return codec, codec, codec
