"""``check_xcodec`` passes a correct codec and catches each kind of broken one.

The codec under test is a tiny protocol written here (so the kit is proven on code
nobody else edits)::

    "K" | kind u8 | status u8 | id u16 | body length u16 | body

kind: 0 request, 1 oneway, 2 response, 3 heartbeat request, 4 heartbeat response.
Each broken variant changes one method and must make the kit fail with a message
naming the check that caught it.
"""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, cast

import pytest

from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, StreamType, XCodec
from mosnpy.testing import check_xcodec
from mosnpy.testing import xcodec as kit

_HEAD = struct.Struct(">cBBHH")
_TYPES = [StreamType.REQUEST, StreamType.ONEWAY, StreamType.RESPONSE, StreamType.REQUEST, StreamType.RESPONSE]


@dataclass
class KFrame:
    kind: int
    request_id: int
    status: int = 0
    body: bytes = b""
    timeout_ms: int = 0

    @property
    def stream_type(self) -> StreamType:
        return _TYPES[self.kind]

    @property
    def is_heartbeat(self) -> bool:
        return self.kind >= 3

    def header_view(self) -> Mapping[str, str]:
        return {"kind": str(self.kind)}


class GoodCodec:
    name: ClassVar[str] = "k"
    id_bits: ClassVar[int] = 16

    def decode(self, buf: bytearray) -> KFrame | None:
        if not buf:
            return None
        if buf[:1] != b"K":
            raise DecodeError("bad magic")
        if len(buf) < _HEAD.size:
            return None
        _, kind, status, rid, size = _HEAD.unpack_from(buf)
        if kind > 4:
            raise DecodeError("bad kind")
        end = _HEAD.size + size
        if len(buf) < end:
            return None
        frame = KFrame(kind, rid, status, bytes(buf[_HEAD.size : end]))
        del buf[:end]
        return frame

    def encode(self, frame: KFrame) -> bytes:
        return _HEAD.pack(b"K", frame.kind, frame.status, frame.request_id, len(frame.body)) + frame.body

    def get_request_id(self, frame: KFrame) -> int:
        return frame.request_id

    def set_request_id(self, frame: KFrame, request_id: int) -> None:
        frame.request_id = request_id

    def match(self, data: bytes) -> MatchResult:
        if not data:
            return MatchResult.AGAIN
        return MatchResult.MATCH if data[:1] == b"K" else MatchResult.FAILED

    def trigger(self, request_id: int) -> KFrame:
        return KFrame(3, request_id)

    def reply(self, request: KFrame) -> KFrame:
        return KFrame(4, request.request_id)

    def hijack(self, request: KFrame, status: int, message: str) -> KFrame:
        return KFrame(2, request.request_id, 1, message.encode())

    def response_code(self, response: KFrame) -> int:
        return 200 if response.status == 0 else 500


GOOD = GoodCodec()
SAMPLES = [
    GOOD.encode(KFrame(0, 0x1234, 0, b"hello")),  # sample 0: request
    GOOD.encode(KFrame(2, 0x1234, 1, b"oops")),  # sample 1: error response
    GOOD.encode(KFrame(3, 7)),  # sample 2: heartbeat request
    GOOD.encode(KFrame(1, 9, 0, b"fire and forget")),  # sample 3: oneway
]


def check(codec: GoodCodec, samples: list[bytes] = SAMPLES, *, arbitrary_examples: int = 200) -> None:
    """``check_xcodec`` on a toy codec (whose methods take ``KFrame``, not any ``XFrame``,
    so mypy cannot see it as an ``XCodec``; at run time it is one)."""
    check_xcodec(cast(XCodec, codec), samples, arbitrary_examples=arbitrary_examples)


def test_a_correct_codec_passes() -> None:
    check(GoodCodec())


def test_no_samples_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        check(GoodCodec(), [])


# -- one bug per codec -----------------------------------------------------------------


class OverConsuming(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        frame = super().decode(buf)
        if frame is not None and buf:
            del buf[:1]  # eats the first byte of the next frame
        return frame


class NotConsuming(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        copy = bytearray(buf)
        return super().decode(copy)


class EagerOnPrefix(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        if len(buf) >= _HEAD.size and buf[:1] == b"K":
            _, kind, status, rid, size = _HEAD.unpack_from(buf)
            if kind <= 4 and len(buf) < _HEAD.size + size:  # hands up a truncated frame
                frame = KFrame(kind, rid, status, bytes(buf[_HEAD.size :]))
                buf.clear()
                return frame
        return super().decode(buf)


class MutatesWhenShort(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        frame = super().decode(buf)
        if frame is None and len(buf) >= _HEAD.size:
            del buf[: _HEAD.size]  # drops the header while waiting for the body
        return frame


class OnewayBecomesRequest(GoodCodec):
    def encode(self, frame: KFrame) -> bytes:
        kind = 0 if frame.kind == 1 else frame.kind
        return _HEAD.pack(b"K", kind, frame.status, frame.request_id, len(frame.body)) + frame.body


class EncodeIsNotIdempotent(GoodCodec):
    def encode(self, frame: KFrame) -> bytes:
        wire = super().encode(frame)
        frame.body = frame.body[1:]  # encoding consumes the body
        return wire


class IdNeverReachesTheWire(GoodCodec):
    def set_request_id(self, frame: KFrame, request_id: int) -> None:
        frame.__dict__["shadow_id"] = request_id

    def get_request_id(self, frame: KFrame) -> int:
        return int(frame.__dict__.get("shadow_id", frame.request_id))


class IdTouchesOtherBytes(GoodCodec):
    def set_request_id(self, frame: KFrame, request_id: int) -> None:
        frame.request_id = request_id
        frame.status ^= 0x40  # e.g. a stale checksum byte somewhere else


class GetIdTruncates(GoodCodec):
    def get_request_id(self, frame: KFrame) -> int:
        return frame.request_id & 0xFF


class IdTruncatedOnTheWire(GoodCodec):
    id_bits: ClassVar[int] = 32  # claims 32 bits, puts 16 on the wire

    def set_request_id(self, frame: KFrame, request_id: int) -> None:
        frame.request_id = request_id & 0xFFFF


class ValueErrorOnBadKind(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        if len(buf) >= 2 and buf[1] > 4:
            raise ValueError(f"unknown kind {buf[1]}")
        return super().decode(buf)


class IndexErrorOnShortGarbage(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        if 1 < len(buf) < _HEAD.size and buf[:1] != b"K":
            return KFrame(0, buf[9])  # reads past the end: IndexError
        return super().decode(buf)


class FrameWithoutProgress(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        if buf[:1] == b"\xff":
            return KFrame(0, 0)  # a frame, but nothing consumed: the framework would spin
        return super().decode(buf)


class MatchFailsEarly(GoodCodec):
    def match(self, data: bytes) -> MatchResult:
        return MatchResult.MATCH if len(data) >= 3 and data[:1] == b"K" else MatchResult.FAILED


class ReplyWithWrongId(GoodCodec):
    def reply(self, request: KFrame) -> KFrame:
        return KFrame(4, request.request_id + 1)


class TriggerIsNoHeartbeat(GoodCodec):
    def trigger(self, request_id: int) -> KFrame:
        return KFrame(0, request_id)


class HijackIsARequest(GoodCodec):
    def hijack(self, request: KFrame, status: int, message: str) -> KFrame:
        return KFrame(0, request.request_id, 1, message.encode())


class HijackLosesId(GoodCodec):
    def hijack(self, request: KFrame, status: int, message: str) -> KFrame:
        return KFrame(2, 0, 1, message.encode())


class HijackAsciiOnly(GoodCodec):
    def hijack(self, request: KFrame, status: int, message: str) -> KFrame:
        return KFrame(2, request.request_id, 1, message.encode("ascii"))


class HijackLooksFine(GoodCodec):
    def hijack(self, request: KFrame, status: int, message: str) -> KFrame:
        return KFrame(2, request.request_id, 0, message.encode())  # status 0 maps to 200


class ViewIsNotStr(GoodCodec):
    def decode(self, buf: bytearray) -> KFrame | None:
        frame = super().decode(buf)
        if frame is not None:
            frame.timeout_ms = None  # type: ignore[assignment]
        return frame


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        (OverConsuming(), r"sample 0 then sample 1: trailing bytes: .*buffer holds"),
        (NotConsuming(), r"sample 0: whole frame: decode left \d+ of \d+ bytes"),
        (EagerOnPrefix(), r"sample 0: prefix \(the first 7 of 12 bytes\): decode returned a frame"),
        (MutatesWhenShort(), r"sample 0: prefix \(the first 7 of 12 bytes\): .*changed the buffer"),
        (
            OnewayBecomesRequest(),
            r"sample 3: whole frame: re-encoding differs .* at byte 1: expected 0x01, got 0x00",
        ),
        (EncodeIsNotIdempotent(), r"sample 0: whole frame: encoding the same frame twice"),
        (IdNeverReachesTheWire(), r"sample 0: request id .*did not change"),
        (IdTouchesOtherBytes(), r"sample 0: request id .*bytes 2\.\.4 changed \(3 bytes\)"),
        (GetIdTruncates(), r"sample 0: request id .*get_request_id then gave"),
        (IdTruncatedOnTheWire(), r"sample 0: request id .*get_request_id then gave"),
        (ValueErrorOnBadKind(), r"sample 0: garbage \(decode\(.*\)\): the codec raised ValueError"),
        (MatchFailsEarly(), r"sample 0: match: match\(\) of the first 0 bytes is FAILED"),
        (ReplyWithWrongId(), r"sample 2: heartbeat reply \(reply\): has id 8, expected 7"),
        (TriggerIsNoHeartbeat(), r"trigger\(0x0\): heartbeat \(trigger\): is not a heartbeat"),
        (HijackIsARequest(), r"sample 0: hijack 0 .*stream_type is StreamType.REQUEST"),
        (HijackLosesId(), r"sample 0: hijack 0 .*has id 0, expected 4660"),
        (HijackAsciiOnly(), r"sample 0: hijack 0 'upstream timeout.*UnicodeEncodeError"),
        (HijackLooksFine(), r"sample 0: hijack 0 .*response_code gave 200, not an error"),
        (ViewIsNotStr(), r"sample 0: whole frame: timeout_ms is None"),
        (FrameWithoutProgress(), r"sample 0: garbage \(decode\(\[ff .*did not remove exactly its bytes"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else "",
)
def test_the_kit_catches(codec: GoodCodec, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(codec, arbitrary_examples=0)


def test_fuzzing_catches_what_the_samples_never_show() -> None:
    check(IndexErrorOnShortGarbage(), arbitrary_examples=0)  # the samples alone pass
    with pytest.raises(AssertionError, match=r"arbitrary bytes: garbage .*the codec raised IndexError"):
        check(IndexErrorOnShortGarbage())


def test_without_hypothesis_at_import() -> None:
    """The kit imports neither trio nor Hypothesis itself (Hypothesis only when fuzzing)."""
    modules = sorted(Path(kit.__file__).parent.glob("*.py"))
    assert len(modules) >= 2
    for module in modules:
        tree = ast.parse(module.read_text())
        top = {name for node in tree.body for name in _imported(node)}
        everywhere = {name for node in ast.walk(tree) for name in _imported(node)}
        assert "hypothesis" not in top and "trio" not in everywhere, (module.name, top, everywhere)
    probe = "import sys, mosnpy.testing; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _imported(node: ast.AST) -> list[str]:
    """The top-level package names an import statement imports."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module.split(".")[0]]
    return []
