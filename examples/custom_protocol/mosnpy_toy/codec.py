"""The ``toy`` protocol: a private multiplexed RPC protocol in one small codec.

Wire format (big-endian)::

    magic "TY" | kind u8 | status u8 | id u32 | timeout_ms i32 | hlen u16 | blen u32
    | headers: "key=value\\n" lines (hlen bytes) | body (blen bytes)

kind: 0 request, 1 oneway, 2 response, 3 heartbeat, 4 heartbeat answer.
status (responses): 0 ok, 1 error, 4 busy, 6 no route/unreachable, 7 timeout.

This is all a protocol plugin writes: decode/encode, request-id get/set, and the
optional heartbeat and error-reply capabilities.  mosnpy does routing on the header
view, pooling, id remapping, heartbeats, timeouts, retries and error replies.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, StreamType

_HEAD = struct.Struct(">2sBBIiHI")
MAGIC = b"TY"
MAX_FRAME = 16 << 20
_KIND_TYPE = {
    0: StreamType.REQUEST,
    1: StreamType.ONEWAY,
    2: StreamType.RESPONSE,
    3: StreamType.REQUEST,
    4: StreamType.RESPONSE,
}
#: framework status (HTTP-style) -> toy status, and back
_TO_TOY = {200: 0, 404: 6, 502: 6, 503: 4, 504: 7}
_FROM_TOY = {0: 200, 4: 503, 6: 502, 7: 504}


@dataclass(slots=True)
class ToyFrame:
    kind: int
    request_id: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    status: int = 0
    timeout_ms: int = 0

    @property
    def stream_type(self) -> StreamType:
        return _KIND_TYPE[self.kind]

    @property
    def is_heartbeat(self) -> bool:
        return self.kind >= 3

    def header_view(self) -> Mapping[str, str]:
        return self.headers


class ToyCodec:
    name: ClassVar[str] = "toy"
    id_bits: ClassVar[int] = 32

    def decode(self, buf: bytearray) -> ToyFrame | None:
        if len(buf) < 2:
            return None if MAGIC.startswith(bytes(buf)) else self._garbage(buf)
        if buf[:2] != MAGIC:
            return self._garbage(buf)
        if len(buf) < _HEAD.size:
            return None
        _, kind, status, rid, timeout, hlen, blen = _HEAD.unpack_from(buf)
        if kind > 4 or hlen + blen > MAX_FRAME:
            raise DecodeError(f"bad toy frame header (kind {kind}, length {hlen + blen})")
        end = _HEAD.size + hlen + blen
        if len(buf) < end:
            return None
        try:
            text = bytes(buf[_HEAD.size : _HEAD.size + hlen]).decode()
            headers = dict(line.split("=", 1) for line in text.splitlines())
        except ValueError as exc:
            raise DecodeError(f"bad toy headers: {exc}") from None
        body = bytes(buf[_HEAD.size + hlen : end])
        del buf[:end]
        return ToyFrame(kind, rid, headers, body, status, timeout)

    @staticmethod
    def _garbage(buf: bytearray) -> None:
        raise DecodeError(f"not a toy frame: {bytes(buf[:8])!r}")

    def encode(self, frame: ToyFrame) -> bytes:
        head = "".join(f"{k}={v}\n" for k, v in frame.headers.items()).encode()
        return (
            _HEAD.pack(
                MAGIC,
                frame.kind,
                frame.status,
                frame.request_id,
                frame.timeout_ms,
                len(head),
                len(frame.body),
            )
            + head
            + frame.body
        )

    def get_request_id(self, frame: ToyFrame) -> int:
        return frame.request_id

    def set_request_id(self, frame: ToyFrame, request_id: int) -> None:
        frame.request_id = request_id

    def match(self, data: bytes) -> MatchResult:
        if len(data) < 2:
            return MatchResult.AGAIN if MAGIC.startswith(data) else MatchResult.FAILED
        return MatchResult.MATCH if data[:2] == MAGIC else MatchResult.FAILED

    # -- optional capabilities: heartbeats and error replies ----------------------------

    def trigger(self, request_id: int) -> ToyFrame:
        return ToyFrame(3, request_id)

    def reply(self, request: ToyFrame) -> ToyFrame:
        return ToyFrame(4, request.request_id)

    def hijack(self, request: ToyFrame, status: int, message: str) -> ToyFrame:
        return ToyFrame(2, request.request_id, {"error": message}, status=_TO_TOY.get(status, 1))

    def response_code(self, response: ToyFrame) -> int:
        return _FROM_TOY.get(response.status, 500)
