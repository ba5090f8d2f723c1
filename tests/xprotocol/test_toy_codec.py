"""The toy example plugin passes the conformance kit a plugin author would run."""

from __future__ import annotations

from mosnpy_toy.codec import ToyCodec, ToyFrame

from mosnpy.testing import check_xcodec


def test_toy_codec_conforms() -> None:
    codec = ToyCodec()
    samples = [
        codec.encode(ToyFrame(0, 7, {"service": "echo.Service", "method": "echo"}, b"hello", timeout_ms=300)),
        codec.encode(ToyFrame(2, 7, {"served-by": "provider"}, b"hello")),
        codec.encode(ToyFrame(1, 9, {"service": "echo.Service"}, b"oneway")),
        codec.encode(codec.trigger(11)),
    ]
    check_xcodec(codec, samples)
