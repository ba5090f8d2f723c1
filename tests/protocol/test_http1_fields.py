"""The plain head scan and the lazily split map (``mosnpy.protocol.http1.fields``).

The scan must agree with the full field scan (``parse_fields``) on every head it
accepts; the map must behave exactly like a split one, also when edited.
"""

from __future__ import annotations

import gc

import pytest
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mosnpy.protocol.http1 import fields
from mosnpy.protocol.http1._parse import REQUEST_FIELDS, RESPONSE_FIELDS, parse_fields
from mosnpy.protocol.http1.fields import Http1Fields, peek_lowered, scan_plain, split_raw
from mosnpy.protocol.http1.stream import Http1ClientStreamConnection, Http1ServerStreamConnection

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHAR = "".join(map(chr, range(0x21, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
plain_values = st.text(_VCHAR + " \t", max_size=20).map(lambda v: v.strip(" \t"))
SPECIAL = [
    ("content-length", st.sampled_from(["0", "5", "013", "12"])),
    ("host", st.sampled_from(["a", "example.com:80", "h"])),
    (
        "connection",
        st.sampled_from(["keep-alive", "close", "Keep-Alive", "upgrade", "x-foo", "close, x-foo"]),
    ),
    ("transfer-encoding", st.sampled_from(["chunked", "gzip, chunked"])),
    ("keep-alive", st.just("timeout=5")),
    ("te", st.sampled_from(["trailers", "gzip"])),
    ("expect", st.just("100-continue")),
    ("trailer", st.just("x-t")),
    ("proxy-connection", st.just("keep-alive")),
    ("x-foo", plain_values),
    ("x-mosn-global-timeout", st.just("100")),
]


def _case(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if f else c for c, f in zip(name, flips + [False] * len(name), strict=False))


@st.composite
def header_lines(draw: st.DrawFn) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 7))):
        if draw(st.booleans()):
            name = draw(st.text(TOKEN, min_size=1, max_size=10))
            value = draw(plain_values)
        else:
            name, values = draw(st.sampled_from(SPECIAL))
            value = draw(values)
            name = _case(name, draw(st.lists(st.booleans(), max_size=len(name))))
        pad = draw(st.sampled_from(["", " ", "\t", "  "]))
        tail = draw(st.sampled_from(["", " ", "\t"]))
        lines.append((name, pad + value + tail if value else value))
    return lines


def _valid(head: bytes, request: bool) -> bool:
    parser = (HttpRequestParser if request else HttpResponseParser)(object())
    try:
        parser.feed_data(head)
    except HttpParserUpgrade:
        return False
    except HttpParserError:
        return False
    return True


def _agree(block: bytes, eol: int, request: bool) -> None:
    plain = scan_plain(block, eol + 2, request)
    lines = block.decode("latin-1").split("\r\n")
    try:
        full = parse_fields(block, lines, 1, eol + 2, REQUEST_FIELDS if request else RESPONSE_FIELDS, 400)
    except Exception:
        assert plain is None  # the full scan refuses it: the plain scan must not accept it
        return
    if plain is None:
        return
    items, raw, cl, te, conn, expect, upgrade = full
    got_raw, got_cl, got_te, got_conn, got_host = plain
    assert got_raw == raw
    assert split_raw(got_raw) == items
    assert (got_cl, got_te, got_conn) == (cl, te, conn)
    assert expect is None and upgrade is None
    if request:
        hosts = [v for k, v in items if k == "host"]
        assert got_host == (hosts[0] if hosts else None)


@pytest.mark.parametrize("is_request", [True, False], ids=["request", "response"])
@SETTINGS
@given(lines=header_lines())
def test_the_plain_scan_agrees_with_the_full_scan(is_request: bool, lines: list[tuple[str, str]]) -> None:
    start = "GET /x HTTP/1.1" if is_request else "HTTP/1.1 200 OK"
    head = start + "\r\n" + "".join(f"{n}:{v}\r\n" for n, v in lines) + "\r\n"
    data = head.encode("latin-1")
    assume(_valid(data, request=is_request))
    block = data[:-2]
    _agree(block, block.find(b"\r\n"), request=is_request)


def test_a_plain_head_is_not_split_until_read() -> None:
    server = Http1ServerStreamConnection()
    [request] = server.dispatch(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Mosn-Global-Timeout: 250\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    )
    headers = request.headers
    assert request.host == "h"
    assert not headers.loaded
    assert headers.get("x-absent") is None and not headers.loaded
    assert headers.get("x-mosn-global-timeout") == "250"  # found whatever its case on the wire
    assert headers.loaded
    assert headers.get_all("x-a") == ["1", "2"]


def test_peeks_past_the_needle_cache_bound_still_answer_right() -> None:
    # Encoded names are remembered up to a bound; past it (and for names that cannot
    # be on the wire at all) a peek still tells absent from maybe-present.
    lowered = b"x-present: 1\r\n"
    for i in range(fields._NEEDLES_MAX + 50):
        assert peek_lowered(lowered, f"x-absent-{i}") is None
    assert len(fields._NEEDLES) <= fields._NEEDLES_MAX
    assert peek_lowered(lowered, "x-present") is ...
    assert peek_lowered(lowered, "x-pr\u00e9sent") is None
    assert peek_lowered(lowered, "x-\u0100") is None  # not latin-1: never on the wire


@pytest.mark.parametrize("edit", ["set", "add", "delete"])
def test_editing_an_unsplit_map_keeps_every_other_field(edit: str) -> None:
    m = Http1Fields(b"Host: h\r\nX-A: 1\r\nX-B:  2 \r\n")
    if edit == "set":
        m["x-a"] = "9"
        assert m.items_all() == [("host", "h"), ("x-a", "9"), ("x-b", "2")]
    elif edit == "add":
        m.add("X-C", "3")
        assert m.items_all() == [("host", "h"), ("x-a", "1"), ("x-b", "2"), ("x-c", "3")]
    else:
        del m["x-a"]
        assert m.items_all() == [("host", "h"), ("x-b", "2")]
    assert m.raw is None  # edited: serialised again when sent


def test_an_unedited_response_goes_on_as_its_raw_bytes_and_stays_unsplit() -> None:
    server = Http1ServerStreamConnection()
    client = Http1ClientStreamConnection()
    [request] = server.dispatch(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    sid = client.new_stream()
    client.send_headers(sid, request.headers, end_stream=True)
    assert client.data_to_send() == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    head, body = client.dispatch(
        b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    )
    server.send_headers(request.stream_id, head.headers, status=200, end_stream=False)
    server.send_data(request.stream_id, body.data, True)
    assert server.data_to_send() == b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\nok"
    assert not head.headers.loaded


def test_forwarded_maps_go_out_edited_and_leave_no_reference_cycle() -> None:
    # The edited map is what is written; the parsed head is not pointed back at it,
    # so a request's head and map are freed by reference counting, not the cyclic GC.
    server = Http1ServerStreamConnection()
    client = Http1ClientStreamConnection()
    [request] = server.dispatch(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    request.headers["x-added"] = "1"
    client.send_headers(client.new_stream(), request.headers, end_stream=True)
    assert client.data_to_send() == b"GET / HTTP/1.1\r\nhost: h\r\nx-added: 1\r\n\r\n"
    head, body = client.dispatch(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    head.headers["x-edited"] = "2"
    server.send_headers(request.stream_id, head.headers, status=200, end_stream=False)
    server.send_data(request.stream_id, body.data, True)
    assert server.data_to_send() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-edited: 2\r\n\r\nok"
    for sent in (request.headers, head.headers):
        assert sent.head.headers is not sent  # type: ignore[attr-defined]
        assert sent not in gc.get_referents(sent.head)  # type: ignore[attr-defined]
