"""How ``check_xcodec`` reports a failure, and the steps its checks share.

Every check runs inside :func:`checking`, which names the place (``sample 3``) and the
check (``trailing bytes``); :class:`Check` records the step in progress, and an
exception escaping from the codec becomes an :class:`AssertionError` that says all
three.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

from mosnpy.protocol.xprotocol.codec import StreamType, XCodec, XFrame

__all__ = [
    "Check",
    "check_shape",
    "checking",
    "decode_whole",
    "encode",
    "first_difference",
    "round_trip",
    "show",
]


class Check:
    """One named check at one place; ``step`` says what it was doing when it failed."""

    __slots__ = ("name", "step", "where")

    def __init__(self, where: str, name: str) -> None:
        self.where = where
        self.name = name
        self.step = ""

    def fail(self, detail: str) -> NoReturn:
        step = f" ({self.step})" if self.step else ""
        raise AssertionError(f"check_xcodec: {self.where}: {self.name}{step}: {detail}")

    def expect(self, ok: bool, detail: str) -> None:
        if not ok:
            self.fail(detail)


@contextmanager
def checking(where: str, name: str) -> Iterator[Check]:
    """Run one check; an exception from the codec becomes an AssertionError saying where."""
    check = Check(where, name)
    try:
        yield check
    except AssertionError:
        raise
    except Exception as exc:
        check.fail(f"the codec raised {type(exc).__name__}: {exc}")


def show(data: bytes, limit: int = 48) -> str:
    text = data[:limit].hex(" ")
    return f"{text} ... ({len(data)} bytes)" if len(data) > limit else f"[{text}]"


def first_difference(expected: bytes, got: bytes) -> str:
    for offset, (a, b) in enumerate(zip(expected, got, strict=False)):
        if a != b:
            return f"first difference at byte {offset}: expected {a:#04x}, got {b:#04x}"
    return f"lengths differ: expected {len(expected)} bytes, got {len(got)}"


# -- shared steps ----------------------------------------------------------------------


def check_shape(check: Check, frame: object) -> None:
    """The frame has the XFrame attributes with the right types, and a str→str view."""
    check.expect(isinstance(frame, XFrame), f"{frame!r} lacks XFrame's attributes")
    assert isinstance(frame, XFrame)
    check.expect(isinstance(frame.stream_type, StreamType), f"stream_type is {frame.stream_type!r}")
    check.expect(isinstance(frame.is_heartbeat, bool), f"is_heartbeat is {frame.is_heartbeat!r}")
    check.expect(isinstance(frame.status, int), f"status is {frame.status!r}")
    check.expect(isinstance(frame.timeout_ms, int), f"timeout_ms is {frame.timeout_ms!r}")
    view = frame.header_view()
    check.expect(isinstance(view, Mapping), f"header_view() returned {type(view).__name__}")
    for key, value in view.items():
        check.expect(
            isinstance(key, str) and isinstance(value, str),
            f"header_view() holds {key!r}: {value!r} (must be str: str)",
        )


def decode_whole(check: Check, codec: XCodec, data: bytes) -> XFrame:
    """Decode ``data``, which must be exactly one frame."""
    buf = bytearray(data)
    frame = codec.decode(buf)
    if frame is None:
        check.fail(f"decode returned None for a whole frame {show(data)}")
    check.expect(
        not buf, f"decode left {len(buf)} of {len(data)} bytes in the buffer (it must consume one frame)"
    )
    check_shape(check, frame)
    return frame


def encode(check: Check, codec: XCodec, frame: XFrame) -> bytes:
    wire = codec.encode(frame)
    check.expect(isinstance(wire, bytes | bytearray), f"encode returned {type(wire).__name__}, not bytes")
    return bytes(wire)


def round_trip(check: Check, codec: XCodec, frame: XFrame) -> XFrame:
    """Encode ``frame``, decode the bytes, and check they re-encode the same."""
    wire = encode(check, codec, frame)
    back = decode_whole(check, codec, wire)
    again = encode(check, codec, back)
    check.expect(
        again == wire, f"decoding and re-encoding changed the bytes: {first_difference(wire, again)}"
    )
    return back
