"""HTTP/1 protocol detection and the ``Http1`` protocol descriptor."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from importlib.metadata import entry_points

import pytest

from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.http1 import HTTP1, Http1ClientCodec, Http1ServerCodec, match_http1
from mosnpy.protocol.http1.matcher import METHODS
from mosnpy.protocol.matcher import Matcher, MatchResult, select

MATCH, AGAIN, FAILED = MatchResult.MATCH, MatchResult.AGAIN, MatchResult.FAILED


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (b"GET / HTTP/1.1\r\n", MATCH),
        (b"GET ", MATCH),
        (b"OPTIONS * HTTP/1.1", MATCH),
        (b"M-SEARCH * HTTP/1.1", MATCH),
        (b"UNSUBSCRIBE /x HTTP/1.1", MATCH),
        (b"", AGAIN),
        (b"G", AGAIN),
        (b"GE", AGAIN),
        (b"GET", AGAIN),
        (b"OPTION", AGAIN),
        (b"PROPPAT", AGAIN),
        (b"get / HTTP/1.1", FAILED),
        (b"GETX / HTTP/1.1", FAILED),
        (b"BREW / HTTP/1.1", FAILED),
        (b"GET/ HTTP/1.1", FAILED),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", FAILED),  # the HTTP/2 preface is not ours
        (b"\x16\x03\x01\x02\x00", FAILED),  # TLS ClientHello
        (b"\x01\x01\x00\x01", FAILED),  # bolt
        (b"\xda\xbb\xc2\x00", FAILED),  # dubbo
        (b"UNSUBSCRIBEX", FAILED),
    ],
)
def test_match_http1(data: bytes, result: MatchResult) -> None:
    assert match_http1(data) is result


def test_every_method_matches_and_every_prefix_waits() -> None:
    for method in METHODS:
        assert match_http1(method + b" /") is MATCH
        for i in range(1, len(method) + 1):
            assert match_http1(method[:i]) is AGAIN


def test_select_with_other_protocols() -> None:
    def h2(data: bytes) -> MatchResult:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        if data.startswith(preface):
            return MATCH
        return AGAIN if preface.startswith(data) else FAILED

    candidates: list[tuple[str, Matcher]] = [("Http1", match_http1), ("Http2", h2)]
    assert select(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", candidates) == (MATCH, "Http2")
    assert select(b"POST /x HTTP/1.1", candidates) == (MATCH, "Http1")
    assert select(b"P", candidates) == (AGAIN, None)


def test_descriptor() -> None:
    assert isinstance(HTTP1, ProtocolDescriptor)
    assert HTTP1.name == "Http1"
    assert HTTP1.matcher is match_http1
    server = HTTP1.server_codec(max_header_size=100)
    assert isinstance(server, Http1ServerCodec)
    assert isinstance(HTTP1.client_codec(), Http1ClientCodec)
    with pytest.raises(ValueError, match=r"unknown key\(s\) max_header_sise \(known: max_header_size\)"):
        HTTP1.server_codec(max_header_sise=100)
    with pytest.raises(FrozenInstanceError):
        HTTP1.name = "x"  # type: ignore[misc]


def test_entry_point_loads_the_descriptor() -> None:
    found = [ep for ep in entry_points(group="mosnpy.protocols") if ep.name == "Http1"]
    assert found, "install mosnpy (pip install -e .) for its entry points"
    assert found[0].load() is HTTP1
