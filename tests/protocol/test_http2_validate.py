"""mosnpy.protocol.http2.validate gives h2's verdict on every header block, faster.

The differential property draws header blocks near the edges of RFC 9113 §8.2/§8.3
(names with upper case, colons, spaces; values with CR, LF, NUL and surrounding
blanks; pseudo fields out of order, repeated, unknown or on the wrong side) and holds
our verdict equal to h2's own inbound validation for requests, responses and trailers.
"""

from __future__ import annotations

import h2.exceptions
import h2.utilities
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mosnpy.protocol.http2.validate import MalformedHeaders, request_block, response_block, trailer_block

Block = list[tuple[bytes, bytes]]

_NAMES = st.sampled_from(
    [
        b":method", b":scheme", b":path", b":authority", b":status", b":protocol", b":custom",
        b"host", b"cookie", b"te", b"connection", b"keep-alive", b"upgrade", b"transfer-encoding",
        b"proxy-connection", b"content-type", b"x-a", b"X-Upper", b"bad name", b"a:b", b"", b"\x7fx",
        b"x\x00", b"grpc-timeout",
    ]
)  # fmt: skip
_VALUES = st.sampled_from(
    [
        b"", b"GET", b"CONNECT", b"http", b"/", b"/x", b"a.test", b"b.test", b"200", b"trailers",
        b"Trailers", b"gzip", b" lead", b"trail\t", b"a\r\nb", b"nul\x00", b"in side", b"websocket",
    ]
)  # fmt: skip


def _h2_verdict(block: Block, *, response: bool, trailer: bool) -> bool:
    flags = h2.utilities.HeaderValidationFlags(
        is_client=response,
        is_trailer=trailer,
        is_response_header=response and not trailer,
        is_push_promise=False,
    )
    try:
        list(h2.utilities.validate_headers(block, flags))
    except h2.exceptions.ProtocolError:
        return False
    return True


def _ours(check: object, block: Block) -> bool:
    try:
        check(block)  # type: ignore[operator]
    except MalformedHeaders:
        return False
    return True


def _request(*extra: tuple[bytes, bytes]) -> Block:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a.test"), *extra]


#: blocks of any shape, and valid request heads with a few fields added (so that one
#: bad field is the only thing wrong, and a missed check shows)
_BLOCKS = st.lists(st.tuples(_NAMES, _VALUES), max_size=7)
_REQUESTS = st.one_of(
    _BLOCKS, st.lists(st.tuples(_NAMES, _VALUES), max_size=3).map(lambda extra: _request(*extra))
)


@pytest.mark.timeout(120)
@settings(max_examples=3000, deadline=None)
@given(_REQUESTS)
@example(_request())
@example([(b":method", b"CONNECT"), (b":authority", b"a.test:443")])
@example(
    [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b"host", b"a.test"),
    ]
)
@example(_request((b"host", b"b.test")))
@example(_request((b"te", b"Trailers")))
@example(_request((b"host", b"a.test"), (b"host", b"a.test")))
def test_request_verdicts_equal_h2s(block: Block) -> None:
    assert _ours(request_block, block) == _h2_verdict(block, response=False, trailer=False)


@pytest.mark.timeout(120)
@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
@example([(b":status", b"200"), (b"content-type", b"text/plain")])
@example([(b"content-type", b"text/plain"), (b":status", b"200")])
def test_response_verdicts_equal_h2s(block: Block) -> None:
    # h2 does not read :status; we must (it becomes the response's status): a status
    # that is not three digits is ours alone to refuse.
    statuses = [v for n, v in block if n == b":status"]
    if statuses and not (len(statuses[0]) == 3 and statuses[0].isdigit() and statuses[0][:1] != b"0"):
        assert not _ours(response_block, block)
        return
    assert _ours(response_block, block) == _h2_verdict(block, response=True, trailer=False)


@pytest.mark.timeout(120)
@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
@example([(b"grpc-status", b"0")])
def test_trailer_verdicts_equal_h2s(block: Block) -> None:
    assert _ours(trailer_block, block) == _h2_verdict(block, response=False, trailer=True)


def test_request_block_decodes_and_joins_cookies() -> None:
    pseudo, regular = request_block(
        _request((b"cookie", b"a=1"), (b"x-a", b"\xe9"), (b"cookie", b"b=2"), (b"cookie", b"c=3"))
    )
    assert pseudo == {":method": "GET", ":scheme": "http", ":path": "/", ":authority": "a.test"}
    assert regular == [("x-a", "\xe9"), ("cookie", "a=1; b=2; c=3")]


def test_response_block_reads_the_status() -> None:
    assert response_block([(b":status", b"204"), (b"x-a", b"1")]) == (204, [("x-a", "1")])
    with pytest.raises(MalformedHeaders, match="status"):
        response_block([(b":status", b"20x")])


@pytest.mark.parametrize(
    "block",
    [
        _request((b"bad name", b"x")),
        _request((b"x-a", b"a\r\nb")),
        _request((b"x-a", b" lead")),
        _request((b"connection", b"close")),
        _request((b"te", b"gzip")),
        [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")],
        [(b"host", b"a"), *_request()],
    ],
)
def test_malformed_requests_name_the_reason(block: Block) -> None:
    with pytest.raises(MalformedHeaders) as info:
        request_block(block)
    assert str(info.value)
