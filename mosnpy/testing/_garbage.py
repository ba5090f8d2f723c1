"""``check_xcodec``'s garbage checks: flipped header bytes, then Hypothesis fuzzing.

Hypothesis is imported only inside :func:`fuzz`, so the kit imports without it.
"""

from __future__ import annotations

from mosnpy.protocol.xprotocol.codec import DecodeError, XCodec
from mosnpy.testing._report import Check, check_shape, checking, encode, show

__all__ = ["check_flips", "fuzz"]

#: how many leading bytes of each sample are flipped one at a time, and with what
FLIP_SPAN = 32
FLIP_MASKS = (0xFF, 0x80, 0x01)


def _decode_to_the_end(check: Check, codec: XCodec, data: bytes) -> None:
    """Decode ``data`` to the end as the framework would; only DecodeError may escape."""
    buf = bytearray(data)
    while buf:
        before = bytes(buf)
        check.step = f"decode({show(before)})"
        try:
            frame = codec.decode(buf)
        except DecodeError as exc:
            if exc.request is not None:
                check.expect(
                    0 < exc.consumed <= len(before),
                    f"DecodeError carries a request but consumed={exc.consumed}",
                )
            return
        if frame is None:
            check.expect(buf == before, "decode returned None but changed the buffer")
            return
        consumed = len(before) - len(buf)
        check.expect(
            consumed > 0 and buf == before[consumed:],
            "decode returned a frame but did not remove exactly its bytes from the front of the buffer",
        )
        check_shape(check, frame)
        codec.get_request_id(frame)
        encode(check, codec, frame)


def check_flips(codec: XCodec, where: str, sample: bytes) -> None:
    """The sample with every possible first byte, and with each of its header bytes
    flipped: lengths, types and magic numbers gone wrong."""
    with checking(where, "garbage") as check:
        for value in range(256):
            _decode_to_the_end(check, codec, bytes([value]) + sample[1:])
        for offset in range(min(len(sample), FLIP_SPAN)):
            for flip in FLIP_MASKS:
                data = bytearray(sample)
                data[offset] ^= flip
                _decode_to_the_end(check, codec, bytes(data))


def fuzz(codec: XCodec, samples: list[bytes], examples: int) -> None:
    """Hypothesis: arbitrary bytes, and samples cut, flipped and padded at random."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        sample = draw(st.sampled_from(samples))
        data = bytearray(sample[: draw(st.integers(0, len(sample)))])
        for offset, flip in draw(st.lists(st.tuples(st.integers(0), st.integers(1, 255)), max_size=4)):
            if data:
                data[offset % len(data)] ^= flip
        return bytes(data) + draw(st.binary(max_size=32))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(st.binary(max_size=512), mutated()))
    def arbitrary(data: bytes) -> None:
        with checking("arbitrary bytes", "garbage") as check:
            _decode_to_the_end(check, codec, data)

    arbitrary()
