"""``check_xcodec``'s checks of the optional capabilities: heartbeats and error replies."""

from __future__ import annotations

from typing import Protocol

from mosnpy.protocol.xprotocol.codec import HeartbeatCodec, HijackCodec, StreamType, XCodec, XFrame
from mosnpy.testing._report import Check, check_shape, checking, decode_whole, round_trip

__all__ = ["check_capabilities", "check_trigger"]


class _HeartbeatXCodec(XCodec, HeartbeatCodec, Protocol):
    """A codec with heartbeats (what ``isinstance(codec, HeartbeatCodec)`` narrows to)."""


class _HijackXCodec(XCodec, HijackCodec, Protocol):
    """A codec with error replies."""


#: framework statuses a hijack must answer: decode errors 0/2/3, 404, 500, 502-504
HIJACK_STATUSES = (0, 2, 3, 404, 500, 502, 503, 504)
#: messages a hijack must carry (MOSN's style, and one that is not ASCII)
HIJACK_MESSAGES = ("404|router unavailable", "upstream timeout: ünïcødé ✓ 𝄞")


def check_capabilities(codec: XCodec, where: str, sample: bytes) -> None:
    """What the sample allows: answer it if it is a heartbeat request, hijack it if it is
    a request, map its status if it is a response (each only if the codec can)."""
    with checking(where, "whole frame") as check:
        frame = decode_whole(check, codec, sample)
    kind = frame.stream_type
    if frame.is_heartbeat and kind is not StreamType.RESPONSE and isinstance(codec, HeartbeatCodec):
        with checking(where, "heartbeat reply") as check:
            _check_reply(check, codec, frame)
    if not isinstance(codec, HijackCodec) or frame.is_heartbeat:
        return
    if kind is StreamType.RESPONSE:
        with checking(where, "response_code") as check:
            code = codec.response_code(frame)
            check.expect(isinstance(code, int) and 100 <= code <= 599, f"response_code gave {code!r}")
    elif kind is StreamType.REQUEST:
        for status in HIJACK_STATUSES:
            for message in HIJACK_MESSAGES:
                with checking(where, f"hijack {status} {message!r}") as check:
                    _check_hijack(check, codec, sample, status, message)


def _expect_id(check: Check, codec: XCodec, frame: XFrame, rid: int) -> None:
    got = codec.get_request_id(frame)
    check.expect(got == rid, f"has id {got!r}, expected {rid!r}")


def _check_reply(check: Check, codec: _HeartbeatXCodec, request: XFrame) -> None:
    rid = codec.get_request_id(request)
    reply = codec.reply(request)
    check_shape(check, reply)
    for step, frame in (("reply", reply), ("the reply decoded", round_trip(check, codec, reply))):
        check.step = step
        check.expect(frame.is_heartbeat, "is not a heartbeat")
        check.expect(frame.stream_type is StreamType.RESPONSE, f"stream_type is {frame.stream_type}")
        _expect_id(check, codec, frame, rid)


def _check_hijack(check: Check, codec: _HijackXCodec, sample: bytes, status: int, message: str) -> None:
    request = decode_whole(check, codec, sample)
    rid = codec.get_request_id(request)
    reply = codec.hijack(request, status, message)
    check_shape(check, reply)
    for step, frame in (("hijack", reply), ("the hijack decoded", round_trip(check, codec, reply))):
        check.step = step
        check.expect(frame.stream_type is StreamType.RESPONSE, f"stream_type is {frame.stream_type}")
        check.expect(not frame.is_heartbeat, "is a heartbeat")
        _expect_id(check, codec, frame, rid)
        code = codec.response_code(frame)
        check.expect(
            isinstance(code, int) and 400 <= code <= 599, f"response_code gave {code!r}, not an error"
        )


def check_trigger(codec: _HeartbeatXCodec) -> None:
    """Heartbeat probes with ids 0, 1 and the largest id survive the wire and get replies."""
    for rid in dict.fromkeys((0, 1, (1 << codec.id_bits) - 1)):
        with checking(f"trigger({rid:#x})", "heartbeat") as check:
            probe = codec.trigger(rid)
            check_shape(check, probe)
            decoded = round_trip(check, codec, probe)
            for step, frame in (("trigger", probe), ("the trigger decoded", decoded)):
                check.step = step
                check.expect(frame.is_heartbeat, "is not a heartbeat")
                check.expect(frame.stream_type is StreamType.REQUEST, f"stream_type is {frame.stream_type}")
                _expect_id(check, codec, frame, rid)
            check.step = ""
            _check_reply(check, codec, decoded)
