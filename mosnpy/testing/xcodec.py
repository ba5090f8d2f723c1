"""``check_xcodec``: the conformance kit every xprotocol plugin runs on its codec.

Modelled on ``trio.testing.check_two_way_stream``: one call, given a codec and a few
real wire frames (captured from real clients and servers, ideally), checks every
promise of the :mod:`mosnpy.protocol.xprotocol.codec` contract the framework relies on:

* each sample decodes to exactly one frame, consuming exactly its bytes, and
  re-encodes byte for byte (twice: encoding must not change the frame);
* ``match`` says MATCH for a whole sample and never FAILED for one of its prefixes;
* every proper prefix decodes to ``None`` and leaves the buffer untouched, feeding the
  sample byte by byte yields the frame only at the last byte, and bytes after a frame
  (the next sample) stay in the buffer;
* ``set_request_id`` changes only the id bytes (all differing bytes lie within one
  ``id_bits``-wide window, and flipping every id bit changes every id byte), survives a
  decode, and setting the old id back restores the sample;
* garbage (each sample with every first byte and with header bytes flipped, then Hypothesis ``binary()`` and
  mutated, cut and padded samples) only ever gives ``None``, frames or
  :class:`DecodeError`: never another exception, never a frame that consumed nothing;
* if the codec is a :class:`HeartbeatCodec`: ``trigger`` gives a heartbeat request that
  survives the wire, and ``reply`` to it (and to any heartbeat sample) gives a
  heartbeat response with the same id;
* if the codec is a :class:`HijackCodec`: ``hijack`` of each request sample for the
  framework's error statuses gives a response with the same id that survives the wire
  and maps back to an error code, and ``response_code`` of every response sample is an
  HTTP-style code.

A failure raises :class:`AssertionError` naming the sample index and the check, for
example ``check_xcodec: sample 3: trailing bytes: ...``.

The kit assumes ``decode`` depends only on the buffer it is given (the framework keeps
one codec per connection, but the kit feeds one codec many unrelated buffers).  It
imports Hypothesis only when it fuzzes, so it can be imported without it; it must not
be called from inside another Hypothesis test (Hypothesis does not nest).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol.codec import HeartbeatCodec, XCodec, XFrame
from mosnpy.testing._capabilities import check_capabilities, check_trigger
from mosnpy.testing._garbage import check_flips, fuzz
from mosnpy.testing._report import checking, decode_whole, encode, first_difference, show

__all__ = ["check_xcodec"]

#: samples longer than this have their prefixes checked at a stride, not one by one
EVERY_PREFIX_UP_TO = 8192


def check_xcodec(codec: XCodec, frames: Sequence[bytes], *, arbitrary_examples: int = 200) -> None:
    """Check that ``codec`` keeps the xprotocol contract on the sample wire ``frames``.

    Args:
        codec: the codec under test (one instance is used for every check).
        frames: whole wire frames, one per item; requests, responses and heartbeats
            all belong here.
        arbitrary_examples: how many Hypothesis examples of garbage to try (0 skips
            the fuzzing; the deterministic byte flips still run).

    Raises:
        AssertionError: a check failed; the message names the sample and the check.
        ValueError: ``frames`` is empty.
    """
    samples = [bytes(frame) for frame in frames]
    if not samples:
        raise ValueError("check_xcodec needs at least one sample frame")
    _check_attributes(codec)
    for index, sample in enumerate(samples):
        where = f"sample {index}"
        following = (index + 1) % len(samples)
        _check_whole(codec, where, sample)
        _check_match(codec, where, sample)
        _check_prefixes(codec, where, sample)
        _check_byte_by_byte(codec, where, sample)
        _check_trailing(codec, f"{where} then sample {following}", sample, samples[following])
        _check_request_id(codec, where, sample)
        check_capabilities(codec, where, sample)
        check_flips(codec, where, sample)
    if isinstance(codec, HeartbeatCodec):
        check_trigger(codec)
    if arbitrary_examples > 0:
        fuzz(codec, samples, arbitrary_examples)


# -- per-sample checks -----------------------------------------------------------------


def _check_attributes(codec: XCodec) -> None:
    with checking("codec", "attributes") as check:
        check.expect(isinstance(codec, XCodec), f"{codec!r} lacks XCodec's methods or attributes")
        check.expect(isinstance(codec.name, str) and bool(codec.name), f"name is {codec.name!r}")
        check.expect(isinstance(codec.id_bits, int) and codec.id_bits > 0, f"id_bits is {codec.id_bits!r}")


def _check_whole(codec: XCodec, where: str, sample: bytes) -> None:
    with checking(where, "whole frame") as check:
        check.expect(bool(sample), "the sample is empty")
        frame = decode_whole(check, codec, sample)
        wire = encode(check, codec, frame)
        check.expect(wire == sample, f"re-encoding differs from the sample: {first_difference(sample, wire)}")
        again = encode(check, codec, frame)
        check.expect(again == wire, "encoding the same frame twice gave different bytes")


def _check_match(codec: XCodec, where: str, sample: bytes) -> None:
    with checking(where, "match") as check:
        result = codec.match(sample)
        check.expect(result is MatchResult.MATCH, f"match() of the whole frame is {result}")
        for size in range(min(len(sample), 64)):
            result = codec.match(sample[:size])
            check.expect(
                result is not MatchResult.FAILED,
                f"match() of the first {size} bytes is FAILED (a prefix of a real frame is AGAIN or MATCH)",
            )


def _prefix_sizes(size: int) -> Iterator[int]:
    if size <= EVERY_PREFIX_UP_TO:
        yield from range(size)
        return
    yield from range(EVERY_PREFIX_UP_TO // 2)
    yield from range(EVERY_PREFIX_UP_TO // 2, size, max(1, size // 1024))
    yield size - 1


def _check_prefixes(codec: XCodec, where: str, sample: bytes) -> None:
    with checking(where, "prefix") as check:
        for size in _prefix_sizes(len(sample)):
            check.step = f"the first {size} of {len(sample)} bytes"
            part = sample[:size]
            buf = bytearray(part)
            frame = codec.decode(buf)
            check.expect(frame is None, "decode returned a frame (expected None: more bytes are needed)")
            check.expect(buf == part, f"decode returned None but changed the buffer to {show(bytes(buf))}")


def _check_byte_by_byte(codec: XCodec, where: str, sample: bytes) -> None:
    with checking(where, "byte by byte") as check:
        buf = bytearray()
        frame: XFrame | None = None
        for count, byte in enumerate(sample, 1):
            check.step = f"after {count} of {len(sample)} bytes"
            buf.append(byte)
            frame = codec.decode(buf)
            if count < len(sample):
                check.expect(frame is None, "decode returned a frame before the last byte")
                check.expect(len(buf) == count, "decode returned None but changed the buffer")
        check.expect(frame is not None and not buf, "the last byte did not give the whole frame")
        assert frame is not None
        wire = encode(check, codec, frame)
        check.expect(wire == sample, f"re-encoding differs: {first_difference(sample, wire)}")


def _check_trailing(codec: XCodec, where: str, sample: bytes, following: bytes) -> None:
    with checking(where, "trailing bytes") as check:
        buf = bytearray(sample + following)
        frame = codec.decode(buf)
        check.expect(frame is not None, "decode returned None with a whole frame and more in the buffer")
        assert frame is not None
        check.expect(
            buf == following,
            f"after the first frame the buffer holds {len(buf)} bytes, expected the next frame's "
            f"{len(following)} untouched (did decode consume too much or too little?)",
        )
        wire = encode(check, codec, frame)
        check.expect(wire == sample, f"re-encoding differs: {first_difference(sample, wire)}")
        check.step = "decoding the next frame from what was left"
        decode_whole(check, codec, bytes(buf))


def _new_ids(old: int, mask: int) -> list[int]:
    """Ids to try instead of ``old``: every bit flipped first, then edge values."""
    candidates = (old ^ mask, (old + 1) & mask, mask, 1, 0)
    return [rid for rid in dict.fromkeys(candidates) if rid != old]


def _check_request_id(codec: XCodec, where: str, sample: bytes) -> None:
    with checking(where, "request id") as check:
        bits = codec.id_bits
        mask = (1 << bits) - 1
        width = (bits + 7) // 8
        old = codec.get_request_id(decode_whole(check, codec, sample))
        check.expect(isinstance(old, int) and 0 <= old <= mask, f"get_request_id gave {old!r}")
        for new in _new_ids(old, mask):
            check.step = f"set_request_id({new:#x}) on a frame with id {old:#x}"
            frame = decode_whole(check, codec, sample)
            codec.set_request_id(frame, new)
            got = codec.get_request_id(frame)
            check.expect(got == new, f"get_request_id then gave {got!r}")
            wire = encode(check, codec, frame)
            check.expect(len(wire) == len(sample), f"the frame's length changed to {len(wire)}")
            changed = [offset for offset, (a, b) in enumerate(zip(sample, wire, strict=True)) if a != b]
            check.expect(bool(changed), "the encoding did not change: the new id never reached the wire")
            span = changed[-1] - changed[0] + 1
            check.expect(
                span <= width,
                f"bytes {changed[0]}..{changed[-1]} changed ({span} bytes), but a {bits}-bit id "
                f"may only touch {width} adjacent bytes",
            )
            if new == old ^ mask:
                check.expect(
                    len(changed) == width,
                    f"flipping every id bit changed {len(changed)} bytes, not all {width} id bytes "
                    "(is the id truncated on the wire?)",
                )
            decoded = codec.get_request_id(decode_whole(check, codec, wire))
            check.expect(decoded == new, f"decoding the new bytes gave id {decoded!r}")
            codec.set_request_id(frame, old)
            restored = encode(check, codec, frame)
            check.expect(
                restored == sample,
                f"setting the old id back did not restore the sample: {first_difference(sample, restored)}",
            )
