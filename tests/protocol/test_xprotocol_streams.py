"""xprotocol stream connections, sans-I/O: frames in, neutral events out, bytes back.

No trio, no sockets: each test feeds bytes and reads events and the outbox, the way
h2's tests drive ``H2Connection``.
"""

from __future__ import annotations

from mosnpy_toy.codec import ToyCodec, ToyFrame

from mosnpy.protocol.api import (
    ConnectionTerminated,
    ProtocolConversionError,
    RequestReceived,
    ResetReason,
    ResponseReceived,
    StreamReset,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.registry import lookup
from mosnpy.protocol.xprotocol import XClientStreamConnection, XHeaders, XServerStreamConnection

CODEC = ToyCodec()


def req(rid: int, body: bytes = b"x", kind: int = 0, timeout_ms: int = 0, **headers: str) -> bytes:
    return CODEC.encode(
        ToyFrame(kind, rid, {"service": "svc", "method": "echo", **headers}, body, 0, timeout_ms)
    )


def frames(data: bytes) -> list[ToyFrame]:
    buf, out = bytearray(data), []
    while (frame := CODEC.decode(buf)) is not None:
        out.append(frame)
    assert not buf
    return out


def test_requests_become_streams_with_their_own_ids_and_answers_get_the_callers_id() -> None:
    sc = XServerStreamConnection(ToyCodec())
    # two requests with the same caller id (a buggy client): two distinct streams
    events = sc.dispatch(req(7, b"a") + req(7, b"b", timeout_ms=250))
    assert [type(e) for e in events] == [RequestReceived, RequestReceived]
    first, second = events
    assert isinstance(first, RequestReceived) and isinstance(second, RequestReceived)
    assert first.stream_id != second.stream_id
    assert (first.host, first.method, first.end_stream, first.oneway) == ("svc", "echo", True, False)
    assert first.timeout is None and second.timeout == 0.25
    assert sc.active_streams == 2
    # answer the second with a frame whose id is something else entirely
    answer = XHeaders(ToyFrame(2, 999, {}, b"B"), "toy")
    sc.send_headers(second.stream_id, answer, status=200, end_stream=True)
    (out,) = frames(sc.data_to_send())
    assert (out.request_id, out.body) == (7, b"B")
    assert sc.data_to_send() == b""  # the outbox was emptied
    assert not sc.expects_response(second.stream_id) and sc.expects_response(first.stream_id)


def test_frames_split_anywhere_give_the_same_events() -> None:
    data = req(1) + req(2, b"yy") + req(3, b"zzz")
    for cut in range(1, len(data)):
        sc = XServerStreamConnection(ToyCodec())
        events = sc.dispatch(data[:cut]) + sc.dispatch(data[cut:])
        assert [e.stream_id for e in events] == [1, 2, 3], cut


def test_heartbeats_are_answered_below_the_proxy_and_oneways_expect_nothing() -> None:
    sc = XServerStreamConnection(ToyCodec())
    events = sc.dispatch(CODEC.encode(ToyFrame(3, 41)) + req(5, kind=1))
    (oneway,) = events
    assert isinstance(oneway, RequestReceived) and oneway.oneway
    assert not sc.expects_response(oneway.stream_id)
    (pong,) = frames(sc.data_to_send())
    assert (pong.kind, pong.request_id) == (4, 41)


def test_local_reply_is_the_codecs_hijack_frame_with_the_callers_id() -> None:
    sc = XServerStreamConnection(ToyCodec())
    (event,) = sc.dispatch(req(12))
    sc.send_local_reply(event.stream_id, 504, b"upstream timeout\n", HeaderMap())
    (reply,) = frames(sc.data_to_send())
    assert (reply.kind, reply.request_id, reply.status) == (2, 12, 7)  # toy's timeout status
    assert reply.headers["error"] == "upstream timeout"


def test_garbage_terminates_the_connection() -> None:
    sc = XServerStreamConnection(ToyCodec())
    events = sc.dispatch(req(1) + b"NOT A TOY FRAME")
    assert isinstance(events[0], RequestReceived)
    assert isinstance(events[1], ConnectionTerminated)


def test_foreign_headers_cannot_be_sent() -> None:
    sc = XServerStreamConnection(ToyCodec())
    (event,) = sc.dispatch(req(1))
    try:
        sc.send_headers(event.stream_id, HeaderMap([("a", "b")]), status=200, end_stream=True)
    except ProtocolConversionError as exc:
        assert "toy" in str(exc)
    else:
        raise AssertionError("expected ProtocolConversionError")


def test_client_remaps_ids_and_matches_responses_to_streams() -> None:
    client = XClientStreamConnection(ToyCodec(), keepalive_interval=0)
    server = XServerStreamConnection(ToyCodec())
    (down,) = server.dispatch(req(777, b"hello"))
    assert isinstance(down, RequestReceived)
    sid = client.new_stream()
    client.send_headers(sid, down.headers, end_stream=True)
    (sent,) = frames(client.data_to_send())
    assert sent.request_id == sid == 1  # the upstream id is the connection's own
    # a stray (unknown id) and the real answer
    events = client.dispatch(
        CODEC.encode(ToyFrame(2, 55, {}, b"?")) + CODEC.encode(ToyFrame(2, sid, {}, b"ok"))
    )
    (resp,) = events
    assert isinstance(resp, ResponseReceived)
    assert (resp.stream_id, resp.status, resp.end_stream) == (sid, 200, True)
    assert client.stray == 1 and client.active_streams == 0
    # the response goes back down with the caller's id
    server.send_headers(down.stream_id, resp.headers, status=resp.status, end_stream=True)
    (back,) = frames(server.data_to_send())
    assert (back.request_id, back.body) == (777, b"ok")


def test_client_maps_error_statuses_and_late_answers_after_reset_are_strays() -> None:
    client = XClientStreamConnection(ToyCodec(), keepalive_interval=0)
    a, b = client.new_stream(), client.new_stream()
    client.reset(a, ResetReason.GLOBAL_TIMEOUT)
    events = client.dispatch(CODEC.encode(ToyFrame(2, a)) + CODEC.encode(ToyFrame(2, b, status=4)))
    (resp,) = events
    assert isinstance(resp, ResponseReceived) and resp.stream_id == b and resp.status == 503
    assert client.stray == 1


def test_connection_lost_resets_every_open_stream() -> None:
    client = XClientStreamConnection(ToyCodec(), keepalive_interval=0)
    sids = [client.new_stream() for _ in range(3)]
    resets = client.connection_lost("gone")
    assert [(r.stream_id, r.reason) for r in resets if isinstance(r, StreamReset)] == [
        (s, ResetReason.CONNECTION_TERMINATION) for s in sids
    ]
    assert client.active_streams == 0


def test_keepalive_timers_without_a_clock() -> None:
    """Heartbeats every interval while idle; misses counted; the third terminates."""
    client = XClientStreamConnection(
        ToyCodec(), keepalive_interval=10, keepalive_timeout=1, keepalive_failures=3
    )
    client.start(100.0)
    assert client.next_deadline() == 110.0
    assert client.on_timer(105.0) == [] and client.data_to_send() == b""  # early: nothing
    assert client.on_timer(110.0) == []
    (probe,) = frames(client.data_to_send())
    assert probe.kind == 3 and client.next_deadline() == 111.0
    # answered in time: the failure count stays 0, the next probe is due at 120
    assert client.dispatch(CODEC.encode(ToyFrame(4, probe.request_id))) == []
    assert client.heartbeat_failures == 0 and client.next_deadline() == 120.0
    # a busy connection sends no probe
    busy = client.new_stream()
    client.on_timer(120.0)
    assert client.data_to_send() == b""
    client.reset(busy, ResetReason.LOCAL_RESET)
    # three unanswered probes in a row end the connection
    now = 130.0
    outcome: list[object] = []
    for _ in range(3):
        client.on_timer(now)  # sends
        assert frames(client.data_to_send())[0].kind == 3
        outcome = client.on_timer(now + 1)  # times out
        now += 11
    assert client.heartbeat_failures == 3
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionTerminated)


def test_descriptor_names_the_stream_connections_and_pool_mode() -> None:
    from mosnpy.protocol.api import PoolMode

    toy = lookup("toy")
    assert toy.pool_mode is PoolMode.MULTIPLEX
    assert toy.server_stream_connection is not None and toy.client_stream_connection is not None
    assert isinstance(toy.server_stream_connection(), XServerStreamConnection)
    assert isinstance(toy.client_stream_connection(), XClientStreamConnection)


class _CountingFrame(ToyFrame):
    """A toy frame that counts how often its header view is decoded."""

    views = 0

    def header_view(self) -> dict[str, str]:
        type(self).views += 1
        return self.headers


def test_a_frames_headers_are_decoded_only_when_read_and_looked_up_case_insensitively() -> None:
    _CountingFrame.views = 0
    frame = _CountingFrame(0, 1, {"Service": "first", "service": "second", "X-B": "1"}, b"")
    headers = XHeaders(frame, "toy")
    sc = XClientStreamConnection(ToyCodec())
    sc.send_headers(sc.new_stream(), headers, end_stream=True)
    assert _CountingFrame.views == 0  # forwarded as it came: nothing decoded
    assert headers.get("SERVICE") == "first"  # the first of a name wins, whatever its case
    assert headers.get("x-b") == "1" and headers.get("absent") is None
    assert headers.items_all() == [("service", "first"), ("service", "second"), ("x-b", "1")]
    headers["x-c"] = "2"  # an edit works on the whole map
    assert headers.get("x-c") == "2" and headers.get_all("service") == ["first", "second"]
