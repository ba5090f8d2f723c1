"""HTTP/2 stream connections, sans-I/O: our side against a raw h2 peer.

No trio, no sockets: each test pairs one of our stream connections with an
:class:`h2.connection.H2Connection` playing the other end (a client against our server,
a server against our client) and moves the bytes between them by hand.  What h2 itself
cannot be made to send — a GOAWAY that lets streams finish, floods, CONTINUATION runs —
is written with hyperframe, and what we send is also read back frame by frame with
hyperframe, so the exact frames on the wire are checked, not only what h2 makes of them.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given
from hypothesis import strategies as st

from mosnpy.protocol.api import (
    ClientStreamConnection,
    ConnectionTerminated,
    DataReceived,
    FlowResumed,
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
from mosnpy.protocol.http2 import (
    HTTP2,
    PREFACE,
    H2ClientStreamConnection,
    H2RequestHeaders,
    H2ResponseHeaders,
    H2ServerStreamConnection,
    H2Settings,
    grpc,
)
from mosnpy.protocol.matcher import MatchResult

Codes = h2.errors.ErrorCodes
SC = h2.settings.SettingCodes
INF = float("inf")

# -- helpers ---------------------------------------------------------------------------------


def frames(data: bytes) -> list[Frame]:
    """``data`` (our outbox) as hyperframe frames, the client preface skipped."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE) :]
    out: list[Frame] = []
    view = memoryview(data)
    while view:
        assert len(view) >= 9, "a truncated frame header in the outbox"
        frame, length = Frame.parse_frame_header(view[:9])
        assert len(view) >= 9 + length, "a truncated frame in the outbox"
        frame.parse_body(view[9 : 9 + length])
        out.append(frame)
        view = view[9 + length :]
    return out


def of_type(fs: list[Frame], kind: type[Frame]) -> list[Frame]:
    return [f for f in fs if isinstance(f, kind)]


def goaway_of(data: bytes) -> GoAwayFrame:
    (goaway,) = of_type(frames(data), GoAwayFrame)
    assert isinstance(goaway, GoAwayFrame)
    return goaway


def h2_peer(*, client_side: bool, **settings: int) -> h2.connection.H2Connection:
    """A raw h2 connection with bytes headers; ``settings`` (SettingCodes names) are
    what it announces in its first SETTINGS frame."""
    peer = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=client_side, header_encoding=None)
    )
    if settings:
        peer.local_settings = h2.settings.Settings(
            client=client_side, initial_values={SC[name]: value for name, value in settings.items()}
        )
    peer.initiate_connection()
    return peer


def server_pair(
    peer_settings: dict[str, int] | None = None, **options: object
) -> tuple[H2ServerStreamConnection, h2.connection.H2Connection]:
    """Our server and an h2 client, past the preface and both SETTINGS exchanges."""
    sc = H2ServerStreamConnection(**options)
    peer = h2_peer(client_side=True, **(peer_settings or {}))
    assert sc.dispatch(peer.data_to_send()) == []
    peer.receive_data(sc.data_to_send())
    assert sc.dispatch(peer.data_to_send()) == []  # the peer's SETTINGS ACK
    assert sc.data_to_send() == b""
    return sc, peer


def client_pair(
    peer_settings: dict[str, int] | None = None, **options: object
) -> tuple[H2ClientStreamConnection, h2.connection.H2Connection]:
    """Our client and an h2 server, past the preface and both SETTINGS exchanges."""
    cc = H2ClientStreamConnection(**options)
    peer = h2_peer(client_side=False, **(peer_settings or {}))
    peer.receive_data(cc.data_to_send())
    # the server's SETTINGS may have opened windows: at most a FlowResumed for them all
    assert shape(cc.dispatch(peer.data_to_send())) in ([], [("flow", 0)])
    peer.receive_data(cc.data_to_send())  # our SETTINGS ACK
    assert peer.data_to_send() == b""
    return cc, peer


def to_ours(
    ours: H2ServerStreamConnection | H2ClientStreamConnection, peer: h2.connection.H2Connection
) -> list[StreamEvent]:
    return ours.dispatch(peer.data_to_send())


def to_peer(
    ours: H2ServerStreamConnection | H2ClientStreamConnection, peer: h2.connection.H2Connection
) -> list[h2.events.Event]:
    return peer.receive_data(ours.data_to_send())


def shape(events: list[StreamEvent]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, RequestReceived):
            out.append(("req", e.stream_id, e.method, e.host, e.path, e.end_stream))
        elif isinstance(e, ResponseReceived):
            out.append(("resp", e.stream_id, e.status, e.end_stream))
        elif isinstance(e, DataReceived):
            out.append(("data", e.stream_id, e.data, e.end_stream))
        elif isinstance(e, TrailersReceived):
            out.append(("trailers", e.stream_id, e.trailers.items_all()))
        elif isinstance(e, StreamReset):
            out.append(("reset", e.stream_id, e.reason, e.unprocessed))
        elif isinstance(e, FlowResumed):
            out.append(("flow", e.stream_id))
        else:
            assert isinstance(e, ConnectionTerminated)
            out.append(("terminated",))
    return out


def peer_shape(events: list[h2.events.Event]) -> list[tuple[object, ...]]:
    """What the h2 peer saw, housekeeping (settings, windows, pings) left out."""
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, (h2.events.RequestReceived, h2.events.ResponseReceived)):
            out.append(("head", e.stream_id, list(e.headers or ()), e.stream_ended is not None))
        elif isinstance(e, h2.events.DataReceived):
            out.append(("data", e.stream_id, e.data, e.stream_ended is not None))
        elif isinstance(e, h2.events.TrailersReceived):
            out.append(("trailers", e.stream_id, list(e.headers or ()), e.stream_ended is not None))
        elif isinstance(e, h2.events.StreamReset):
            out.append(("reset", e.stream_id, e.error_code))
        elif isinstance(e, h2.events.ConnectionTerminated):
            out.append(("goaway", e.error_code, e.last_stream_id))
    return out


def open_request(
    peer: h2.connection.H2Connection,
    sid: int,
    *,
    method: str = "GET",
    path: str = "/",
    authority: str = "svc.local",
    extra: list[tuple[str, str]] | None = None,
    end_stream: bool = True,
) -> None:
    headers = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
    peer.send_headers(sid, headers + (extra or []), end_stream=end_stream)


GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]


def peer_request(events: list[h2.events.Event]) -> h2.events.RequestReceived:
    """The one request among what the h2 server peer saw (StreamEnded and such aside)."""
    (request,) = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    return request


def flags(frame: Frame, *names: str) -> None:
    for name in names:
        frame.flags.add(name)


def test_descriptor_and_shapes() -> None:
    assert HTTP2.name == "Http2" and HTTP2.family == "http"
    assert isinstance(H2ServerStreamConnection(), ServerStreamConnection)
    assert isinstance(H2ClientStreamConnection(), ClientStreamConnection)
    assert HTTP2.matcher(b"") is MatchResult.AGAIN
    assert HTTP2.matcher(PREFACE[:10]) is MatchResult.AGAIN
    assert HTTP2.matcher(PREFACE + b"\x00") is MatchResult.MATCH
    assert HTTP2.matcher(b"GET / HTTP/1.1\r\n") is MatchResult.FAILED
    with pytest.raises(ValueError, match="max_header_list_size"):
        H2Settings(max_header_list_size=10)
    with pytest.raises(TypeError):
        H2ServerStreamConnection(no_such_option=1)


# -- round trips -----------------------------------------------------------------------------


def test_server_round_trip_with_bodies_and_trailers_both_ways() -> None:
    sc, peer = server_pair()
    open_request(peer, 1, method="POST", path="/echo?x=1", extra=[("x-a", "1")], end_stream=False)
    peer.send_data(1, b"hello ")
    peer.send_data(1, b"world")
    peer.send_headers(1, [("x-sum", "abc")], end_stream=True)
    events = to_ours(sc, peer)
    assert shape(events) == [
        ("req", 1, "POST", "svc.local", "/echo?x=1", False),
        ("data", 1, b"hello ", False),
        ("data", 1, b"world", False),
        ("trailers", 1, [("x-sum", "abc")]),
    ]
    req = events[0]
    assert isinstance(req, RequestReceived) and isinstance(req.headers, H2RequestHeaders)
    # pseudo headers are attributes; :authority is also the map's host
    assert (req.headers.method, req.headers.target, req.headers.scheme) == ("POST", "/echo?x=1", "http")
    assert req.headers.items_all() == [("x-a", "1"), ("host", "svc.local")]
    assert req.timeout is None and not req.oneway
    assert sc.expects_response(1)

    sc.send_headers(
        1, HeaderMap([("content-type", "text/plain"), ("x-b", "2")]), status=201, end_stream=False
    )
    sc.send_data(1, b"part1", False)
    sc.send_data(1, b"part2", False)
    sc.send_trailers(1, HeaderMap([("x-count", "2")]))
    wire = sc.data_to_send()
    assert [type(f) for f in frames(wire)] == [HeadersFrame, DataFrame, DataFrame, HeadersFrame]
    assert ["END_STREAM" in f.flags for f in frames(wire)] == [False, False, False, True]
    assert peer_shape(peer.receive_data(wire)) == [
        ("head", 1, [(b":status", b"201"), (b"content-type", b"text/plain"), (b"x-b", b"2")], False),
        ("data", 1, b"part1", False),
        ("data", 1, b"part2", False),
        ("trailers", 1, [(b"x-count", b"2")], True),
    ]
    assert not sc.expects_response(1) and sc.buffered(1) == 0
    assert not sc.streams and not sc.closing


def test_server_end_stream_flags_are_exact() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)  # GET: the head ends the request
    open_request(peer, 3, method="POST", end_stream=False)
    peer.send_data(3, b"body", end_stream=True)  # the last DATA ends it
    open_request(peer, 5, method="POST", end_stream=False)
    peer.send_data(5, b"", end_stream=True)  # an empty DATA ends it
    assert shape(to_ours(sc, peer)) == [
        ("req", 1, "GET", "svc.local", "/", True),
        ("req", 3, "POST", "svc.local", "/", False),
        ("data", 3, b"body", True),
        ("req", 5, "POST", "svc.local", "/", False),
        ("data", 5, b"", True),
    ]
    sc.send_headers(1, HeaderMap(), status=204, end_stream=True)  # head only
    sc.send_headers(3, HeaderMap(), status=200, end_stream=False)
    sc.send_data(3, b"x", True)  # data ends it
    sc.send_headers(5, HeaderMap(), status=200, end_stream=False)
    sc.send_data(5, b"", True)  # an empty DATA ends it
    wire = frames(sc.data_to_send())
    assert [(type(f).__name__, f.stream_id, "END_STREAM" in f.flags) for f in wire] == [
        ("HeadersFrame", 1, True),
        ("HeadersFrame", 3, False),
        ("DataFrame", 3, True),
        ("HeadersFrame", 5, False),
        ("DataFrame", 5, True),
    ]
    assert not sc.streams
    # anything more for a finished stream is dropped, not sent
    sc.send_data(3, b"late", True)
    sc.send_trailers(5, HeaderMap([("x", "y")]))
    assert sc.data_to_send() == b""


def test_server_host_header_kept_and_authority_from_host() -> None:
    sc, peer = server_pair()
    # :authority and an explicit host: the map keeps the host header once
    open_request(peer, 1, extra=[("host", "svc.local")])
    # no :authority: host is the request's host
    peer.send_headers(
        3, [(":method", "GET"), (":scheme", "http"), (":path", "/h"), ("host", "h.local")], end_stream=True
    )
    one, three = to_ours(sc, peer)
    assert isinstance(one, RequestReceived) and isinstance(three, RequestReceived)
    assert one.headers.get_all("host") == ["svc.local"]
    assert (three.host, three.headers.get("host")) == ("h.local", "h.local")


def test_server_interim_status_is_a_conversion_error() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    to_ours(sc, peer)
    with pytest.raises(ProtocolConversionError):
        sc.send_headers(1, HeaderMap(), status=100, end_stream=False)


def test_client_round_trip_with_bodies_and_trailers_both_ways() -> None:
    cc, peer = client_pair()
    cc.start(0.0)
    sid = cc.new_stream()
    assert sid == 1 and cc.new_stream() == 3 and cc.active_streams == 2
    headers = H2RequestHeaders(
        [("host", "svc.local"), ("x-a", "1")], method="PUT", target="/up?q=1", scheme="https"
    )
    cc.send_headers(sid, headers, end_stream=False)
    cc.reset(3, ResetReason.LOCAL_RESET)  # never sent: forgotten, nothing goes out
    assert cc.active_streams == 1
    cc.send_data(sid, b"abc", False)
    cc.send_data(sid, b"def", False)
    cc.send_trailers(sid, HeaderMap([("x-sum", "6")]))
    assert peer_shape(to_peer(cc, peer)) == [
        (
            "head",
            1,
            [
                (b":method", b"PUT"),
                (b":scheme", b"https"),
                (b":authority", b"svc.local"),
                (b":path", b"/up?q=1"),
                (b"x-a", b"1"),
            ],
            False,
        ),
        ("data", 1, b"abc", False),
        ("data", 1, b"def", False),
        ("trailers", 1, [(b"x-sum", b"6")], True),
    ]
    peer.send_headers(1, [(":status", "200"), ("x-b", "2")])
    peer.send_data(1, b"resp")
    peer.send_headers(1, [("x-end", "1")], end_stream=True)
    events = to_ours(cc, peer)
    assert shape(events) == [
        ("resp", 1, 200, False),
        ("data", 1, b"resp", False),
        ("trailers", 1, [("x-end", "1")]),
    ]
    resp = events[0]
    assert isinstance(resp, ResponseReceived) and isinstance(resp.headers, H2ResponseHeaders)
    assert resp.headers.status == 200 and resp.headers.items_all() == [("x-b", "2")]
    assert cc.active_streams == 0 and not cc.closing


def test_client_end_stream_flags_and_early_response() -> None:
    cc, peer = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    wire = cc.data_to_send()
    (head,) = of_type(frames(wire), HeadersFrame)
    assert "END_STREAM" in head.flags
    peer.receive_data(wire)
    # a POST answered before its body is done: the rest is cut with RST_STREAM(NO_ERROR)
    sid2 = cc.new_stream()
    cc.send_headers(sid2, RequestHeaders([("host", "a")], method="POST", target="/"), end_stream=False)
    peer.receive_data(cc.data_to_send())
    peer.send_headers(sid2, [(":status", "413")], end_stream=True)
    assert shape(to_ours(cc, peer)) == [("resp", sid2, 413, True)]
    (rst,) = of_type(frames(cc.data_to_send()), RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (sid2, Codes.NO_ERROR)
    cc.send_data(sid2, b"late", True)
    assert cc.data_to_send() == b""
    assert cc.active_streams == 1  # the GET still waits for its answer


def test_client_reset_of_an_unsent_stream_on_a_fresh_connection_keeps_the_connection() -> None:
    cc, peer = client_pair()
    abandoned = cc.new_stream()
    cc.reset(abandoned, ResetReason.LOCAL_RESET)  # e.g. the downstream went away first
    assert of_type(frames(cc.data_to_send()), GoAwayFrame) == []
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    assert peer_request(peer.receive_data(cc.data_to_send())).stream_id == sid


def test_client_needs_a_method() -> None:
    cc, _ = client_pair()
    sid = cc.new_stream()
    with pytest.raises(ProtocolConversionError):
        cc.send_headers(sid, HeaderMap([("host", "a")]), end_stream=True)
    # an HTTP/2-spelled map is fine
    cc.send_headers(sid, HeaderMap([(":method", "GET"), (":path", "/p"), ("host", "a")]), end_stream=True)
    (head,) = of_type(frames(cc.data_to_send()), HeadersFrame)
    assert head.stream_id == sid


# -- HTTP/1 → HTTP/2 header conversion -----------------------------------------------------------

HOP_BY_HOP = [
    ("host", "svc.local:8080"),
    ("connection", "keep-alive, X-Secret"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("transfer-encoding", "chunked"),
    ("upgrade", "websocket"),
    ("x-secret", "listed in connection"),
    ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
    ("x-keep", "yes"),
]


@pytest.mark.parametrize(
    ("te", "sent"),
    [
        (None, None),
        ("gzip", None),
        ("trailers", "trailers"),
        ("gzip, Trailers", "trailers"),
        ("deflate;q=0.5", None),
    ],
)
def test_client_converts_http1_headers(te: str | None, sent: str | None) -> None:
    cc, peer = client_pair()
    items = list(HOP_BY_HOP) + ([("te", te)] if te is not None else [])
    request = RequestHeaders(items, method="POST", target="/up?q=1")
    sid = cc.new_stream()
    cc.send_headers(sid, request, end_stream=True)
    event = peer_request(peer.receive_data(cc.data_to_send()))  # h2 validated it: no hop-by-hop header
    expected = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"svc.local:8080"),
        (b":path", b"/up?q=1"),
        (b"x-keep", b"yes"),
    ]
    if sent is not None:
        expected.append((b"te", sent.encode()))
    assert list(event.headers or ()) == expected


def test_client_request_without_target_goes_to_root() -> None:
    cc, peer = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "h")], method="OPTIONS", target=""), end_stream=True)
    event = peer_request(peer.receive_data(cc.data_to_send()))
    assert dict(event.headers or ())[b":path"] == b"/"


def test_server_response_drops_connection_specific_headers() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    to_ours(sc, peer)
    # what an HTTP/1 upstream answered: every connection-specific header goes
    resp = HeaderMap([*HOP_BY_HOP[1:], ("te", "trailers"), ("content-length", "0")])
    sc.send_headers(1, resp, status=200, end_stream=True)
    events = to_peer(sc, peer)
    assert peer_shape(events) == [
        ("head", 1, [(b":status", b"200"), (b"x-keep", b"yes"), (b"content-length", b"0")], True)
    ]


# -- flow control ------------------------------------------------------------------------------


def test_server_sends_no_more_than_the_peer_window_and_resumes_on_window_update() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    to_ours(sc, peer)
    body = bytes(range(256)) * 400  # 102,400 bytes > the peer's 65,535
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, body, True)
    wire = frames(sc.data_to_send())
    datas = of_type(wire, DataFrame)
    assert sum(len(f.data) for f in datas) == 65535
    assert all(len(f.data) <= 16384 for f in datas)  # the peer's max frame size
    assert not any("END_STREAM" in f.flags for f in datas)
    assert sc.buffered(1) == len(body) - 65535
    assert sc.next_deadline() == 0.0  # a queue: the stall timer wants to run
    received = bytearray()
    for event in peer.receive_data(b"".join(f.serialize() for f in wire)):
        if isinstance(event, h2.events.DataReceived):
            received += event.data
            peer.acknowledge_received_data(event.flow_controlled_length, 1)
    events = to_ours(sc, peer)  # the peer's WINDOW_UPDATEs
    assert any(isinstance(e, FlowResumed) for e in events)
    assert {e.stream_id for e in events} <= {0, 1} and all(isinstance(e, FlowResumed) for e in events)
    rest = frames(sc.data_to_send())
    assert sum(len(f.data) for f in of_type(rest, DataFrame)) == len(body) - 65535
    assert "END_STREAM" in rest[-1].flags
    assert sc.buffered(1) == 0 and not sc.streams
    for event in peer.receive_data(b"".join(f.serialize() for f in rest)):
        if isinstance(event, h2.events.DataReceived):
            received += event.data
    assert bytes(received) == body


def test_trailers_wait_behind_queued_data() -> None:
    sc, peer = server_pair(peer_settings={"INITIAL_WINDOW_SIZE": 10})
    open_request(peer, 1)
    to_ours(sc, peer)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, b"0123456789abcdef", False)
    sc.send_trailers(1, HeaderMap([("x-t", "1")]))
    wire = frames(sc.data_to_send())
    assert [type(f) for f in wire] == [HeadersFrame, DataFrame]
    assert wire[1].data == b"0123456789" and sc.buffered(1) == 6
    sc.send_data(1, b"after the end", True)  # ignored: the direction is ending
    peer.receive_data(b"".join(f.serialize() for f in wire))
    peer.increment_flow_control_window(100, 1)
    assert shape(to_ours(sc, peer)) == [("flow", 1)]
    rest = frames(sc.data_to_send())
    assert [(type(f), f.flags) for f in rest] == [
        (DataFrame, set()),
        (HeadersFrame, {"END_HEADERS", "END_STREAM"}),
    ]
    assert rest[0].data == b"abcdef" and sc.buffered(1) == 0


def test_received_data_is_acknowledged_only_when_consumed() -> None:
    sc, peer = server_pair(initial_window_size=65535, connection_window_size=65535)
    open_request(peer, 1, method="POST", end_stream=False)
    for _ in range(4):
        peer.send_data(1, b"x" * 10000)
    events = to_ours(sc, peer)
    assert shape(events)[1:] == [("data", 1, b"x" * 10000, False)] * 4
    assert of_type(frames(sc.data_to_send()), WindowUpdateFrame) == []
    assert peer.local_flow_control_window(1) == 65535 - 40000
    sc.consumed(1, 40000)
    wire = sc.data_to_send()
    updates = of_type(frames(wire), WindowUpdateFrame)
    assert sorted((f.stream_id, f.window_increment) for f in updates) == [(0, 40000), (1, 40000)]
    peer.receive_data(wire)
    assert peer.local_flow_control_window(1) == 65535
    sc.consumed(1, 0)  # nothing: no frame
    assert sc.data_to_send() == b""


def test_client_received_data_is_acknowledged_only_when_consumed() -> None:
    cc, peer = client_pair(initial_window_size=65535, connection_window_size=65535)
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    to_peer(cc, peer)
    peer.send_headers(sid, [(":status", "200")])
    for _ in range(5):
        peer.send_data(sid, b"y" * 10000)
    assert shape(to_ours(cc, peer))[1:] == [("data", sid, b"y" * 10000, False)] * 5
    assert of_type(frames(cc.data_to_send()), WindowUpdateFrame) == []
    cc.consumed(sid, 50000)
    assert {f.stream_id for f in of_type(frames(cc.data_to_send()), WindowUpdateFrame)} == {0, sid}


def test_client_queues_request_body_beyond_the_window() -> None:
    cc, peer = client_pair(peer_settings={"INITIAL_WINDOW_SIZE": 1000})
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="POST", target="/"), end_stream=False)
    cc.send_data(sid, b"z" * 2500, True)
    assert cc.buffered(sid) == 1500
    peer.receive_data(cc.data_to_send())
    peer.increment_flow_control_window(5000, sid)
    assert shape(to_ours(cc, peer)) == [("flow", sid)]
    (data,) = of_type(frames(cc.data_to_send()), DataFrame)
    assert len(data.data) == 1500 and "END_STREAM" in data.flags and cc.buffered(sid) == 0


def test_server_settings_raising_the_initial_window_moves_queued_data() -> None:
    sc, peer = server_pair(peer_settings={"INITIAL_WINDOW_SIZE": 0})
    open_request(peer, 1)
    to_ours(sc, peer)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, b"x" * 1000, True)
    assert sc.buffered(1) == 1000
    peer.receive_data(sc.data_to_send())
    peer.update_settings({SC.INITIAL_WINDOW_SIZE: 65535})  # no WINDOW_UPDATE: none is needed
    to_ours(sc, peer)
    assert sc.buffered(1) == 0
    (data,) = of_type(frames(sc.data_to_send()), DataFrame)
    assert len(data.data) == 1000 and "END_STREAM" in data.flags


def test_client_settings_raising_the_initial_window_moves_queued_data() -> None:
    cc, peer = client_pair(peer_settings={"INITIAL_WINDOW_SIZE": 0})
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="POST", target="/"), end_stream=False)
    cc.send_data(sid, b"y" * 1000, True)
    assert cc.buffered(sid) == 1000
    peer.receive_data(cc.data_to_send())
    peer.update_settings({SC.INITIAL_WINDOW_SIZE: 65535})
    assert ("flow", 0) in shape(to_ours(cc, peer))  # reported, but is anything sent?
    assert cc.buffered(sid) == 0
    (data,) = of_type(frames(cc.data_to_send()), DataFrame)
    assert len(data.data) == 1000 and "END_STREAM" in data.flags


def test_client_stream_limit_follows_the_servers_settings() -> None:
    assert H2ClientStreamConnection().stream_limit == 100  # before SETTINGS: RFC 9113's 100
    cc, _ = client_pair(peer_settings={"MAX_CONCURRENT_STREAMS": 7})
    assert cc.stream_limit == 7
    cc, _ = client_pair(peer_settings={"INITIAL_WINDOW_SIZE": 65535})  # no limit announced
    assert cc.stream_limit == 0  # none of its own: the pool's cap applies


# -- GOAWAY --------------------------------------------------------------------------------------


def goaway(last_stream_id: int, code: int = 0) -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = code
    return frame.serialize()


def test_peer_goaway_lets_accepted_streams_finish_and_refuses_the_rest() -> None:
    cc, peer = client_pair()
    for _ in range(3):
        sid = cc.new_stream()
        cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target=f"/{sid}"), end_stream=True)
    to_peer(cc, peer)
    assert cc.stream_limit == 100  # the peer's MAX_CONCURRENT_STREAMS (h2's default)
    peer.send_headers(1, [(":status", "200")])
    peer.send_headers(3, [(":status", "200")])
    assert shape(to_ours(cc, peer)) == [("resp", 1, 200, False), ("resp", 3, 200, False)]
    # GOAWAY(last 3): stream 5 was never processed, 1 and 3 finish
    events = cc.dispatch(goaway(3))
    assert shape(events) == [("reset", 5, ResetReason.REMOTE_RESET, True)]
    reset = events[0]
    assert isinstance(reset, StreamReset) and "GOAWAY" in reset.message
    assert cc.active_streams == 2 and cc.stream_limit == 2  # no room for one more
    with pytest.raises(RuntimeError):
        cc.new_stream()
    assert not cc.closing
    peer.send_data(1, b"one", end_stream=True)
    assert shape(to_ours(cc, peer)) == [("data", 1, b"one", True)]
    assert not cc.closing and cc.stream_limit == 1
    peer.send_data(3, b"three")
    peer.send_headers(3, [("grpc-status", "0")], end_stream=True)
    assert shape(to_ours(cc, peer)) == [("data", 3, b"three", False), ("trailers", 3, [("grpc-status", "0")])]
    assert cc.closing and cc.active_streams == 0


def test_peer_goaway_on_an_idle_connection_closes_it() -> None:
    cc, _ = client_pair()
    assert cc.dispatch(goaway(0)) == []
    assert cc.closing
    with pytest.raises(RuntimeError):
        cc.new_stream()


def test_peer_goaway_with_an_error_still_lets_accepted_streams_finish() -> None:
    cc, peer = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    to_peer(cc, peer)
    assert cc.dispatch(goaway(1, Codes.INTERNAL_ERROR)) == []
    peer.send_headers(1, [(":status", "200")], end_stream=True)
    assert shape(to_ours(cc, peer)) == [("resp", 1, 200, True)]
    assert cc.closing


def test_client_goaway_to_our_server_lets_its_streams_finish() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    to_ours(sc, peer)
    assert sc.dispatch(goaway(0)) == []  # a client's GOAWAY names server streams: none
    assert not sc.closing and sc.expects_response(1)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=True)
    assert [type(f) for f in frames(sc.data_to_send())] == [HeadersFrame]
    assert sc.closing


def test_server_shutdown_sends_goaway_with_the_last_stream_and_refuses_later_ones() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    open_request(peer, 3, method="POST", end_stream=False)
    assert len(to_ours(sc, peer)) == 2
    sc.shutdown()
    ga = goaway_of(sc.data_to_send())
    assert (ga.last_stream_id, ga.error_code) == (3, 0)
    sc.shutdown()  # once only
    assert sc.data_to_send() == b"" and not sc.closing
    # the client opened stream 5 before it read the GOAWAY: refused, never a request
    open_request(peer, 5)
    assert to_ours(sc, peer) == []
    (rst,) = of_type(frames(sc.data_to_send()), RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (5, Codes.REFUSED_STREAM)
    # streams it accepted still finish: the body of 3 comes in, both get answers
    peer.send_data(3, b"late body", end_stream=True)
    assert shape(to_ours(sc, peer)) == [("data", 3, b"late body", True)]
    sc.send_headers(1, HeaderMap(), status=200, end_stream=True)
    assert not sc.closing
    sc.send_headers(3, HeaderMap(), status=200, end_stream=False)
    sc.send_data(3, b"done", True)
    assert sc.closing
    heads = of_type(frames(sc.data_to_send()), HeadersFrame)
    assert [f.stream_id for f in heads] == [1, 3]


def test_server_shutdown_when_idle_closes_at_once() -> None:
    sc, _ = server_pair()
    sc.shutdown()
    assert sc.closing
    assert goaway_of(sc.data_to_send()).last_stream_id == 0


# -- resets ----------------------------------------------------------------------------------------


def test_server_rst_stream_from_the_peer() -> None:
    sc, peer = server_pair()
    open_request(peer, 1, method="POST", end_stream=False)
    open_request(peer, 3, method="POST", end_stream=False)
    to_ours(sc, peer)
    peer.reset_stream(1, Codes.CANCEL)
    peer.reset_stream(3, Codes.REFUSED_STREAM)
    events = to_ours(sc, peer)
    assert shape(events) == [
        ("reset", 1, ResetReason.REMOTE_RESET, False),
        ("reset", 3, ResetReason.REMOTE_RESET, True),
    ]
    assert [e.message for e in events if isinstance(e, StreamReset)] == [
        "RST_STREAM CANCEL",
        "RST_STREAM REFUSED_STREAM",
    ]
    assert not sc.expects_response(1) and not sc.streams
    sc.send_headers(1, HeaderMap(), status=200, end_stream=True)  # too late: dropped
    assert sc.data_to_send() == b""


def test_client_rst_stream_refused_is_unprocessed() -> None:
    cc, peer = client_pair()
    one, three = cc.new_stream(), cc.new_stream()
    for sid in (one, three):
        cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    to_peer(cc, peer)
    peer.reset_stream(one, Codes.REFUSED_STREAM)
    peer.send_headers(three, [(":status", "200")])
    peer.reset_stream(three, Codes.INTERNAL_ERROR)
    assert shape(to_ours(cc, peer)) == [
        ("reset", one, ResetReason.REMOTE_RESET, True),
        ("resp", three, 200, False),
        ("reset", three, ResetReason.REMOTE_RESET, False),
    ]
    assert cc.active_streams == 0


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (ResetReason.LOCAL_RESET, Codes.CANCEL),
        (ResetReason.OVERFLOW, Codes.REFUSED_STREAM),
        (ResetReason.GLOBAL_TIMEOUT, Codes.INTERNAL_ERROR),
    ],
)
def test_reset_sends_rst_stream(reason: ResetReason, code: int) -> None:
    sc, peer = server_pair()
    open_request(peer, 1, method="POST", end_stream=False)
    to_ours(sc, peer)
    sc.reset(1, reason)
    (rst,) = of_type(frames(sc.data_to_send()), RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (1, code)
    sc.reset(1, reason)  # idempotent
    assert sc.data_to_send() == b"" and not sc.streams
    # data the peer had in flight is dropped (h2 answers it with RST_STREAM itself)
    assert sc.dispatch(DataFrame(1, b"q" * 100).serialize()) == []
    assert [f.stream_id for f in of_type(frames(sc.data_to_send()), RstStreamFrame)] == [1]

    cc, _ = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, RequestHeaders([("host", "a")], method="GET", target="/"), end_stream=True)
    cc.data_to_send()
    cc.reset(sid, reason)
    (rst,) = of_type(frames(cc.data_to_send()), RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (sid, code)


def test_connection_lost_resets_every_open_stream() -> None:
    sc, peer = server_pair()
    open_request(peer, 1, method="POST", end_stream=False)
    open_request(peer, 3)
    to_ours(sc, peer)
    assert sc.dispatch(b"") == []  # EOF alone says nothing
    events = sc.connection_lost("gone")
    assert shape(events) == [
        ("reset", 1, ResetReason.CONNECTION_TERMINATION, False),
        ("reset", 3, ResetReason.CONNECTION_TERMINATION, False),
    ]
    assert not sc.streams


def test_garbage_terminates_the_connection() -> None:
    # not HTTP/2 at all: terminated (RFC 9113 §3.4: the GOAWAY may be omitted)
    sc = H2ServerStreamConnection()
    events = sc.dispatch(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert shape(events) == [("terminated",)] and sc.closing
    # a bad frame after a good preface: GOAWAY(PROTOCOL_ERROR)
    sc, _ = server_pair()
    bad = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00data"  # DATA on stream 0
    events = sc.dispatch(bad)
    assert shape(events) == [("terminated",)] and sc.closing
    assert goaway_of(sc.data_to_send()).error_code == Codes.PROTOCOL_ERROR


# -- local replies -------------------------------------------------------------------------------


def test_local_reply_to_a_plain_request_is_a_status_and_a_text_body() -> None:
    sc, peer = server_pair()
    open_request(peer, 1)
    open_request(peer, 3)
    to_ours(sc, peer)
    body = b"no route for svc.local/\n"
    sc.send_local_reply(1, 404, body, HeaderMap([("x-mosnpy-error", "NoRoute")]))
    sc.send_local_reply(3, 302, b"", HeaderMap([("location", "/x")]))
    assert peer_shape(to_peer(sc, peer)) == [
        (
            "head",
            1,
            [
                (b":status", b"404"),
                (b"x-mosnpy-error", b"NoRoute"),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
            False,
        ),
        ("data", 1, body, True),
        ("head", 3, [(b":status", b"302"), (b"location", b"/x")], True),
    ]
    assert not sc.streams
    sc.send_local_reply(1, 500, b"twice", HeaderMap())  # the stream is done: nothing
    assert sc.data_to_send() == b""


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (404, None, 12),
        (502, None, 14),
        (503, None, 14),
        (503, "UpstreamOverflow", 8),
        (504, None, 4),
        (500, None, 13),
        (200, None, 2),
        (418, None, 2),
    ],
)
def test_local_reply_to_a_grpc_call_is_trailers_only(status: int, error: str | None, code: int) -> None:
    sc, peer = server_pair()
    open_request(
        peer,
        1,
        method="POST",
        path="/pkg.Svc/Call",
        extra=[("content-type", "application/grpc+proto"), ("te", "trailers")],
        end_stream=False,
    )
    to_ours(sc, peer)
    extra = HeaderMap([("x-mosnpy-error", error)]) if error else HeaderMap()
    sc.send_local_reply(1, status, "100% übel: no upstream\n".encode(), extra)
    wire = frames(sc.data_to_send())
    assert [type(f) for f in wire] == [HeadersFrame] and "END_STREAM" in wire[0].flags
    (event, *_) = peer.receive_data(b"".join(f.serialize() for f in wire))
    assert isinstance(event, h2.events.ResponseReceived) and event.stream_ended is not None
    expected = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", b"100%25 %C3%BCbel: no upstream"),
    ]
    if error:
        expected.append((b"x-mosnpy-error", error.encode()))
    assert list(event.headers or ()) == expected
    assert not sc.expects_response(1)
    # the request body still arriving is read and dropped, nothing breaks
    peer.send_data(1, b"rest", end_stream=True)
    assert shape(to_ours(sc, peer)) == [("data", 1, b"rest", True)]
    assert not sc.streams


# -- gRPC ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250m", 0.25),
        ("1S", 1.0),
        ("2M", 120.0),
        ("1H", 3600.0),
        ("1500000u", 1.5),
        ("100n", 100e-9),
        ("99999999S", 99999999.0),
        ("123456789S", None),  # 9 digits
        ("garbage", None),
        ("10", None),  # no unit
        ("S", None),  # no digits
        ("-1S", None),
        ("1.5S", None),
        ("1s", None),  # units are case-sensitive
        ("", None),
    ],
)
def test_grpc_timeout_becomes_the_request_timeout(value: str, seconds: float | None) -> None:
    sc, peer = server_pair()
    extra = [*GRPC_HEADERS, ("grpc-timeout", value)] if value else GRPC_HEADERS
    open_request(peer, 1, method="POST", path="/pkg.Svc/Call", extra=extra, end_stream=False)
    (req,) = to_ours(sc, peer)
    assert isinstance(req, RequestReceived)
    if seconds is None:
        assert req.timeout is None
    else:
        assert req.timeout == pytest.approx(seconds, rel=1e-12)


def test_grpc_timeout_on_a_plain_request_is_ignored() -> None:
    sc, peer = server_pair()
    open_request(peer, 1, extra=[("grpc-timeout", "1S")])
    (req,) = to_ours(sc, peer)
    assert isinstance(req, RequestReceived) and req.timeout is None


def grpc_request(timeout: float | None, **extra: str) -> RequestHeaders:
    items = [("host", "svc.local"), *GRPC_HEADERS, *extra.items()]
    request = RequestHeaders(
        [(k.replace("_", "-"), v) for k, v in items], method="POST", target="/pkg.Svc/Call"
    )
    request.timeout = timeout
    return request


@pytest.mark.parametrize(
    ("timeout", "extra", "wire"),
    [
        (1.5, {}, grpc.format_timeout(1.5)),
        (1.5, {"grpc_timeout": "99S"}, "1500000u"),  # the caller's value is replaced
        (0.25, {}, "250000u"),
        (None, {"grpc_timeout": "99S"}, "99S"),  # no deadline of ours: passed as is
        (INF, {"grpc_timeout": "7S"}, "7S"),
        (None, {}, None),
    ],
)
def test_client_passes_the_deadline_as_grpc_timeout(
    timeout: float | None, extra: dict[str, str], wire: str | None
) -> None:
    assert grpc.format_timeout(1.5) == "1500000u"
    cc, peer = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, grpc_request(timeout, **extra), end_stream=False)
    event = peer_request(peer.receive_data(cc.data_to_send()))
    values = [v for k, v in event.headers or () if k == b"grpc-timeout"]
    assert values == ([wire.encode()] if wire is not None else [])
    assert dict(event.headers or ())[b"te"] == b"trailers"


def test_client_sends_no_grpc_timeout_for_a_plain_request() -> None:
    cc, peer = client_pair()
    sid = cc.new_stream()
    request = RequestHeaders([("host", "a")], method="GET", target="/")
    request.timeout = 1.5
    cc.send_headers(sid, request, end_stream=True)
    event = peer_request(peer.receive_data(cc.data_to_send()))
    assert b"grpc-timeout" not in dict(event.headers or ())


def test_trailers_only_grpc_failure_maps_to_503_and_goes_back_out_as_200() -> None:
    cc, upstream = client_pair()
    sid = cc.new_stream()
    cc.send_headers(sid, grpc_request(None), end_stream=True)
    to_peer(cc, upstream)
    answer = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
        ("grpc-message", "down"),
    ]
    upstream.send_headers(sid, answer, end_stream=True)
    (resp,) = to_ours(cc, upstream)
    assert isinstance(resp, ResponseReceived) and (resp.status, resp.end_stream) == (503, True)
    assert isinstance(resp.headers, H2ResponseHeaders) and resp.headers.status == 200

    sc, downstream = server_pair()
    open_request(downstream, 1, method="POST", path="/pkg.Svc/Call", extra=GRPC_HEADERS)
    to_ours(sc, downstream)
    sc.send_headers(1, resp.headers, status=503, end_stream=True)
    (event, *_) = to_peer(sc, downstream)
    assert isinstance(event, h2.events.ResponseReceived)
    assert list(event.headers or ()) == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"14"),
        (b"grpc-message", b"down"),
    ]


def test_grpc_status_mapping_on_the_client() -> None:
    cc, upstream = client_pair()
    cases = {"0": 200, "4": 504, "8": 429, "12": 501, "16": 401, "99": 500, "x": 500}
    sids = {}
    for code in cases:
        sid = cc.new_stream()
        cc.send_headers(sid, grpc_request(None), end_stream=True)
        sids[sid] = code
    to_peer(cc, upstream)
    for sid, code in sids.items():
        upstream.send_headers(
            sid,
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", code)],
            end_stream=True,
        )
    events = to_ours(cc, upstream)
    assert [(e.stream_id, e.status) for e in events if isinstance(e, ResponseReceived)] == [
        (sid, cases[code]) for sid, code in sids.items()
    ]
    # a normal gRPC head (more to come) and a plain 200 keep their status
    a, b = cc.new_stream(), cc.new_stream()
    cc.send_headers(a, grpc_request(None), end_stream=True)
    cc.send_headers(b, RequestHeaders([("host", "h")], method="GET", target="/"), end_stream=True)
    to_peer(cc, upstream)
    upstream.send_headers(
        a, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14")]
    )
    upstream.send_headers(b, [(":status", "200"), ("grpc-status", "14")], end_stream=True)
    assert shape(to_ours(cc, upstream)) == [("resp", a, 200, False), ("resp", b, 200, True)]


def test_server_status_differing_from_the_grpc_mapping_is_sent_as_is() -> None:
    sc, peer = server_pair()
    open_request(peer, 1, method="POST", path="/pkg.Svc/Call", extra=GRPC_HEADERS)
    open_request(peer, 3)
    to_ours(sc, peer)
    resp = H2ResponseHeaders([("content-type", "application/grpc"), ("grpc-status", "14")], status=200)
    sc.send_headers(1, resp, status=502, end_stream=True)  # a filter set another status
    sc.send_headers(3, HeaderMap([("grpc-status", "14")]), status=503, end_stream=True)  # not an H2 answer
    heads = [e for e in to_peer(sc, peer) if isinstance(e, h2.events.ResponseReceived)]
    assert [dict(e.headers or ())[b":status"] for e in heads] == [b"502", b"503"]


def not_shorter(parsed: float, seconds: float) -> bool:
    """``parsed`` is at least ``seconds``, up to float noise: parse_timeout multiplies by
    inexact scales (``2745000 * 1e-6`` is 2.7449999999999997), far below the 8 digits
    grpc-timeout carries."""
    return parsed >= seconds * (1 - 1e-12)


@given(st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_timeout_is_never_shorter_and_fits_eight_digits(seconds: float) -> None:
    text = grpc.format_timeout(seconds)
    digits, unit = text[:-1], text[-1]
    assert unit in "HMSmun" and digits.isdigit() and 1 <= len(digits) <= 8
    parsed = grpc.parse_timeout(text)
    assert parsed is not None
    assert not_shorter(parsed, seconds)
    # the finest unit that fits: rounding up costs less than one of it
    scale = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "S": 1.0, "M": 60.0, "H": 3600.0}[unit]
    assert parsed - seconds <= scale * (1 + 1e-9)


@given(st.integers(0, 99_999_999), st.sampled_from("HMSmun"))
def test_parse_then_format_keeps_the_deadline(value: int, unit: str) -> None:
    seconds = grpc.parse_timeout(f"{value}{unit}")
    assert seconds is not None
    text = grpc.format_timeout(seconds)
    again = grpc.parse_timeout(text)
    assert again is not None and not_shorter(again, seconds)
    # at most one unit of the unit chosen more (float rounding may cost "245n" → "246n")
    assert (
        again - seconds
        <= {"n": 1e-9, "u": 1e-6, "m": 1e-3, "S": 1.0, "M": 60.0, "H": 3600.0}[text[-1]] * 1.000001
    )
    if value and unit in "nu" and value < 1000:
        assert text[-1] == "n"  # short deadlines keep nanosecond precision


@given(st.text(max_size=12))
def test_parse_timeout_never_raises(value: str) -> None:
    parsed = grpc.parse_timeout(value)
    assert parsed is None or parsed >= 0


def test_format_timeout_edges() -> None:
    assert grpc.format_timeout(0) == "1n"
    assert grpc.format_timeout(-5) == "1n"
    assert grpc.format_timeout(1e-10) == "1n"
    assert grpc.format_timeout(1e12) == "99999999H"


# -- client keepalive ----------------------------------------------------------------------------


def test_client_ping_keepalive() -> None:
    cc, peer = client_pair(keepalive_interval=5.0)
    assert cc.next_deadline() == INF  # not started
    cc.start(0.0)
    assert cc.next_deadline() == 5.0
    assert cc.on_timer(4.9) == [] and cc.data_to_send() == b""
    assert cc.on_timer(5.0) == []
    (ping,) = frames(cc.data_to_send())
    assert isinstance(ping, PingFrame) and "ACK" not in ping.flags
    assert cc.next_deadline() == 10.0
    # answered: the next one is sent again
    peer.receive_data(ping.serialize())
    assert cc.dispatch(peer.data_to_send()) == []
    assert cc.on_timer(10.0) == []
    (ping2,) = frames(cc.data_to_send())
    assert isinstance(ping2, PingFrame) and cc.next_deadline() == 15.0
    # unanswered: the connection is gone
    events = cc.on_timer(15.0)
    assert shape(events) == [("terminated",)] and cc.closing
    with pytest.raises(RuntimeError):
        cc.new_stream()


def test_client_keepalive_disabled() -> None:
    cc, _ = client_pair(keepalive_interval=0)
    cc.start(0.0)
    assert cc.next_deadline() == INF
    assert H2ClientStreamConnection().next_deadline() == INF


# -- abuse limits (server) ---------------------------------------------------------------------


def assert_calmed(
    sc: H2ServerStreamConnection, events: list[StreamEvent], code: int = Codes.ENHANCE_YOUR_CALM
) -> GoAwayFrame:
    assert sum(isinstance(e, ConnectionTerminated) for e in events) == 1, shape(events)
    assert sc.closing
    ga = goaway_of(sc.data_to_send())
    assert ga.error_code == code
    return ga


def open_and_reset(peer: h2.connection.H2Connection, first: int, n: int) -> int:
    sid = first
    for _ in range(n):
        open_request(peer, sid, method="POST", end_stream=False)
        peer.reset_stream(sid, Codes.CANCEL)
        sid += 2
    return sid


def test_rapid_reset_gets_goaway_enhance_your_calm() -> None:
    sc, peer = server_pair(max_resets_per_second=10)
    sid = open_and_reset(peer, 1, 10)
    events = to_ours(sc, peer)
    assert sum(isinstance(e, StreamReset) for e in events) == 10 and not sc.closing
    open_and_reset(peer, sid, 1)
    events = to_ours(sc, peer)
    ga = assert_calmed(sc, events)
    assert b"rapid reset" in ga.additional_data
    (terminated,) = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert "rapid reset" in terminated.message


def test_rapid_reset_in_one_batch() -> None:
    sc, peer = server_pair(max_resets_per_second=10)
    open_and_reset(peer, 1, 50)
    events = to_ours(sc, peer)
    assert_calmed(sc, events)
    cut = next(i for i, e in enumerate(events) if isinstance(e, ConnectionTerminated))
    before, after = events[:cut], events[cut + 1 :]
    # ten resets are allowed; the eleventh is where the connection ends
    assert [type(e) for e in before] == [RequestReceived, StreamReset] * 10 + [RequestReceived]
    # h2 had already parsed the rest of the batch: requests only, never another reset
    # (the proxy stops at ConnectionTerminated, see StreamServer._dispatch)
    assert all(isinstance(e, RequestReceived) for e in after)
    # after the calm-down, more bytes only say the connection is gone
    open_and_reset(peer, 201, 1)
    later = to_ours(sc, peer)
    assert all(isinstance(e, ConnectionTerminated) for e in later)


def test_reset_counter_is_kept_within_the_window() -> None:
    sc, peer = server_pair(max_resets_per_second=10)
    sid = open_and_reset(peer, 1, 10)
    to_ours(sc, peer)
    assert sc.next_deadline() == 0.0  # counting: a window starts at the next tick
    assert sc.on_timer(100.0) == []
    assert sc.next_deadline() == 101.0
    assert sc.on_timer(100.5) == []  # a tick inside the window forgets nothing
    open_and_reset(peer, sid, 1)
    assert_calmed(sc, to_ours(sc, peer))


def test_reset_counter_restarts_after_the_window() -> None:
    sc, peer = server_pair(max_resets_per_second=10, max_control_frames_per_second=1000)
    sid = 1
    now = 100.0
    for _ in range(5):
        # ten a window, window after window: never too many
        sid = open_and_reset(peer, sid, 10)
        assert not any(isinstance(e, ConnectionTerminated) for e in to_ours(sc, peer))
        assert sc.next_deadline() == 0.0
        assert sc.on_timer(now) == []
        assert sc.next_deadline() == now + 1.0
        now = sc.next_deadline() + 1.0
        assert sc.on_timer(now) == []  # past the window: the counters start again
        assert sc.next_deadline() == INF  # and nothing is left to count
    assert not sc.closing
    # and inside one window the limit still holds
    open_and_reset(peer, sid, 11)
    assert_calmed(sc, to_ours(sc, peer))


def test_ping_flood_gets_goaway() -> None:
    sc, peer = server_pair(max_control_frames_per_second=10)  # the peer's SETTINGS counted 1
    for i in range(8):
        peer.ping(b"%08d" % i)
    events = to_ours(sc, peer)
    assert events == [] and not sc.closing
    acks = of_type(frames(sc.data_to_send()), PingFrame)
    assert len(acks) == 8 and all("ACK" in f.flags for f in acks)
    for i in range(10):
        peer.ping(b"%08d" % i)
    assert_calmed(sc, to_ours(sc, peer))


def test_settings_flood_gets_goaway() -> None:
    sc, _ = server_pair(max_control_frames_per_second=10)
    flood = SettingsFrame(0, settings={SC.INITIAL_WINDOW_SIZE: 65535}).serialize() * 20
    assert_calmed(sc, sc.dispatch(flood))


def test_priority_flood_gets_goaway() -> None:
    sc, _ = server_pair(max_control_frames_per_second=10)
    flood = b"".join(
        PriorityFrame(sid, depends_on=0, stream_weight=15).serialize() for sid in range(1, 60, 2)
    )
    assert_calmed(sc, sc.dispatch(flood))


def test_empty_data_flood_gets_goaway() -> None:
    sc, peer = server_pair(max_control_frames_per_second=10)
    open_request(peer, 1, method="POST", end_stream=False)
    to_ours(sc, peer)
    flood = DataFrame(1, b"").serialize() * 20
    assert_calmed(sc, sc.dispatch(flood))


def test_unknown_frame_flood_gets_goaway() -> None:
    sc, _ = server_pair(max_control_frames_per_second=10)
    unknown = b"\x00\x00\x04\xfa\x00\x00\x00\x00\x00abcd"  # type 0xfa, 4 bytes, stream 0
    assert_calmed(sc, sc.dispatch(unknown * 20))


def test_control_counter_restarts_after_the_window() -> None:
    sc, peer = server_pair(max_control_frames_per_second=10)
    for round_ in range(5):
        for i in range(8):
            peer.ping(b"%08d" % i)
        assert to_ours(sc, peer) == [], round_
        sc.data_to_send()
        start = 10.0 * (round_ + 1)
        sc.on_timer(start)
        assert sc.next_deadline() == start + 1.0
        sc.on_timer(sc.next_deadline() + 1.0)
        assert sc.next_deadline() == INF
    assert not sc.closing


def test_continuation_flood_terminates_with_goaway() -> None:
    sc, peer = server_pair()
    block = peer.encoder.encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    )
    head = HeadersFrame(1, block[:2])
    head.flags.add("END_STREAM")  # and no END_HEADERS: more to come
    flood = head.serialize() + b"".join(ContinuationFrame(1, b"").serialize() for _ in range(100))
    events = sc.dispatch(flood)
    assert shape(events) == [("terminated",)]
    assert "continuation" in events[0].message.lower()  # type: ignore[attr-defined]
    assert_calmed(sc, events, code=Codes.PROTOCOL_ERROR)


def test_continuation_within_the_limit_is_fine() -> None:
    sc, peer = server_pair()
    block = peer.encoder.encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/c")]
    )
    head = HeadersFrame(1, block[:1])
    head.flags.add("END_STREAM")
    pieces = [ContinuationFrame(1, bytes([b])) for b in block[1:]]
    pieces[-1].flags.add("END_HEADERS")
    assert len(pieces) < 64
    events = sc.dispatch(head.serialize() + b"".join(f.serialize() for f in pieces))
    assert shape(events) == [("req", 1, "GET", "a", "/c", True)]


def test_hpack_bomb_terminates_with_goaway() -> None:
    sc, _ = server_pair(max_header_list_size=16384)
    encoder = Encoder()
    bomb = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    bomb += [("x-bomb", "a" * 3000)] * 40  # one literal, then 39 one-byte references
    block = encoder.encode(bomb)
    assert len(block) < 3200  # ~120 KB once decoded
    head = HeadersFrame(1, block)
    flags(head, "END_HEADERS", "END_STREAM")
    events = sc.dispatch(head.serialize())
    assert shape(events) == [("terminated",)]
    assert_calmed(sc, events)  # h2's DenialOfServiceError: ENHANCE_YOUR_CALM


def test_header_list_at_the_limit_is_fine_and_just_over_is_not() -> None:
    def request(n: int) -> bytes:
        block = Encoder().encode(
            [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/"), ("x-pad", "p" * n)]
        )
        head = HeadersFrame(1, block)
        flags(head, "END_HEADERS", "END_STREAM")
        return head.serialize()

    # RFC 9113 §6.5.2 sizes: name + value + 32 per field
    fixed = sum(
        len(k) + len(v) + 32
        for k, v in [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    )
    room = 2048 - fixed - len("x-pad") - 32
    sc, _ = server_pair(max_header_list_size=2048)
    assert shape(sc.dispatch(request(room))) == [("req", 1, "GET", "a", "/", True)]
    sc, _ = server_pair(max_header_list_size=2048)
    assert_calmed(sc, sc.dispatch(request(room + 1)))


def test_zero_window_stall_resets_the_stream() -> None:
    sc, peer = server_pair(peer_settings={"INITIAL_WINDOW_SIZE": 0}, stall_timeout=2.0)
    open_request(peer, 1)
    open_request(peer, 3)
    to_ours(sc, peer)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, b"s" * 1000, True)
    sc.send_headers(3, HeaderMap(), status=200, end_stream=True)  # a head-only answer is not stalled
    wire = frames(sc.data_to_send())
    assert of_type(wire, DataFrame) == [] and sc.buffered(1) == 1000
    peer.receive_data(b"".join(f.serialize() for f in wire))
    assert sc.next_deadline() == 0.0
    t = 50.0
    assert sc.on_timer(t) == []  # first seen blocked
    assert sc.next_deadline() == t + 1.0
    assert sc.on_timer(t + 1.0) == []
    assert sc.on_timer(t + 1.9) == []
    events = sc.on_timer(t + 2.0)
    assert shape(events) == [("reset", 1, ResetReason.LOCAL_RESET, False)]
    assert "window" in events[0].message  # type: ignore[attr-defined]
    (rst,) = of_type(frames(sc.data_to_send()), RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (1, Codes.CANCEL)
    assert sc.buffered(1) == 0 and not sc.streams and not sc.closing
    sc.on_timer(t + 3.0)
    assert sc.next_deadline() == INF  # nothing queued, nothing counted: the timer rests


def test_window_reopened_in_time_keeps_the_stream() -> None:
    sc, peer = server_pair(peer_settings={"INITIAL_WINDOW_SIZE": 0}, stall_timeout=2.0)
    open_request(peer, 1)
    to_ours(sc, peer)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, b"s" * 1000, True)
    peer.receive_data(sc.data_to_send())
    assert sc.on_timer(10.0) == []
    peer.increment_flow_control_window(1000, 1)
    assert shape(to_ours(sc, peer)) == [("flow", 1)]
    assert sc.buffered(1) == 0
    assert sc.on_timer(12.0) == [] and sc.on_timer(20.0) == []
    (data,) = of_type(frames(sc.data_to_send()), DataFrame)
    assert len(data.data) == 1000 and "END_STREAM" in data.flags


def test_slow_but_moving_reader_is_not_reset_as_stalled() -> None:
    sc, peer = server_pair(peer_settings={"INITIAL_WINDOW_SIZE": 0}, stall_timeout=2.0)
    open_request(peer, 1)
    to_ours(sc, peer)
    sc.send_headers(1, HeaderMap(), status=200, end_stream=False)
    sc.send_data(1, b"s" * 10_000, True)
    peer.receive_data(sc.data_to_send())
    events: list[StreamEvent] = []
    moved = 0
    t = 100.0
    events += sc.on_timer(t)
    for _ in range(6):
        # every second the peer reads 1,000 bytes: the window is never shut for long
        t += 1.0
        peer.increment_flow_control_window(1000, 1)
        events += to_ours(sc, peer)
        moved += sum(len(f.data) for f in of_type(frames(sc.data_to_send()), DataFrame))
        events += sc.on_timer(t)
    assert [e for e in events if isinstance(e, StreamReset)] == []
    assert moved == 6000 and sc.buffered(1) == 4000


def test_a_received_request_goes_on_as_received_until_edited() -> None:
    """h2 → h2: an unedited request's fields go upstream as they came (a never-indexed
    field stays never-indexed, split cookies stay split, host becomes :authority); one
    edit and the map is encoded again from its text."""
    from hpack import Decoder, NeverIndexedHeaderTuple

    sc = H2ServerStreamConnection()
    down = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None, normalize_outbound_headers=False)
    )
    down.initiate_connection()
    sc.dispatch(down.data_to_send())
    down.receive_data(sc.data_to_send())
    sc.dispatch(down.data_to_send())
    down.send_headers(
        1,
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"svc.local"),
            (b":path", b"/p"),
            (b"cookie", b"a=1"),
            NeverIndexedHeaderTuple(b"authorization", b"secret"),
            (b"cookie", b"b=2"),
            (b"host", b"svc.local"),
            (b"te", b"trailers"),
        ],
        end_stream=True,
    )
    (req,) = sc.dispatch(down.data_to_send())
    assert isinstance(req, RequestReceived)
    assert req.headers.get("cookie") == "a=1; b=2"  # one field for an HTTP/1 upstream
    assert req.headers.wire is not None
    cc, _ = client_pair()
    cc.start(0.0)
    decoder = Decoder()

    def sent_block() -> list[tuple[bytes, bytes]]:
        (head,) = of_type(frames(cc.data_to_send()), HeadersFrame)
        return [(bytes(n), bytes(v)) for n, v in decoder.decode(head.data, raw=True)]

    cc.send_headers(cc.new_stream(), req.headers, end_stream=True)
    assert sent_block()[3:] == [
        (b":path", b"/p"),
        (b"cookie", b"a=1"),
        (b"authorization", b"secret"),
        (b"cookie", b"b=2"),
        (b"te", b"trailers"),
    ]
    assert not any(e[0] == b"authorization" for e in decoder.header_table.dynamic_entries)
    # edited: encoded from the map (cookies joined, like any map)
    req.headers["x-added"] = "1"
    assert req.headers.wire is None
    cc.send_headers(cc.new_stream(), req.headers, end_stream=True)
    block = sent_block()
    assert (b"x-added", b"1") in block and block.count((b"cookie", b"a=1; b=2")) == 1
