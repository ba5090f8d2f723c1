"""Hypothesis properties of the HTTP/1.1 codecs.

(a) generated requests and responses, encoded, split at random points and fed back,
    give the same message (also across h11, as an independent implementation);
(b) pipelined requests in one buffer all come out, in order;
(c) arbitrary or mutated bytes only ever give events or ``Http1Error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import (
    Body,
    BodyFraming,
    EndOfMessage,
    Event,
    Http1ClientCodec,
    Http1Error,
    Http1ServerCodec,
    RequestHead,
    ResponseHead,
)
from mosnpy.protocol.http1.matcher import METHODS

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies -----------------------------------------------------------------------

_RESERVED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "expect",
}
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(TOKEN, min_size=1, max_size=12).filter(lambda n: n.lower() not in _RESERVED)
_VCHAR = "".join(map(chr, range(0x21, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
values = st.one_of(
    st.just(""),
    st.builds(
        lambda a, mid, b: a + mid + b if mid or b else a,
        st.text(_VCHAR, min_size=1, max_size=1),
        st.text(_VCHAR + " \t", max_size=30),
        st.text(_VCHAR, min_size=1, max_size=1),
    ),
)
fields = st.lists(st.tuples(names, values), max_size=8)
methods = st.sampled_from(sorted(m.decode() for m in METHODS if m != b"CONNECT"))
targets = st.one_of(
    st.just("*"),
    st.builds(
        lambda p: "/" + p, st.text("abcdefghijklmnopqrstuvwxyzABC0123456789-._~!$&'()*+,;=:@/?%", max_size=40)
    ),
)
pieces = st.lists(st.binary(min_size=1, max_size=300), max_size=6)


@dataclass
class Message:
    """A generated message: head fields and a body with its framing."""

    headers: list[tuple[str, str]]
    framing: BodyFraming
    body: list[bytes]
    trailers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "GET"
    target: str = "/"
    status: int = 200


@st.composite
def bodies(
    draw: st.DrawFn, *, allow_close: bool = False
) -> tuple[BodyFraming, list[bytes], list[tuple[str, str]]]:
    options = [BodyFraming.NONE, BodyFraming.LENGTH, BodyFraming.CHUNKED]
    if allow_close:
        options.append(BodyFraming.CLOSE)
    framing = draw(st.sampled_from(options))
    if framing is BodyFraming.NONE:
        return framing, [], []
    body = draw(pieces)
    trailers = draw(fields) if framing is BodyFraming.CHUNKED else []
    return framing, body, trailers


@st.composite
def requests(draw: st.DrawFn) -> Message:
    framing, body, trailers = draw(bodies())
    return Message(draw(fields), framing, body, trailers, method=draw(methods), target=draw(targets))


@st.composite
def responses(draw: st.DrawFn) -> Message:
    status = draw(st.sampled_from([200, 201, 204, 206, 304, 400, 404, 500, 503, 599]))
    if status in (204, 304):
        return Message(draw(fields), BodyFraming.NONE, [], status=status)
    framing, body, trailers = draw(bodies(allow_close=True))
    return Message(draw(fields), framing, body, trailers, status=status)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given (arbitrary, reduced modulo length) positions."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points) if b > a]


# -- encoding and comparing --------------------------------------------------------------


def encode_request(client: Http1ClientCodec, m: Message) -> bytes:
    length = sum(map(len, m.body)) if m.framing is BodyFraming.LENGTH else None
    head = RequestHead(m.method, m.target, HeaderMap(m.headers), content_length=length)
    out = [client.encode_request_head(head, m.framing)]
    out += [client.encode_body(p, m.framing) for p in m.body]
    out.append(client.encode_end(m.framing, HeaderMap(m.trailers) if m.trailers else None))
    return b"".join(out)


def encode_response(server: Http1ServerCodec, m: Message) -> bytes:
    """``m`` as our server writes it; NONE framing becomes ``content-length: 0`` there."""
    length = sum(map(len, m.body)) if m.framing is BodyFraming.LENGTH else None
    head = ResponseHead(m.status, HeaderMap(m.headers), content_length=length)
    out = [server.encode_response_head(head, m.framing)]
    out += [server.encode_body(p, m.framing) for p in m.body]
    out.append(server.encode_end(m.framing, HeaderMap(m.trailers) if m.trailers else None))
    return b"".join(out)


def lower(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in items]


def expected_items(m: Message) -> list[tuple[str, str]]:
    items = lower(m.headers)
    if m.framing is BodyFraming.LENGTH:
        items.append(("content-length", str(sum(map(len, m.body)))))
    return items


def as_received(m: Message) -> Message:
    """What a client reads back from our encoding of response ``m``."""
    if m.framing is BodyFraming.NONE and m.status not in (204, 304):
        return Message(m.headers, BodyFraming.LENGTH, [], status=m.status)
    return m


def check_message(events: list[Event], m: Message, head_type: type) -> list[Event]:
    """Check that ``events`` start with message ``m``; return the events after it."""
    head = events[0]
    assert isinstance(head, head_type)
    assert isinstance(head, RequestHead | ResponseHead)
    if isinstance(head, RequestHead):
        assert (head.method, head.target) == (m.method, m.target)
    else:
        assert head.status == m.status
    assert head.headers.items_all() == expected_items(m)
    assert head.framing is m.framing
    i = 1
    data = b""
    while isinstance(events[i], Body):
        body = events[i]
        assert isinstance(body, Body) and body.data
        data += body.data
        i += 1
    assert data == b"".join(m.body)
    end = events[i]
    assert isinstance(end, EndOfMessage)
    if m.trailers:
        assert end.trailers is not None and end.trailers.items_all() == lower(m.trailers)
    else:
        assert end.trailers is None
    return events[i + 1 :]


def feed(codec: Http1ServerCodec | Http1ClientCodec, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for c in chunks:
        events += codec.receive_data(c)
    return events


# -- (a) round trips ----------------------------------------------------------------------


@SETTINGS
@given(requests(), st.lists(st.integers(min_value=0), max_size=8))
def test_request_round_trip(m: Message, cuts: list[int]) -> None:
    wire = encode_request(Http1ClientCodec(), m)
    rest = check_message(feed(Http1ServerCodec(max_header_size=1 << 20), split(wire, cuts)), m, RequestHead)
    assert rest == []


@SETTINGS
@given(responses(), st.lists(st.integers(min_value=0), max_size=8))
def test_response_round_trip(m: Message, cuts: list[int]) -> None:
    wire = encode_response(Http1ServerCodec(), m)
    client = Http1ClientCodec()
    client.encode_request_head(RequestHead("GET", "/", HeaderMap()), BodyFraming.NONE)
    events = feed(client, split(wire, cuts))
    if m.framing is BodyFraming.CLOSE:
        events += client.receive_data(b"")
    assert check_message(events, as_received(m), ResponseHead) == []


@SETTINGS
@given(requests(), st.lists(st.integers(min_value=0), max_size=4))
def test_parsed_request_forwards_unchanged(m: Message, cuts: list[int]) -> None:
    """Parse, then encode the unedited head again: byte for byte what came in (raw path)."""
    wire = encode_request(Http1ClientCodec(), m)
    events = feed(Http1ServerCodec(max_header_size=1 << 20), split(wire, cuts))
    head = events[0]
    assert isinstance(head, RequestHead) and head.headers.raw is not None
    client = Http1ClientCodec()
    again = client.encode_request_head(head, head.framing)
    again += b"".join(client.encode_body(e.data, head.framing) for e in events if isinstance(e, Body))
    end = events[-1]
    assert isinstance(end, EndOfMessage)
    again += client.encode_end(head.framing, end.trailers)
    if m.framing is not BodyFraming.CHUNKED:
        assert again == wire
    else:  # chunk boundaries follow the splits; compare what the chunks carry
        assert again.split(b"\r\n\r\n", 1)[0] == wire.split(b"\r\n\r\n", 1)[0]
        assert (
            check_message(Http1ServerCodec(max_header_size=1 << 20).receive_data(again), m, RequestHead) == []
        )


import h11  # noqa: E402 - a test dependency (setup.cfg [test]), the reference implementation


@SETTINGS
@given(requests(), st.lists(st.integers(min_value=0), max_size=4))
def test_h11_reads_what_we_write(m: Message, cuts: list[int]) -> None:
    m.headers.insert(0, ("Host", "example.com"))  # h11 insists on it
    wire = encode_request(Http1ClientCodec(), m)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    got: list[object] = []
    for chunk in [*split(wire, cuts), b""]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                break
            got.append(event)
            if isinstance(event, h11.EndOfMessage):
                break
        if got and isinstance(got[-1], h11.EndOfMessage):
            break
    request = got[0]
    assert isinstance(request, h11.Request)
    assert (request.method.decode(), request.target.decode()) == (m.method, m.target)
    h11_items = [(k.decode(), v.decode("latin-1")) for k, v in request.headers]
    framing_items = {"content-length", "transfer-encoding"}
    assert [kv for kv in h11_items if kv[0] not in framing_items] == lower(m.headers)
    assert b"".join(bytes(e.data) for e in got if isinstance(e, h11.Data)) == b"".join(m.body)
    end = got[-1]
    assert isinstance(end, h11.EndOfMessage)
    assert [(k.decode(), v.decode("latin-1")) for k, v in end.headers] == lower(m.trailers)


@SETTINGS
@given(responses(), st.lists(st.integers(min_value=0), max_size=4))
def test_we_read_what_h11_writes(m: Message, cuts: list[int]) -> None:
    if m.framing is BodyFraming.NONE and m.status not in (204, 304):
        m.framing = BodyFraming.LENGTH  # h11 would pick chunked; say "no body" explicitly
    conn = h11.Connection(h11.SERVER)
    # h11 only delimits a body by closing when talking to an HTTP/1.0 client.
    version = b"1.0" if m.framing is BodyFraming.CLOSE else b"1.1"
    conn.receive_data(b"GET / HTTP/" + version + b"\r\nHost: h\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    headers = [(k.encode(), v.encode("latin-1")) for k, v in m.headers]
    if m.framing is BodyFraming.LENGTH:
        headers.append((b"content-length", str(sum(map(len, m.body))).encode()))
    elif m.framing is BodyFraming.CHUNKED:
        headers.append((b"transfer-encoding", b"chunked"))
    elif m.framing is BodyFraming.CLOSE:
        headers.append((b"connection", b"close"))
    wire = conn.send(h11.Response(status_code=m.status, headers=headers, reason=b"Some Reason"))
    assert wire is not None
    for p in m.body:
        wire += conn.send(h11.Data(data=p)) or b""
    trailers = [(k.encode(), v.encode("latin-1")) for k, v in m.trailers]
    wire += conn.send(h11.EndOfMessage(headers=trailers)) or b""

    client = Http1ClientCodec()
    client.encode_request_head(RequestHead("GET", "/", HeaderMap([("host", "h")])), BodyFraming.NONE)
    events = feed(client, split(wire, cuts))
    if m.framing is BodyFraming.CLOSE:
        events += client.receive_data(b"")
    head = events[0]
    assert isinstance(head, ResponseHead) and head.reason == "Some Reason"
    assert check_message(events, m, ResponseHead) == []


# -- (b) pipelining -------------------------------------------------------------------------


@SETTINGS
@given(st.lists(requests(), min_size=10, max_size=10), st.lists(st.integers(min_value=0), max_size=10))
def test_ten_pipelined_requests(ms: list[Message], cuts: list[int]) -> None:
    client = Http1ClientCodec()
    wire = b"".join(encode_request(client, m) for m in ms)
    server = Http1ServerCodec(max_header_size=1 << 20)
    for events in (
        server.receive_data(wire),
        feed(Http1ServerCodec(max_header_size=1 << 20), split(wire, cuts)),
    ):
        assert [e.target for e in events if isinstance(e, RequestHead)] == [m.target for m in ms]
        for m in ms:
            events = check_message(events, m, RequestHead)
        assert events == []


# -- (c) arbitrary input ----------------------------------------------------------------


def feed_only_http1_errors(codec: Http1ServerCodec | Http1ClientCodec, chunks: list[bytes]) -> None:
    """Feed chunks then EOF; anything but events or Http1Error fails the test."""
    try:
        for c in [*chunks, b""]:
            for e in codec.receive_data(c):
                assert isinstance(e, RequestHead | ResponseHead | Body | EndOfMessage)
                if isinstance(e, Body):
                    assert type(e.data) is bytes and e.data
    except Http1Error as exc:
        assert 400 <= exc.status <= 599
        with pytest.raises(Http1Error):
            codec.receive_data(b"x")


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 48, 58, 59, 127, 255, *b"aZ"]))
        if op == "flip" and data:
            data[i] = byte
        elif op == "insert":
            data.insert(i, byte)
        elif data:
            del data[i]
    return bytes(data)


REQUEST_SAMPLE = (
    b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    b"5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
)
RESPONSE_SAMPLE = (
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)


@SETTINGS
@given(
    st.one_of(st.binary(max_size=300), mutated(REQUEST_SAMPLE)),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_server_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    feed_only_http1_errors(Http1ServerCodec(max_header_size=128), split(data, cuts))


@SETTINGS
@given(
    st.one_of(st.binary(max_size=300), mutated(RESPONSE_SAMPLE)),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_client_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    client = Http1ClientCodec(max_header_size=128)
    for method in ("GET", "HEAD", "GET"):
        client.encode_request_head(RequestHead(method, "/", HeaderMap()), BodyFraming.NONE)
    feed_only_http1_errors(client, split(data, cuts))
