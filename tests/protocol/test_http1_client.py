"""Http1ClientCodec: writing requests and parsing responses (h11's ``tr()`` triad per sample)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import (
    Body,
    BodyFraming,
    EndOfMessage,
    Event,
    Http1ClientCodec,
    Http1ConnectionClosed,
    Http1Error,
    RequestHead,
    ResponseHead,
    _encode,
)

GET = RequestHead("GET", "/", HeaderMap([("host", "h")]))
HEAD_REQ = RequestHead("HEAD", "/", HeaderMap([("host", "h")]))
NEXT = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
NEXT_EVENTS: list[tuple[Any, ...]] = [
    ("head", 200, "OK", "1.1", [("content-length", "4")], BodyFraming.LENGTH, 4, True),
    ("data", b"next"),
    ("end", None),
]


def norm(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, with consecutive Body pieces joined."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, ResponseHead):
            out.append(
                (
                    "head",
                    e.status,
                    e.reason,
                    e.version,
                    e.headers.items_all(),
                    e.framing,
                    e.content_length,
                    e.keep_alive,
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


def waiting(*requests: RequestHead) -> Http1ClientCodec:
    """A client codec that sent ``requests`` (GET by default) and waits for responses."""
    codec = Http1ClientCodec()
    for r in requests or (GET,):
        codec.encode_request_head(r, BodyFraming.NONE)
    return codec


def tr(
    data: bytes, expected: list[tuple[Any, ...]], *, request: RequestHead = GET, eof: bool = False
) -> None:
    """h11's triad for responses: whole; byte by byte; with the next response following.

    ``eof``: the body is close-delimited, so EOF is fed to finish it and nothing may follow.
    """

    def finish(codec: Http1ClientCodec, events: list[Event]) -> list[Event]:
        return events + (codec.receive_data(b"") if eof else [])

    codec = waiting(request)
    assert norm(finish(codec, codec.receive_data(data))) == expected

    codec = waiting(request)
    events: list[Event] = []
    seen_head_at = None
    for i in range(len(data)):
        got = codec.receive_data(data[i : i + 1])
        if any(isinstance(e, ResponseHead) for e in got):
            assert seen_head_at is None
            seen_head_at = i
        events += got
    assert norm(finish(codec, events)) == expected
    # The final head shows up exactly with its own last byte (interim heads come first).
    start = 0
    while data.startswith(b"HTTP/1.1 1", start) and not data.startswith(b"HTTP/1.1 101", start):
        start = data.index(b"\r\n\r\n", start) + 4
    assert seen_head_at == data.index(b"\r\n\r\n", start) + 3

    if eof:
        return
    codec = waiting(request, GET)
    assert norm(codec.receive_data(data + NEXT)) == expected + NEXT_EVENTS
    codec = waiting(request, GET)
    assert norm(codec.receive_data(data + NEXT[:7])) == expected
    assert norm(codec.receive_data(NEXT[7:])) == NEXT_EVENTS


def head(
    status: int,
    reason: str,
    items: list[tuple[str, str]],
    framing: BodyFraming = BodyFraming.NONE,
    content_length: int | None = None,
    *,
    version: str = "1.1",
    keep_alive: bool = True,
) -> tuple[Any, ...]:
    return ("head", status, reason, version, items, framing, content_length, keep_alive)


SAMPLES: list[tuple[str, bytes, list[tuple[Any, ...]]]] = [
    (
        "Content-Length",
        b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello",
        [
            head(200, "OK", [("server", "x"), ("content-length", "5")], BodyFraming.LENGTH, 5),
            ("data", b"hello"),
            ("end", None),
        ],
    ),
    (
        "chunked with trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nGrpc-Status: 0\r\n\r\n",
        [head(200, "OK", [], BodyFraming.CHUNKED), ("data", b"abcde"), ("end", [("grpc-status", "0")])],
    ),
    (
        "empty reason and repeated fields",
        b"HTTP/1.1 404 \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        [
            head(
                404,
                "",
                [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("content-length", "0")],
                BodyFraming.LENGTH,
                0,
            ),
            ("end", None),
        ],
    ),
    (
        "interim 100 and 103 are consumed",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        [
            head(201, "Created", [("content-length", "2")], BodyFraming.LENGTH, 2),
            ("data", b"ok"),
            ("end", None),
        ],
    ),
    (
        "204 has no body",
        b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
        [head(204, "No Content", [("x", "y")]), ("end", None)],
    ),
    (
        "304 with Content-Length has no body",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
        [head(304, "Not Modified", [("content-length", "100")], content_length=100), ("end", None)],
    ),
    (
        "HTTP/1.0 keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
        [
            head(200, "OK", [("content-length", "1")], BodyFraming.LENGTH, 1, version="1.0"),
            ("data", b"x"),
            ("end", None),
        ],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_triad(data: bytes, expected: list[tuple[Any, ...]]) -> None:
    tr(data, expected)


def test_triad_head_response_has_no_body() -> None:
    for data in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        expected = norm(waiting(HEAD_REQ).receive_data(data))
        assert expected[0][5] is BodyFraming.NONE and expected[1:] == [("end", None)]
        tr(data, expected, request=HEAD_REQ)
    (h, _) = waiting(HEAD_REQ).receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(h, ResponseHead) and h.content_length == 10


def test_triad_close_delimited_body() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    expected = [
        head(200, "OK", [("content-type", "text/plain")], BodyFraming.CLOSE, keep_alive=False),
        ("data", b"until the end"),
        ("end", None),
    ]
    tr(data, expected, eof=True)
    codec = waiting()
    codec.receive_data(data)
    assert norm(codec.receive_data(NEXT)) == [("data", NEXT)]  # it is all body
    assert norm(codec.receive_data(b"")) == [("end", None)]


def test_not_keep_alive_ignores_what_follows() -> None:
    codec = waiting(GET, GET)
    events = codec.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx" + NEXT)
    assert norm(events)[0][7] is False and len(events) == 3
    assert not reusable(codec)
    assert codec.receive_data(b"") == []


def reusable(codec: Http1ClientCodec) -> bool:
    """(A function, so that mypy does not narrow the property between calls.)"""
    return codec.reusable


def test_reusable_and_reset() -> None:
    codec = waiting()
    assert not reusable(codec)
    codec.receive_data(NEXT[:10])
    codec.encode_request_head(GET, BodyFraming.NONE)
    codec.receive_data(NEXT[10:] + NEXT)
    assert reusable(codec)
    codec.encode_request_head(GET, BodyFraming.NONE)
    codec.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart")
    assert not reusable(codec)
    codec.reset()
    assert reusable(codec)
    with pytest.raises(Http1Error):
        codec.receive_data(NEXT)  # nothing outstanding after reset
    codec.reset()
    codec.encode_request_head(GET, BodyFraming.NONE)
    assert norm(codec.receive_data(NEXT)) == NEXT_EVENTS


# -- refusals -------------------------------------------------------------------------

BAD: list[tuple[str, bytes]] = [
    ("garbage", b"\x00\x01\x02 garbage"),
    ("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n"),
    ("bad status", b"HTTP/1.1 2000 OK\r\n\r\n"),
    ("status below 100", b"HTTP/1.1 099 Odd\r\n\r\n"),
    ("HTTP/2.0", b"HTTP/2.0 200 OK\r\n\r\n"),
    ("CL and TE", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("conflicting CL", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    ("gzip transfer coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
    ("gzip, chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    ("bad header name", b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
    ("bad chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("101 upgrade", b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
]


@pytest.mark.parametrize("data", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_refused_with_502(data: bytes) -> None:
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        codec = waiting()
        with pytest.raises(Http1Error) as info:
            for piece in pieces:
                codec.receive_data(piece)
            codec.receive_data(b"")
        assert info.value.status == 502
        assert not isinstance(info.value, Http1ConnectionClosed)


def test_response_without_request() -> None:
    with pytest.raises(Http1Error) as info:
        Http1ClientCodec().receive_data(b"H")
    assert info.value.status == 502
    codec = waiting()
    with pytest.raises(Http1Error):
        codec.receive_data(NEXT + NEXT)  # the first is delivered, the second is refused
        codec.receive_data(b"")


def test_oversized_response_head() -> None:
    codec = Http1ClientCodec(max_header_size=100)
    codec.encode_request_head(GET, BodyFraming.NONE)
    with pytest.raises(Http1Error) as info:
        codec.receive_data(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100)
    assert info.value.status == 502


# -- EOF ------------------------------------------------------------------------------


def test_eof_before_any_response_byte_is_retryable() -> None:
    with pytest.raises(Http1ConnectionClosed) as info:
        waiting().receive_data(b"")
    assert info.value.status == 502 and info.value.before_response
    assert Http1ClientCodec().receive_data(b"") == []  # nothing outstanding: clean


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_eof_mid_response(partial: bytes) -> None:
    codec = waiting()
    codec.receive_data(partial)
    with pytest.raises(Http1ConnectionClosed) as info:
        codec.receive_data(b"")
    assert info.value.status == 502 and not info.value.before_response
    with pytest.raises(Http1ConnectionClosed):
        codec.receive_data(b"")


# -- writing requests ----------------------------------------------------------------


def test_encode_request() -> None:
    codec = Http1ClientCodec()
    h = RequestHead(
        "POST", "/p?q=1", HeaderMap([("Host", "up"), ("Expect", "100-continue")]), content_length=3
    )
    out = codec.encode_request_head(h, BodyFraming.LENGTH)
    assert out == b"POST /p?q=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 3\r\n\r\n"
    assert codec.encode_body(b"abc", BodyFraming.LENGTH) == b"abc"
    assert codec.encode_end(BodyFraming.LENGTH) == b""
    out = codec.encode_request_head(h, BodyFraming.CHUNKED)
    assert out == b"POST /p?q=1 HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n"
    assert codec.encode_body(b"abc", BodyFraming.CHUNKED) == b"3\r\nabc\r\n"
    assert codec.encode_end(BodyFraming.CHUNKED, HeaderMap([("x", "1")])) == b"0\r\nx: 1\r\n\r\n"


def test_encode_request_refusals() -> None:
    codec = Http1ClientCodec()
    for method, target in (("GET", "/a b"), ("GET", ""), ("G T", "/"), ("GET", "/\r\nX: y")):
        with pytest.raises(Http1Error) as info:
            codec.encode_request_head(RequestHead(method, target, HeaderMap()), BodyFraming.NONE)
        assert info.value.status == 500
    with pytest.raises(Http1Error):
        codec.encode_request_head(GET, BodyFraming.CLOSE)
    with pytest.raises(Http1Error):
        codec.encode_request_head(
            RequestHead("POST", "/", HeaderMap()), BodyFraming.LENGTH
        )  # no length known
    assert reusable(codec)  # nothing was recorded as sent


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.sampled_from(["GET", "POST", "DELETE", "PATCH", "M-SEARCH", "G T", "", "get"]),
    st.text(st.characters(max_codepoint=0x17F), max_size=12) | st.sampled_from(["/", "/a?b=c", "*", "/\x7f"]),
)
def test_request_line_fast_path_agrees_with_the_pattern(method: str, target: str) -> None:
    # The common-method shortcut accepts exactly what the full pattern accepts.
    line = f"{method} {target} HTTP/1.1\r\n"
    if _encode._REQUEST_LINE_RE.fullmatch(line):
        assert _encode.request_line(method, target) == line.encode("ascii")
    else:
        with pytest.raises(Http1Error):
            _encode.request_line(method, target)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(["1.0", "1.1"]),
    st.integers(200, 999),
    st.text(st.sampled_from("abc XYZ\t-\u00e9"), max_size=8),
)
def test_status_line_fields(version: str, status: int, reason: str) -> None:
    codec = Http1ClientCodec()
    codec.encode_request_head(GET, BodyFraming.NONE)
    line = f"HTTP/{version} {status}" + (f" {reason}" if reason else "")
    [head, *_] = codec.receive_data(f"{line}\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))
    assert isinstance(head, ResponseHead)
    assert (head.status, head.version, head.reason) == (status, version, reason)


def test_expect_is_not_forwarded_from_raw() -> None:
    from mosnpy.protocol.http1 import Http1ServerCodec

    server = Http1ServerCodec()
    (req, *_) = server.receive_data(
        b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert isinstance(req, RequestHead) and req.expect_continue
    assert req.headers.raw is not None
    out = Http1ClientCodec().encode_request_head(req, req.framing)
    assert out == b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"


def test_parsed_response_forwards_unchanged_until_edited() -> None:
    """Raw fast path: the received head minus its hop-by-hop lines, then copy on write."""
    from mosnpy.protocol.http1 import Http1ServerCodec

    received = (
        b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
        b"X-Hop: 1\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\nbody"
    )
    (h, body, _) = waiting().receive_data(received)
    assert isinstance(h, ResponseHead) and isinstance(body, Body)
    assert h.headers.raw == b"Server: up\r\nContent-Type: text/html\r\nContent-Length: 4\r\n"

    server = Http1ServerCodec()
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    out = server.encode_response_head(h, h.framing) + server.encode_body(body.data, h.framing)
    assert out == b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\nbody"

    h.headers["server"] = "mosnpy"
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    out = server.encode_response_head(h, h.framing)
    assert out == b"HTTP/1.1 200 OK\r\nserver: mosnpy\r\ncontent-type: text/html\r\ncontent-length: 4\r\n\r\n"
    # Re-framed as chunked (e.g. a filter will rewrite the body): content-length goes.
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    out = server.encode_response_head(h, BodyFraming.CHUNKED)
    assert out == (
        b"HTTP/1.1 200 OK\r\nserver: mosnpy\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n"
    )
