"""Http1ServerCodec: parsing requests (h11's ``tr()`` triad per sample) and writing responses."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import (
    Body,
    BodyFraming,
    EndOfMessage,
    Event,
    Http1ConnectionClosed,
    Http1Error,
    Http1ServerCodec,
    RequestHead,
    ResponseHead,
)

NEXT = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n"
NEXT_EVENTS: list[tuple[Any, ...]] = [
    ("head", "GET", "/next", "1.1", [("host", "n")], BodyFraming.NONE, None, True, False),
    ("end", None),
]


def norm(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, with consecutive Body pieces joined."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, RequestHead):
            out.append(
                (
                    "head",
                    e.method,
                    e.target,
                    e.version,
                    e.headers.items_all(),
                    e.framing,
                    e.content_length,
                    e.keep_alive,
                    e.expect_continue,
                )
            )
        elif isinstance(e, Body):
            assert e.data, "empty Body events are never emitted"
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + e.data)
            else:
                out.append(("data", e.data))
        elif isinstance(e, EndOfMessage):
            out.append(("end", None if e.trailers is None else e.trailers.items_all()))
        else:
            raise AssertionError(f"unexpected event {e!r}")
    return out


def tr(data: bytes, expected: list[tuple[Any, ...]], *, followed: bool = True) -> None:
    """h11's triad: whole; byte by byte (no head before its last byte); with trailing bytes."""
    # 1. Whole.
    assert norm(Http1ServerCodec().receive_data(data)) == expected

    # 2. One byte at a time: the head appears exactly with the last byte of the head.
    codec = Http1ServerCodec()
    head_end = data.index(b"\r\n\r\n", len(data) - len(data.lstrip(b"\r\n"))) + 4
    events: list[Event] = []
    for i in range(len(data)):
        got = codec.receive_data(data[i : i + 1])
        has_head = any(isinstance(e, RequestHead) for e in got)
        assert has_head == (i == head_end - 1), f"head reported at byte {i}, head ends at {head_end}"
        events += got
    assert norm(events) == expected

    if not followed:
        return
    # 3. With the next pipelined request in the same data, and with only part of it.
    assert norm(Http1ServerCodec().receive_data(data + NEXT)) == expected + NEXT_EVENTS
    codec = Http1ServerCodec()
    assert norm(codec.receive_data(data + NEXT[:10])) == expected
    assert norm(codec.receive_data(NEXT[10:])) == NEXT_EVENTS


def head(
    method: str,
    target: str,
    items: list[tuple[str, str]],
    framing: BodyFraming = BodyFraming.NONE,
    content_length: int | None = None,
    *,
    version: str = "1.1",
    keep_alive: bool = True,
    expect_continue: bool = False,
) -> tuple[Any, ...]:
    return ("head", method, target, version, items, framing, content_length, keep_alive, expect_continue)


# -- the triad over samples --------------------------------------------------------------

SAMPLES: list[tuple[str, bytes, list[tuple[Any, ...]]]] = [
    (
        "simple GET",
        b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        [head("GET", "/a?b=1", [("host", "example.com"), ("accept", "*/*")]), ("end", None)],
    ),
    (
        "header case, OWS and repeats",
        b"GET / HTTP/1.1\r\nHOST: h\r\nX-A:  1 \r\nx-a:\t2\r\nEmpty:\r\n\r\n",
        [head("GET", "/", [("host", "h"), ("x-a", "1"), ("x-a", "2"), ("empty", "")]), ("end", None)],
    ),
    (
        "Content-Length body",
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        [
            head("POST", "/up", [("host", "h"), ("content-length", "11")], BodyFraming.LENGTH, 11),
            ("data", b"hello world"),
            ("end", None),
        ],
    ),
    (
        "Content-Length: 0",
        b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        [head("POST", "/", [("content-length", "0")], BodyFraming.LENGTH, 0), ("end", None)],
    ),
    (
        "chunked with extension and trailers",
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5;name=val\r\nhello\r\n1\r\n \r\n05\r\nworld\r\n0\r\nX-Sum: abc\r\n\r\n",
        [
            head("PUT", "/c", [], BodyFraming.CHUNKED),
            ("data", b"hello world"),
            ("end", [("x-sum", "abc")]),
        ],
    ),
    (
        "chunked without trailers",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        [head("POST", "/", [], BodyFraming.CHUNKED), ("data", b"0123456789"), ("end", None)],
    ),
    (
        "hop-by-hop fields are removed, Connection-named too (TE kept only as 'trailers')",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\n"
        b"TE: trailers\r\nProxy-Connection: x\r\nUpgrade: foo\r\nX-Keep: 2\r\n\r\n",
        [head("GET", "/", [("host", "h"), ("te", "trailers"), ("x-keep", "2")]), ("end", None)],
    ),
    (
        "TE other than trailers is dropped",
        b"GET / HTTP/1.1\r\nHost: h\r\nTE: gzip, deflate\r\nConnection: TE\r\nX-Keep: 2\r\n\r\n",
        [head("GET", "/", [("host", "h"), ("x-keep", "2")]), ("end", None)],
    ),
    (
        "HTTP/1.0 with keep-alive",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        [head("GET", "/", [], version="1.0"), ("end", None)],
    ),
    (
        "Expect: 100-continue",
        b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok",
        [
            head(
                "POST",
                "/",
                [("expect", "100-Continue"), ("content-length", "2")],
                BodyFraming.LENGTH,
                2,
                expect_continue=True,
            ),
            ("data", b"ok"),
            ("end", None),
        ],
    ),
    (
        "leading blank lines are ignored",
        b"\r\n\r\nHEAD /x HTTP/1.1\r\n\r\n",
        [head("HEAD", "/x", []), ("end", None)],
    ),
    (
        "absolute-form target and obs-text value",
        b"OPTIONS http://a.b/c HTTP/1.1\r\nX-Latin: caf\xe9\r\n\r\n",
        [head("OPTIONS", "http://a.b/c", [("x-latin", "caf\xe9")]), ("end", None)],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_triad(data: bytes, expected: list[tuple[Any, ...]]) -> None:
    tr(data, expected)


def test_triad_without_keep_alive_ignores_what_follows() -> None:
    for data in (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
        expected = norm(Http1ServerCodec().receive_data(data))
        assert expected[0][7] is False  # keep_alive
        tr(data, expected, followed=False)
        codec = Http1ServerCodec()
        assert norm(codec.receive_data(data + NEXT)) == expected  # NEXT ignored: we will close
        assert codec.receive_data(b"more") == []
        assert codec.receive_data(b"") == []


def test_pipelined_requests_in_one_call() -> None:
    data = (
        b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(5))
        + b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    )
    events = Http1ServerCodec().receive_data(data)
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == ["/0", "/1", "/2", "/3", "/4", "/p"]
    assert sum(isinstance(e, EndOfMessage) for e in events) == 6


def test_body_is_streamed_not_buffered() -> None:
    codec = Http1ServerCodec()
    events = codec.receive_data(b"PUT / HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\nfirst")
    assert norm(events)[1:] == [("data", b"first")]
    piece = b"x" * 65536
    for _ in range(3):
        (body,) = codec.receive_data(piece)
        assert isinstance(body, Body) and body.data == piece
    codec = Http1ServerCodec()
    codec.receive_data(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40000000\r\n")
    (body,) = codec.receive_data(piece)
    assert isinstance(body, Body) and body.data == piece


def test_raw_is_the_kept_wire_lines() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\n\r\n"
    (h, _) = Http1ServerCodec().receive_data(data)
    assert isinstance(h, RequestHead)
    assert h.headers.raw == b"Host: h\r\nX-A:  1 \r\n"
    data = b"GET / HTTP/1.1\r\nConnection: x-b\r\nHost: h\r\nX-B: 2\r\nExpect: 100-continue\r\nX-A: 1\r\n\r\n"
    (h, _) = Http1ServerCodec().receive_data(data)
    assert isinstance(h, RequestHead)
    assert h.headers.raw == b"Host: h\r\nX-A: 1\r\n"  # Connection, X-B and Expect cut out
    assert h.headers.items_all() == [("host", "h"), ("expect", "100-continue"), ("x-a", "1")]


# -- refusals -------------------------------------------------------------------------

BAD: list[tuple[str, bytes, int]] = [
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("lower-case method", b"get / HTTP/1.1\r\n\r\n", 400),
    ("unknown method", b"BREW /pot HTTP/1.1\r\n\r\n", 400),
    ("two spaces in request line", b"GET  / HTTP/1.1\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\n\r\n", 400),
    ("control char in target", b"GET /\x7f HTTP/1.1\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    ("space in header name", b"GET / HTTP/1.1\r\nX Y: h\r\n\r\n", 400),
    ("empty header name", b"GET / HTTP/1.1\r\n: h\r\n\r\n", 400),
    ("header line without colon", b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
    ("non-token header name", b"GET / HTTP/1.1\r\nX(Y): h\r\n\r\n", 400),
    ("control char in value", b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
    ("CL and TE", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE and CL", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    ("conflicting CL", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    ("repeated CL", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("CL list", b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("signed CL", b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("TE not chunked last", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("TE chunked twice", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("TE gzip, chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("repeated Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad chunk size", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
    ("0x chunk size", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n", 400),
    ("chunk overflow", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400),
    ("chunk data too long", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n\r\n", 505),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", 505),
    ("HTTP/0.9", b"GET /\r\n\r\n", 505),
    ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
    ("websocket upgrade", b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 501),
    ("unknown expectation", b"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417),
]


@pytest.mark.parametrize(("data", "status"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refused(data: bytes, status: int) -> None:
    """Refused whole and byte by byte (an error after a complete head comes on the next call)."""
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        codec = Http1ServerCodec()
        with pytest.raises(Http1Error) as info:
            for piece in pieces:
                codec.receive_data(piece)
            codec.receive_data(b"")
        assert info.value.status == status
        assert not isinstance(info.value, Http1ConnectionClosed)


@pytest.mark.parametrize("seed", range(5))
def test_a_long_run_of_random_bytes_is_a_bad_request_not_an_oversized_head(seed: int) -> None:
    """100 kB that are not HTTP at all: 400 (llhttp refuses them), in one piece or in
    8 kB pieces, never 431 (which would say a legitimate head was merely too big)."""
    data = random.Random(seed).randbytes(100_000)
    for size in (len(data), 8192):
        codec = Http1ServerCodec()
        with pytest.raises(Http1Error) as info:
            for i in range(0, len(data), size):
                codec.receive_data(data[i : i + size])
        assert info.value.status == 400


def test_codec_is_dead_after_an_error() -> None:
    codec = Http1ServerCodec()
    with pytest.raises(Http1Error) as first:
        codec.receive_data(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    with pytest.raises(Http1Error) as second:
        codec.receive_data(NEXT)
    assert second.value is first.value


def test_error_after_complete_requests_is_raised_by_the_next_call() -> None:
    codec = Http1ServerCodec()
    events = codec.receive_data(NEXT + NEXT + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert norm(events) == NEXT_EVENTS + NEXT_EVENTS
    with pytest.raises(Http1Error) as info:
        codec.receive_data(b"")
    assert info.value.status == 400


def test_garbage_is_refused_before_the_head_is_complete() -> None:
    codec = Http1ServerCodec()
    with pytest.raises(Http1Error) as info:
        codec.receive_data(b"GET / HTTP/1.1\r\nBad Name")
    assert info.value.status == 400


def test_h2c_upgrade_offer_is_ignored() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    tr(data, [head("GET", "/", [("host", "h")]), ("end", None)])
    with pytest.raises(Http1Error) as info:
        Http1ServerCodec().receive_data(data.replace(b"GET", b"POST")[:-2] + b"Content-Length: 1\r\n\r\nx")
    assert info.value.status == 501


# -- limits ---------------------------------------------------------------------------


def test_header_block_limit_is_inclusive() -> None:
    base = b"GET / HTTP/1.1\r\nX: \r\n\r\n"
    fits = base.replace(b"X: ", b"X: " + b"a" * (100 - len(base)))
    assert len(fits) == 100
    assert norm(Http1ServerCodec(max_header_size=100).receive_data(fits))[0][4] == [
        ("x", "a" * (100 - len(base)))
    ]
    with pytest.raises(Http1Error) as info:
        Http1ServerCodec(max_header_size=99).receive_data(fits)
    assert info.value.status == 431


def test_431_as_soon_as_the_limit_is_exceeded() -> None:
    codec = Http1ServerCodec(max_header_size=1000)
    codec.receive_data(b"GET / HTTP/1.1\r\nX-Big: ")
    codec.receive_data(b"a" * 900)
    with pytest.raises(Http1Error) as info:
        codec.receive_data(b"a" * 200)  # no end of head in sight: refuse now
    assert info.value.status == 431
    # Byte by byte, refused with the byte that makes the partial head reach the limit.
    codec = Http1ServerCodec(max_header_size=64)
    data = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100
    with pytest.raises(Http1Error) as info:
        for i in range(len(data)):
            codec.receive_data(data[i : i + 1])
    assert info.value.status == 431
    assert i == 63


def test_414_for_a_request_line_over_the_limit() -> None:
    with pytest.raises(Http1Error) as info:
        Http1ServerCodec(max_header_size=100).receive_data(b"GET /" + b"a" * 200)
    assert info.value.status == 414


def test_trailers_are_limited_too() -> None:
    codec = Http1ServerCodec(max_header_size=100)
    codec.receive_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    with pytest.raises(Http1Error) as info:
        codec.receive_data(b"X-T: " + b"a" * 200)
    assert info.value.status == 431


# -- EOF ------------------------------------------------------------------------------


def test_clean_eof() -> None:
    codec = Http1ServerCodec()
    assert codec.receive_data(b"") == []
    codec = Http1ServerCodec()
    codec.receive_data(NEXT + b"\r\n")
    assert codec.receive_data(b"") == []


@pytest.mark.parametrize(
    "partial",
    [
        b"GET / HTTP/1.1\r\nHost",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    ],
)
def test_eof_mid_request(partial: bytes) -> None:
    codec = Http1ServerCodec()
    codec.receive_data(partial)
    with pytest.raises(Http1ConnectionClosed) as info:
        codec.receive_data(b"")
    assert info.value.status == 400


# -- writing responses ---------------------------------------------------------------


def served(request: bytes = NEXT) -> Http1ServerCodec:
    """A codec that has read ``request`` and owes its response."""
    codec = Http1ServerCodec()
    codec.receive_data(request)
    return codec


def test_encode_length_response() -> None:
    codec = served()
    h = ResponseHead(200, HeaderMap([("Content-Type", "text/plain")]), content_length=5)
    data = codec.encode_response_head(h, BodyFraming.LENGTH)
    data += codec.encode_body(b"hello", BodyFraming.LENGTH) + codec.encode_end(BodyFraming.LENGTH)
    assert data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    assert not codec.must_close


def test_encode_does_not_duplicate_content_length() -> None:
    h = ResponseHead(404, HeaderMap([("content-length", "3"), ("x", "y")]), reason="Nope", content_length=3)
    assert served().encode_response_head(h, BodyFraming.LENGTH) == (
        b"HTTP/1.1 404 Nope\r\ncontent-length: 3\r\nx: y\r\n\r\n"
    )
    # A map value that disagrees with content_length is replaced, not repeated.
    h.content_length = 7
    assert served().encode_response_head(h, BodyFraming.LENGTH) == (
        b"HTTP/1.1 404 Nope\r\nx: y\r\ncontent-length: 7\r\n\r\n"
    )


def test_encode_chunked_response_with_trailers() -> None:
    codec = served()
    h = ResponseHead(200, HeaderMap([("content-length", "3"), ("x", "y")]))
    out = codec.encode_response_head(h, BodyFraming.CHUNKED)
    assert out == b"HTTP/1.1 200 OK\r\nx: y\r\ntransfer-encoding: chunked\r\n\r\n"
    assert codec.encode_body(b"", BodyFraming.CHUNKED) == b""
    assert codec.encode_body(b"hello world!", BodyFraming.CHUNKED) == b"c\r\nhello world!\r\n"
    assert codec.encode_end(BodyFraming.CHUNKED, HeaderMap([("x-sum", "1")])) == b"0\r\nx-sum: 1\r\n\r\n"
    codec = served()
    codec.encode_response_head(h, BodyFraming.CHUNKED)
    assert codec.encode_end(BodyFraming.CHUNKED) == b"0\r\n\r\n"


def test_encode_close_and_not_keep_alive() -> None:
    codec = served()
    h = ResponseHead(200, HeaderMap())
    assert codec.encode_response_head(h, BodyFraming.CLOSE) == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
    assert codec.must_close
    assert codec.encode_body(b"abc", BodyFraming.CLOSE) == b"abc"
    codec = served()
    assert codec.encode_response_head(h, BodyFraming.NONE, keep_alive=False) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    assert codec.must_close
    assert codec.encode_body(b"abc", BodyFraming.NONE) == b""
    # CLOSE leaves out a content-length the map may carry.
    codec = served()
    h = ResponseHead(200, HeaderMap([("content-length", "10"), ("x", "y")]))
    assert (
        codec.encode_response_head(h, BodyFraming.CLOSE)
        == b"HTTP/1.1 200 OK\r\nx: y\r\nconnection: close\r\n\r\n"
    )


def test_response_follows_what_the_request_asked() -> None:
    h = ResponseHead(200, HeaderMap(), content_length=2)
    # HTTP/1.1 + Connection: close -> close.
    codec = served(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert codec.encode_response_head(h, BodyFraming.LENGTH).endswith(b"connection: close\r\n\r\n")
    assert codec.must_close
    # HTTP/1.0 keep-alive -> says keep-alive explicitly.
    codec = served(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert codec.encode_response_head(h, BodyFraming.LENGTH) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
    )
    # HTTP/1.0 cannot read chunked: the body is close-delimited instead.
    codec = served(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert codec.encode_response_head(ResponseHead(200, HeaderMap()), BodyFraming.CHUNKED) == (
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
    )
    assert codec.must_close
    assert codec.encode_body(b"abc", BodyFraming.CHUNKED) == b"abc"
    assert codec.encode_end(BodyFraming.CHUNKED) == b""


def test_no_body_for_head_requests_204_and_304() -> None:
    codec = served(b"HEAD / HTTP/1.1\r\n\r\n")
    h = ResponseHead(200, HeaderMap([("content-length", "10")]), content_length=10)
    assert (
        codec.encode_response_head(h, BodyFraming.LENGTH) == b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    )
    assert codec.encode_body(b"0123456789", BodyFraming.LENGTH) == b""
    assert codec.encode_end(BodyFraming.LENGTH) == b""
    codec = served(b"HEAD / HTTP/1.1\r\n\r\n")
    codec.encode_response_head(ResponseHead(200, HeaderMap()), BodyFraming.CHUNKED)
    assert codec.encode_body(b"x", BodyFraming.CHUNKED) == b""
    assert codec.encode_end(BodyFraming.CHUNKED) == b""
    for status in (204, 304):
        codec = served()
        out = codec.encode_response_head(ResponseHead(status, HeaderMap()), BodyFraming.CHUNKED)
        assert b"transfer-encoding" not in out
        assert codec.encode_body(b"x", BodyFraming.CHUNKED) == b""


def test_pipelined_responses_match_their_requests() -> None:
    codec = served(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    h = ResponseHead(200, HeaderMap(), content_length=1)
    codec.encode_response_head(h, BodyFraming.LENGTH)
    assert codec.encode_body(b"x", BodyFraming.LENGTH) == b""  # HEAD
    codec.encode_end(BodyFraming.LENGTH)
    assert codec.encode_response_head(h, BodyFraming.LENGTH).endswith(b"connection: close\r\n\r\n")  # 1.0
    assert codec.encode_body(b"x", BodyFraming.LENGTH) == b"x"
    codec.encode_end(BodyFraming.LENGTH)
    assert codec.encode_response_head(h, BodyFraming.LENGTH).endswith(b"content-length: 1\r\n\r\n")  # 1.1


def test_raw_fast_path_and_copy_on_write() -> None:
    """Parsed heads are written from their raw bytes (minus hop-by-hop lines) until edited."""
    request = (
        b"POST /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nX-Mixed-Case: Va L\r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    (req, *_) = Http1ServerCodec().receive_data(request)
    assert isinstance(req, RequestHead)
    from mosnpy.protocol.http1 import Http1ClientCodec

    client = Http1ClientCodec()
    out = client.encode_request_head(req, req.framing)
    assert out == b"POST /x HTTP/1.1\r\nHost: h\r\nX-Mixed-Case: Va L\r\nContent-Length: 2\r\n\r\n"
    req.headers["x-added"] = "1"
    assert req.headers.raw is None
    out = client.encode_request_head(req, req.framing)
    assert out == (
        b"POST /x HTTP/1.1\r\nhost: h\r\nx-mixed-case: Va L\r\ncontent-length: 2\r\nx-added: 1\r\n\r\n"
    )


def test_encode_refuses_injection() -> None:
    for headers in (
        HeaderMap([("x", "a\r\nInjected: 1")]),
        HeaderMap([("x y", "a")]),
        HeaderMap([("x:", "a")]),
        HeaderMap([("x", "\u20ac")]),
        HeaderMap([("", "a")]),
    ):
        with pytest.raises(Http1Error) as info:
            served().encode_response_head(ResponseHead(200, headers), BodyFraming.NONE)
        assert info.value.status == 500
    with pytest.raises(Http1Error):
        served().encode_response_head(ResponseHead(200, HeaderMap(), reason="OK\r\nX: y"), BodyFraming.NONE)
    with pytest.raises(Http1Error):
        served().encode_response_head(ResponseHead(1000, HeaderMap()), BodyFraming.NONE)


def test_status_lines() -> None:
    def line(status: int, reason: str = "") -> bytes:
        out = served().encode_response_head(
            ResponseHead(status, HeaderMap(), reason=reason), BodyFraming.NONE
        )
        return out.split(b"\r\n", 1)[0]

    assert line(200) == b"HTTP/1.1 200 OK"
    assert line(200, "Fine") == b"HTTP/1.1 200 Fine"
    assert line(599) == b"HTTP/1.1 599 "
    assert line(103) == b"HTTP/1.1 103 Early Hints"


def test_continue_and_error_responses() -> None:
    codec = Http1ServerCodec()
    assert codec.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    out = codec.error_response(431, "header block too large")
    assert out == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 22\r\nconnection: close\r\n\r\nheader block too large"
    )
    assert codec.must_close
    codec = served(b"HEAD / HTTP/1.1\r\n\r\n")
    assert codec.error_response(502, "bad gateway").endswith(b"connection: close\r\n\r\n")
