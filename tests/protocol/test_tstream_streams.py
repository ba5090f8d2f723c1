"""tstream stream connections (the ``mosnpy_toy`` plugin's own protocol family), sans-I/O.

Bytes in → neutral events; commands → bytes, checked against frames written out by
hand here (``frame`` below), so the plugin's encoder and decoder are never only
checked against each other.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mosnpy_toy.tstream import (
    DESCRIPTOR,
    MAX_PAYLOAD,
    TStreamClientConnection,
    TStreamHeaders,
    TStreamServerConnection,
)

from mosnpy.protocol.api import (
    ClientStreamConnection,
    ConnectionTerminated,
    DataReceived,
    PoolMode,
    ProtocolConversionError,
    RequestHeaders,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    ServerStreamConnection,
    StreamEvent,
    StreamReset,
    TrailersReceived,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.matcher import MatchResult

H, D, T, R = 1, 2, 3, 4
END = 1


def frame(type_: int, sid: int, payload: bytes = b"", *, end: bool = False) -> bytes:
    """One frame, spelled out independently of the plugin's encoder."""
    return struct.pack(">BBII", type_, END if end else 0, sid, len(payload)) + payload


def lines(*pairs: tuple[str, str]) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode()


REQUEST_HEAD = lines((":method", "POST"), (":path", "/echo?x=1"), (":authority", "svc"), ("x-a", "1"))


def server() -> TStreamServerConnection:
    sc = TStreamServerConnection()
    assert sc.dispatch(b"TS") == []
    return sc


def shape(events: list[StreamEvent]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, RequestReceived):
            out.append(("req", e.stream_id, e.method, e.host, e.path, e.headers.items_all(), e.end_stream))
        elif isinstance(e, ResponseReceived):
            out.append(("resp", e.stream_id, e.status, e.headers.items_all(), e.end_stream))
        elif isinstance(e, DataReceived):
            out.append(("data", e.stream_id, e.data, e.end_stream))
        elif isinstance(e, TrailersReceived):
            out.append(("trailers", e.stream_id, e.trailers.items_all()))
        elif isinstance(e, StreamReset):
            out.append(("reset", e.stream_id, e.reason, e.message))
        else:
            assert isinstance(e, ConnectionTerminated)
            out.append(("terminated",))
    return out


def test_descriptor_and_shapes() -> None:
    assert DESCRIPTOR.name == "tstream" and DESCRIPTOR.pool_mode is PoolMode.MULTIPLEX
    assert DESCRIPTOR.server_stream_connection is not None
    assert DESCRIPTOR.client_stream_connection is not None
    assert isinstance(DESCRIPTOR.server_stream_connection(), ServerStreamConnection)
    assert isinstance(DESCRIPTOR.client_stream_connection(), ClientStreamConnection)
    assert DESCRIPTOR.matcher(b"") is MatchResult.AGAIN
    assert DESCRIPTOR.matcher(b"T") is MatchResult.AGAIN
    assert DESCRIPTOR.matcher(b"TS\x01") is MatchResult.MATCH
    assert DESCRIPTOR.matcher(b"GET / HTTP/1.1") is MatchResult.FAILED


REQUEST_BYTES = (
    b"TS"
    + frame(H, 1, REQUEST_HEAD)
    + frame(D, 1, b"hello ")
    + frame(H, 3, lines((":method", "GET"), (":path", "/g"), (":authority", "a")), end=True)
    + frame(D, 1, b"world")
    + frame(T, 1, lines(("x-sum", "abc")), end=True)
)
REQUEST_EVENTS = [
    ("req", 1, "POST", "svc", "/echo?x=1", [("x-a", "1")], False),
    ("data", 1, b"hello ", False),
    ("req", 3, "GET", "a", "/g", [], True),
    ("data", 1, b"world", False),
    ("trailers", 1, [("x-sum", "abc")]),
]


def test_server_requests_with_streamed_bodies_and_trailers_become_events() -> None:
    sc = TStreamServerConnection()
    events = sc.dispatch(REQUEST_BYTES)
    assert shape(events) == REQUEST_EVENTS
    req = events[0]
    assert isinstance(req, RequestReceived)
    # the request line rides on the headers (for forwarding), not in the map
    assert isinstance(req.headers, TStreamHeaders) and isinstance(req.headers, RequestHeaders)
    assert (req.headers.method, req.headers.target, req.headers.authority) == ("POST", "/echo?x=1", "svc")
    assert ":method" not in req.headers and ":path" not in req.headers
    assert sc.active_streams == 2 and sc.expects_response(1) and sc.expects_response(3)
    assert sc.data_to_send() == b""


@given(st.lists(st.integers(0, len(REQUEST_BYTES)), max_size=8))
def test_server_decodes_bytes_split_anywhere(cuts: list[int]) -> None:
    sc = TStreamServerConnection()
    events: list[StreamEvent] = []
    last = 0
    for cut in [*sorted(cuts), len(REQUEST_BYTES)]:
        events += sc.dispatch(REQUEST_BYTES[last:cut])
        last = cut
    # DATA split at a frame boundary is the same; the event list is identical
    assert shape(events) == REQUEST_EVENTS


def test_server_byte_by_byte() -> None:
    sc = TStreamServerConnection()
    events: list[StreamEvent] = []
    for i in range(len(REQUEST_BYTES)):
        events += sc.dispatch(REQUEST_BYTES[i : i + 1])
    assert shape(events) == REQUEST_EVENTS


def test_server_responses_are_framed_with_status_and_end_the_stream() -> None:
    sc = server()
    sc.dispatch(frame(H, 5, REQUEST_HEAD, end=True))
    sc.send_headers(
        5, HeaderMap([("content-type", "text/plain"), (":bogus", "dropped")]), status=201, end_stream=False
    )
    sc.send_data(5, b"part1", False)
    sc.send_data(5, b"part2", False)
    sc.send_trailers(5, HeaderMap([("x-count", "2")]))
    assert sc.data_to_send() == (
        frame(H, 5, lines((":status", "201"), ("content-type", "text/plain")))
        + frame(D, 5, b"part1")
        + frame(D, 5, b"part2")
        + frame(T, 5, lines(("x-count", "2")), end=True)
    )
    assert sc.active_streams == 0 and not sc.expects_response(5)
    # anything more for a finished stream is dropped, not sent
    sc.send_data(5, b"late", True)
    assert sc.data_to_send() == b""
    # empty end of body
    sc.dispatch(frame(H, 7, REQUEST_HEAD, end=True))
    sc.send_headers(7, HeaderMap(), status=200, end_stream=False)
    sc.send_data(7, b"", True)
    assert sc.data_to_send() == frame(H, 7, lines((":status", "200"))) + frame(D, 7, b"", end=True)


def test_server_local_reply_is_a_status_and_a_text_body() -> None:
    sc = server()
    sc.dispatch(frame(H, 1, REQUEST_HEAD, end=True) + frame(H, 3, REQUEST_HEAD, end=True))
    sc.send_local_reply(1, 404, b"no route for svc/echo\n", HeaderMap([("x-mosnpy-error", "NoRoute")]))
    body = b"no route for svc/echo\n"
    assert sc.data_to_send() == frame(
        H,
        1,
        lines(
            (":status", "404"),
            ("x-mosnpy-error", "NoRoute"),
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
        ),
    ) + frame(D, 1, body, end=True)
    sc.send_local_reply(3, 302, b"", HeaderMap([("location", "/x")]))
    assert sc.data_to_send() == frame(H, 3, lines((":status", "302"), ("location", "/x")), end=True)
    assert not sc.expects_response(1) and not sc.expects_response(3)


def test_server_answer_before_the_request_ends_keeps_reading_its_body() -> None:
    sc = server()
    sc.dispatch(frame(H, 1, REQUEST_HEAD))
    sc.send_local_reply(1, 404, b"", HeaderMap())
    assert not sc.expects_response(1)
    assert shape(sc.dispatch(frame(D, 1, b"rest", end=True))) == [("data", 1, b"rest", True)]
    assert sc.active_streams == 0


def test_server_resets_both_ways() -> None:
    sc = server()
    sc.dispatch(frame(H, 1, REQUEST_HEAD) + frame(H, 3, REQUEST_HEAD))
    # the client aborts stream 1
    events = sc.dispatch(frame(R, 1, b"cancelled") + frame(D, 1, b"late"))
    assert shape(events) == [("reset", 1, ResetReason.REMOTE_RESET, "cancelled")]
    assert sc.stray == 1 and not sc.expects_response(1)
    # the proxy aborts stream 3
    sc.reset(3, ResetReason.GLOBAL_TIMEOUT)
    assert sc.data_to_send() == frame(R, 3, b"UpstreamGlobalTimeout")
    sc.reset(3, ResetReason.GLOBAL_TIMEOUT)  # idempotent
    assert sc.data_to_send() == b"" and sc.active_streams == 0


def test_server_stream_errors_reset_the_stream() -> None:
    sc = server()
    sc.dispatch(frame(H, 1, REQUEST_HEAD, end=True))
    # DATA after the request ended
    assert shape(sc.dispatch(frame(D, 1, b"x"))) == [
        ("reset", 1, ResetReason.REMOTE_RESET, "protocol error: frames after the request ended")
    ]
    assert sc.data_to_send() == frame(R, 1, b"protocol error: frames after the request ended")
    # a request without :method never opens a stream
    assert sc.dispatch(frame(H, 9, lines((":path", "/")))) == []
    assert sc.data_to_send() == frame(R, 9, b"protocol error: request without :method")
    # a request head on a stream in use
    sc.dispatch(frame(H, 11, REQUEST_HEAD))
    assert shape(sc.dispatch(frame(H, 11, REQUEST_HEAD))) == [
        ("reset", 11, ResetReason.REMOTE_RESET, "protocol error: a request head on a stream in use")
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",  # no magic
        b"TS" + frame(9, 1),  # unknown type
        b"TS" + frame(H, 0, REQUEST_HEAD),  # stream 0
        b"TS" + frame(H, 1, b"no colon\n"),  # malformed header line
        b"TS" + frame(H, 1, b"\xff\xfe: x\n"),  # not UTF-8
        b"TS" + struct.pack(">BBII", D, 0, 1, MAX_PAYLOAD + 1),  # oversized
    ],
)
def test_server_garbage_terminates_the_connection(data: bytes) -> None:
    events = TStreamServerConnection().dispatch(data)
    assert len(events) == 1 and isinstance(events[0], ConnectionTerminated)


def test_server_connection_lost_resets_open_streams() -> None:
    sc = server()
    sc.dispatch(frame(H, 1, REQUEST_HEAD) + frame(H, 3, REQUEST_HEAD, end=True))
    assert shape(sc.connection_lost("gone")) == [
        ("reset", 1, ResetReason.CONNECTION_TERMINATION, "gone"),
        ("reset", 3, ResetReason.CONNECTION_TERMINATION, "gone"),
    ]
    assert sc.active_streams == 0
    assert sc.dispatch(b"") == [] and sc.next_deadline() == float("inf") and sc.on_timer(0) == []
    assert sc.resume() == [] and not sc.read_paused and not sc.closing


# -- client side -------------------------------------------------------------------------


def head(method: str = "POST", target: str = "/up", authority: str = "svc", **headers: str) -> TStreamHeaders:
    return TStreamHeaders(list(headers.items()), method=method, target=target, authority=authority)


def test_client_allocates_its_own_ids_and_encodes_requests() -> None:
    cc = TStreamClientConnection()
    cc.start(0.0)
    a, b = cc.new_stream(), cc.new_stream()
    assert (a, b) == (1, 2) and cc.active_streams == 2
    cc.send_headers(a, head(x_a="1"), end_stream=False)
    cc.send_data(a, b"body-1", False)
    cc.send_trailers(a, HeaderMap([("x-t", "v")]))
    cc.send_headers(b, head("GET", "/b", "other"), end_stream=True)
    assert cc.data_to_send() == (
        b"TS"
        + frame(H, 1, lines((":method", "POST"), (":path", "/up"), (":authority", "svc"), ("x_a", "1")))
        + frame(D, 1, b"body-1")
        + frame(T, 1, lines(("x-t", "v")), end=True)
        + frame(H, 2, lines((":method", "GET"), (":path", "/b"), (":authority", "other")), end=True)
    )
    assert cc.data_to_send() == b""  # the magic went once


def test_client_request_line_from_other_header_maps() -> None:
    cc = TStreamClientConnection()
    cc.data_to_send()
    sid = cc.new_stream()
    # an HTTP request's headers: method and target, its host as the authority
    cc.send_headers(sid, RequestHeaders([("host", "h:1")], method="PUT", target="/t"), end_stream=True)
    assert cc.data_to_send() == frame(
        H, sid, lines((":method", "PUT"), (":path", "/t"), (":authority", "h:1"), ("host", "h:1")), end=True
    )
    # a plain map has no request line: it cannot be a tstream request
    with pytest.raises(ProtocolConversionError):
        cc.send_headers(cc.new_stream(), HeaderMap([("a", "b")]), end_stream=True)
    with pytest.raises(ProtocolConversionError):
        cc.send_headers(cc.new_stream(), head(bad="line\nbreak"), end_stream=True)


def test_client_big_bodies_are_split_into_frames() -> None:
    cc = TStreamClientConnection()
    cc.data_to_send()
    sid = cc.new_stream()
    cc.send_headers(sid, head(), end_stream=False)
    cc.data_to_send()
    body = bytes(range(256)) * (MAX_PAYLOAD // 256) + b"tail"
    cc.send_data(sid, body, True)
    assert cc.data_to_send() == frame(D, sid, body[:MAX_PAYLOAD]) + frame(D, sid, b"tail", end=True)


RESPONSE_BYTES = (
    frame(H, 2, lines((":status", "200"), ("x-r", "b")), end=True)
    + frame(H, 1, lines((":status", "503"), ("content-type", "x")))
    + frame(D, 1, b"one")
    + frame(D, 1, b"two")
    + frame(T, 1, lines(("x-echo-count", "2")), end=True)
)
RESPONSE_EVENTS = [
    ("resp", 2, 200, [("x-r", "b")], True),
    ("resp", 1, 503, [("content-type", "x")], False),
    ("data", 1, b"one", False),
    ("data", 1, b"two", False),
    ("trailers", 1, [("x-echo-count", "2")]),
]


def client_with_two_streams() -> TStreamClientConnection:
    cc = TStreamClientConnection()
    for _ in range(2):
        sid = cc.new_stream()
        cc.send_headers(sid, head(), end_stream=True)
    cc.data_to_send()
    return cc


@given(st.lists(st.integers(0, len(RESPONSE_BYTES)), max_size=8))
def test_client_decodes_responses_split_anywhere(cuts: list[int]) -> None:
    cc = client_with_two_streams()
    events: list[StreamEvent] = []
    last = 0
    for cut in [*sorted(cuts), len(RESPONSE_BYTES)]:
        events += cc.dispatch(RESPONSE_BYTES[last:cut])
        last = cut
    assert shape(events) == RESPONSE_EVENTS
    assert cc.active_streams == 0


def test_client_resets_strays_and_errors() -> None:
    cc = client_with_two_streams()
    # the server resets stream 1; a late frame for it is a stray
    events = cc.dispatch(frame(R, 1, b"busy") + frame(H, 1, lines((":status", "200"))))
    assert shape(events) == [("reset", 1, ResetReason.REMOTE_RESET, "busy")]
    assert cc.stray == 1
    # the proxy gives up on stream 2: a RESET goes out and its answer is dropped
    cc.reset(2, ResetReason.LOCAL_RESET)
    assert cc.data_to_send() == frame(R, 2, b"StreamLocalReset")
    assert cc.dispatch(frame(H, 2, lines((":status", "200")), end=True)) == [] and cc.stray == 2
    # order errors reset the stream
    sid = cc.new_stream()
    cc.send_headers(sid, head(), end_stream=True)
    cc.data_to_send()
    assert shape(cc.dispatch(frame(D, sid, b"x"))) == [
        ("reset", sid, ResetReason.REMOTE_RESET, "protocol error: a body before the response head")
    ]
    assert cc.data_to_send() == frame(R, sid, b"protocol error: a body before the response head")
    sid = cc.new_stream()
    assert shape(cc.dispatch(frame(H, sid, lines(("x", "no status"))))) == [
        ("reset", sid, ResetReason.REMOTE_RESET, "protocol error: bad :status None")
    ]
    # garbage ends the connection
    assert shape(cc.dispatch(frame(7, 1))) == [("terminated",)]


def test_client_early_response_cuts_the_request_short() -> None:
    cc = TStreamClientConnection()
    cc.data_to_send()
    sid = cc.new_stream()
    cc.send_headers(sid, head(), end_stream=False)
    cc.data_to_send()
    assert shape(cc.dispatch(frame(H, sid, lines((":status", "413")), end=True))) == [
        ("resp", sid, 413, [], True)
    ]
    # the server is told to forget the request body it will not read
    assert cc.data_to_send() == frame(R, sid, b"response complete")
    cc.send_data(sid, b"more", True)
    assert cc.data_to_send() == b""


def test_client_connection_lost_and_id_reuse() -> None:
    cc = TStreamClientConnection()
    ids = [cc.new_stream() for _ in range(3)]
    assert shape(cc.connection_lost("eof")) == [
        ("reset", sid, ResetReason.CONNECTION_TERMINATION, "eof") for sid in ids
    ]
    assert cc.active_streams == 0 and cc.next_deadline() == float("inf") and cc.on_timer(1.0) == []
    # ids wrap within 32 bits, skip 0 and ids in use
    cc._next = (1 << 32) - 2
    assert cc.new_stream() == (1 << 32) - 1
    cc.streams[1] = cc.streams[(1 << 32) - 1]
    assert cc.new_stream() == 2


def test_round_trip_through_both_sides() -> None:
    cc, sc = TStreamClientConnection(), TStreamServerConnection()
    sid = cc.new_stream()
    cc.send_headers(sid, head("POST", "/rt", "svc", x_req="1"), end_stream=False)
    cc.send_data(sid, b"abc", False)
    cc.send_trailers(sid, HeaderMap([("x-t", "1")]))
    events = sc.dispatch(cc.data_to_send())
    assert shape(events) == [
        ("req", sid, "POST", "svc", "/rt", [("x_req", "1")], False),
        ("data", sid, b"abc", False),
        ("trailers", sid, [("x-t", "1")]),
    ]
    sc.send_headers(sid, HeaderMap([("x-resp", "2")]), status=200, end_stream=False)
    sc.send_data(sid, b"xyz", False)
    sc.send_trailers(sid, HeaderMap([("x-echo-count", "1")]))
    assert shape(cc.dispatch(sc.data_to_send())) == [
        ("resp", sid, 200, [("x-resp", "2")], False),
        ("data", sid, b"xyz", False),
        ("trailers", sid, [("x-echo-count", "1")]),
    ]
    assert cc.active_streams == 0 and sc.active_streams == 0
