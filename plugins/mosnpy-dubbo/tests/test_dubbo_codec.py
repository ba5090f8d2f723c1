"""The dubbo codec against real frames (tests/vectors, captured between third-party
dubbo clients and servers), the conformance kit, and Hypothesis: the construct spec and
the struct fast path agree on every generated frame."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosnpy_dubbo import hessian, request, spec
from mosnpy_dubbo.codec import DubboCodec, DubboFrame
from mosnpy_dubbo.request import RequestView, count_arguments, request_view

from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, StreamType
from mosnpy.testing import check_xcodec

VECTORS = Path(__file__).parent / "vectors"
CASES = [
    (f"{prefix}-{name}", fields)
    for prefix in ("dubbo-node", "dubbo-py")
    for name, fields in json.loads((VECTORS / f"{prefix}-index.json").read_text()).items()
]
CODEC = DubboCodec()


def wire(name: str) -> bytes:
    return bytes.fromhex((VECTORS / f"{name}.hex").read_text().strip())


def decoded(name: str) -> DubboFrame:
    frame = CODEC.decode(bytearray(wire(name)))
    assert isinstance(frame, DubboFrame)
    return frame


def test_the_vectors_are_all_here() -> None:
    assert len(CASES) == 14 and len(list(VECTORS.glob("dubbo-*.hex"))) == 14


@pytest.mark.parametrize(("name", "fields"), CASES, ids=[name for name, _ in CASES])
def test_real_frames_decode_and_re_encode(name: str, fields: dict[str, object]) -> None:
    data = wire(name)
    buf = bytearray(data)
    frame = CODEC.decode(buf)
    assert isinstance(frame, DubboFrame) and not buf
    assert len(data) == fields["bytes"]
    assert (frame.request_id, frame.status, frame.flag) == (fields["id"], fields["status"], fields["flag"])
    expected_type = StreamType.RESPONSE if fields["dir"] == "s2c" else StreamType.REQUEST
    assert frame.stream_type is expected_type
    assert frame.is_heartbeat is (fields["kind"] == "event")
    assert frame.timeout_ms == 0 and frame.serialization == 2
    assert CODEC.encode(frame) == data


@pytest.mark.parametrize(("name", "fields"), CASES, ids=[name for name, _ in CASES])
def test_a_new_id_patches_only_the_id_bytes(name: str, fields: dict[str, object]) -> None:
    data = wire(name)
    frame = decoded(name)
    CODEC.set_request_id(frame, 0x0123456789ABCDEF)
    patched = CODEC.encode(frame)
    assert patched == data[:4] + bytes.fromhex("0123456789abcdef") + data[12:]
    assert CODEC.get_request_id(frame) == 0x0123456789ABCDEF
    CODEC.set_request_id(frame, int(str(fields["id"])))
    assert CODEC.encode(frame) == data


def test_the_conformance_kit_passes_on_every_vector() -> None:
    check_xcodec(DubboCodec(), [wire(name) for name, _ in CASES])


# -- header view --------------------------------------------------------------------------


def test_header_view_of_a_node_request() -> None:
    view = decoded("dubbo-node-echo-request").header_view()
    assert view["service"] == "com.mosnpy.test.EchoService"  # the path wins over the attachment
    assert (view["method"], view["version"], view["dubbo"], view["group"]) == ("echo", "1.0.0", "5.3.0", "")
    assert view["path"] == "com.mosnpy.test.EchoService"


def test_header_view_of_a_python_request_reads_interface_and_group() -> None:
    view = decoded("dubbo-py-fail-request").header_view()
    assert view["interface"] == view["service"] == "com.mosnpy.test.EchoService"
    assert (view["method"], view["version"], view["dubbo"], view["group"]) == ("fail", "1.0.0", "2.0.2", "")


def test_header_view_is_lazy_cached_and_empty_for_responses_and_heartbeats() -> None:
    request = decoded("dubbo-node-echo-request")
    assert request.header_view() is request.header_view()
    assert decoded("dubbo-node-echo-response").header_view() == {}
    assert decoded("dubbo-node-heartbeat-request").header_view() == {}


def _request_body(arg_types: str, args: bytes, attachments: bytes) -> bytes:
    strings = ("2.0.2", "org.demo.Greeter", "1.0", "hello", arg_types)
    return b"".join(hessian.encode_string(s) for s in strings) + args + attachments


GROUP_MAP = b"H" + hessian.encode_string("group") + hessian.encode_string("blue") + b"Z"


def test_attachments_after_scalar_arguments() -> None:
    # int 1 byte, int 'I', long 'L', double 'D', true, null, binary, string, date
    args = b"\x91" + b"I\x00\x00\x01\x00" + b"L" + bytes(8) + b"D" + bytes(8) + b"TN" + b"\x23abc" + b"\x01x"
    args += b"J" + bytes(8)
    typed_map = b"M" + hessian.encode_string("java.util.HashMap") + b"\x05group\x04blue" + b"\x05count\x91Z"
    for attachments in (GROUP_MAP, typed_map):
        body = _request_body("IIJDZLjava/lang/Object;[BLjava/lang/String;Ljava/util/Date;", args, attachments)
        view = request_view(body, 0)
        assert view == {
            "dubbo": "2.0.2",
            "service": "org.demo.Greeter",
            "version": "1.0",
            "method": "hello",
            "group": "blue",
        }


def test_the_view_reads_only_as_far_as_asked() -> None:
    """``service`` costs the four leading strings; the attachments are read only for a
    key whose bytes are in the body (a miss costs no decoding at all)."""
    broken_tail = b"\xff\xff garbage"  # arguments that cannot be skipped
    view = RequestView(_request_body("I", broken_tail, GROUP_MAP), 0)
    assert view.get("service") == "org.demo.Greeter" and view.get("method") == "hello"
    assert view._all is None  # nothing past the four strings was decoded
    assert view.get("x-mosn-global-timeout") is None
    assert view._all is None  # a key absent from the bytes needs no decoding
    assert view.get("group") is None  # present in the bytes: decoded, but unreadable here
    assert view._all is not None
    # a readable body: the attachment is found on demand, the core keys still win
    view = RequestView(_request_body("I", b"\x91", GROUP_MAP), 0)
    assert view.get("group") == "blue" and view["service"] == "org.demo.Greeter"
    assert dict(view) == request_view(_request_body("I", b"\x91", GROUP_MAP), 0)


def test_core_keys_past_the_first_window_and_not_ascii() -> None:
    """The four strings are first read from a copy of the body's first bytes; a long
    service name runs past it, a non-ASCII method takes the UTF-16 path, and both still
    read, from a frame-sized buffer at an offset, with the attachments after them."""
    service = "org.demo." + "LongServiceName" * 30  # > 256 bytes: a two-part length
    strings = ("2.0.2", service, "1.0", "grüß𝄞", "I")
    body = b"".join(hessian.encode_string(s) for s in strings) + b"\x91" + GROUP_MAP
    frame = bytearray(16) + body
    view = RequestView(frame, 16)
    assert view.get("service") == service and view.get("method") == "grüß𝄞"
    assert view.get("group") == "blue"
    # cut inside the service name: the keys before the cut are kept, the rest are absent
    cut = RequestView(bytearray(16) + body[:100], 16)
    assert cut.get("dubbo") == "2.0.2" and cut.get("service") is None and cut.get("method") is None


def test_remembered_core_keys_are_only_those_their_bytes_decide() -> None:
    """Core keys are remembered by their bytes when those bytes alone decide them: a
    repeat reads the same strings, and two non-ASCII methods that share their leading
    bytes (é and è are c3 a9 and c3 a8) are each read from their own body."""

    def body(service: str, method: str) -> bytearray:
        strings = ("2.0.2", service, "1.0", method, "I")
        return bytearray(b"".join(hessian.encode_string(s) for s in strings) + b"\x91" + GROUP_MAP)

    for _ in range(2):  # the second round finds the first's strings remembered
        assert RequestView(body("org.demo.A", "hello"), 0).get("service") == "org.demo.A"
        assert RequestView(body("org.demo.B", "hello"), 0).get("service") == "org.demo.B"
        assert RequestView(body("org.demo.A", "é"), 0).get("method") == "é"
        assert RequestView(body("org.demo.A", "è"), 0).get("method") == "è"
    for i in range(request._SEEN_MAX + 10):  # bounded: it starts over when full
        assert RequestView(body(f"org.demo.S{i}", "m"), 0).get("service") == f"org.demo.S{i}"
    assert 0 < len(request._SEEN) <= request._SEEN_MAX


def test_an_object_argument_leaves_only_the_first_four_keys() -> None:
    body = _request_body("Ljava/util/List;", b"\x79\x91", GROUP_MAP)  # a list: not read
    assert request_view(body, 0) == {
        "dubbo": "2.0.2",
        "service": "org.demo.Greeter",
        "version": "1.0",
        "method": "hello",
    }
    assert request_view(b"\x05", 0) == {}


@pytest.mark.parametrize(
    ("descriptor", "count"),
    [("", 0), ("I", 1), ("Ljava/lang/String;", 1), ("[[IJLa;[Lb;Z", 5), ("IIJ", 3)],
)
def test_count_arguments(descriptor: str, count: int) -> None:
    assert count_arguments(descriptor) == count


@pytest.mark.parametrize("descriptor", ["Q", "Ljava/lang/String", "[", "I["])
def test_count_arguments_rejects_garbage(descriptor: str) -> None:
    with pytest.raises(hessian.HessianError):
        count_arguments(descriptor)


# -- hessian strings -----------------------------------------------------------------------


def test_the_string_writer_matches_real_peers() -> None:
    # the body of an error reply is one hessian string (written by the node and python servers)
    assert decoded("dubbo-node-fail-response").body == hessian.encode_string(
        "mosnpy-test-error:d85d677848015d00"
    )
    message = "mosnpy-test-error:3b4d511f44394e4a93d23e545970cde6"
    assert decoded("dubbo-py-fail-response").body == hessian.encode_string(message)
    assert hessian.encode_string("") == b"\x00" and hessian.encode_string("N") == b"\x01N"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=1200) | st.text(alphabet="a𝄞é", min_size=1000, max_size=1100))
def test_strings_round_trip(text: str) -> None:
    data = hessian.encode_string(text) + b"\x91"
    reader = hessian.Reader(data)
    assert reader.read_string() == text and reader.pos == len(data) - 1


def test_long_strings_are_chunked_and_round_trip() -> None:
    text = "x" * 0x9000 + "𝄞"
    data = hessian.encode_string(text)
    assert data[:1] == b"R" and hessian.Reader(data).read_string() == text
    # two UTF-16 units, each a 3-byte surrogate (CESU-8), as Java writes it
    assert hessian.encode_string("𝄞") == b"\x02\xed\xa0\xb4\xed\xb4\x9e"


@pytest.mark.parametrize("data", [b"", b"\x05abc", b"\x91", b"\x02\xff\xff", b"\x01\xf0"])
def test_bad_strings_raise_hessian_error(data: bytes) -> None:
    with pytest.raises(hessian.HessianError):
        hessian.Reader(data).read_string()


# -- heartbeats, hijack, mapping ----------------------------------------------------------------


def test_trigger_and_reply_are_what_real_peers_send() -> None:
    assert CODEC.encode(CODEC.trigger(4)) == wire("dubbo-node-heartbeat-request")
    reply = CODEC.reply(decoded("dubbo-node-heartbeat-request"))
    assert CODEC.encode(reply) == wire("dubbo-node-heartbeat-response")


@pytest.mark.parametrize(
    ("status", "dubbo_status"),
    [
        (0, 70),
        (2, 70),
        (3, 70),
        (500, 70),
        (200, 20),
        (403, 80),
        (404, 60),
        (502, 60),
        (503, 40),
        (509, 40),
        (504, 30),
        (418, 70),
    ],
)
def test_hijack_maps_statuses_like_mosn(status: int, dubbo_status: int) -> None:
    request = decoded("dubbo-py-echo-request")
    CODEC.set_request_id(request, 77)
    reply = CODEC.hijack(request, status, f"{status}|router unavailable")
    data = CODEC.encode(reply)
    assert data[:4] == bytes((0xDA, 0xBB, 0x02, dubbo_status)) and struct.unpack(">Q", data[4:12]) == (77,)
    assert reply.body == hessian.encode_string(f"{status}|router unavailable")
    assert reply.stream_type is StreamType.RESPONSE and not reply.is_heartbeat


@pytest.mark.parametrize(
    ("status", "code"), [(20, 200), (30, 504), (31, 504), (100, 503), (40, 500), (60, 500), (80, 500)]
)
def test_response_code(status: int, code: int) -> None:
    assert CODEC.response_code(DubboFrame.build(0x02, status, 1, b"")) == code


def test_match() -> None:
    echo = wire("dubbo-node-echo-request")
    assert CODEC.match(echo) is MatchResult.MATCH
    assert CODEC.match(echo[:16]) is MatchResult.MATCH
    assert [CODEC.match(echo[:n]) for n in (0, 1, 2, 15)] == [MatchResult.AGAIN] * 4
    assert CODEC.match(b"\xda\xbc" + echo[2:]) is MatchResult.FAILED
    assert CODEC.match(b"GET / HTTP/1.1\r\n") is MatchResult.FAILED
    assert CODEC.match(b"\x01") is MatchResult.FAILED


def test_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not a dubbo frame"):
        CODEC.decode(bytearray(b"\xda\x00"))
    huge = bytearray(b"\xda\xbb\xc2\x00" + bytes(8) + struct.pack(">I", (16 << 20) + 1))
    with pytest.raises(DecodeError, match="exceeds"):
        CODEC.decode(huge)
    with pytest.raises(TypeError):
        CODEC.encode(object())  # type: ignore[arg-type]


# -- the construct spec and the fast path agree ----------------------------------------------

FLAGS = st.fixed_dictionaries(
    {
        "request": st.booleans(),
        "two_way": st.booleans(),
        "event": st.booleans(),
        "serialization": st.integers(0, 31),
    }
)
IDS = st.integers(0, 2**64 - 1)


def _flag_byte(flag: dict[str, object]) -> int:
    return int(spec.FLAG.build(flag)[0])


@settings(max_examples=300, deadline=None)
@given(flag=FLAGS, status=st.integers(0, 255), request_id=IDS, body=st.binary(max_size=300))
def test_spec_built_frames_decode_fast(
    flag: dict[str, object], status: int, request_id: int, body: bytes
) -> None:
    data = spec.FRAME.build({"flag": flag, "status": status, "request_id": request_id, "body": body})
    frame = CODEC.decode(bytearray(data))
    assert isinstance(frame, DubboFrame)
    assert (frame.flag, frame.status, frame.request_id, frame.body) == (
        _flag_byte(flag),
        status,
        request_id,
        body,
    )
    assert frame.is_heartbeat is flag["event"] and frame.serialization == flag["serialization"]
    if not flag["request"]:
        assert frame.stream_type is StreamType.RESPONSE
    else:
        assert frame.stream_type is (StreamType.REQUEST if flag["two_way"] else StreamType.ONEWAY)
    assert CODEC.encode(frame) == data


@settings(max_examples=300, deadline=None)
@given(flag=FLAGS, status=st.integers(0, 255), ids=st.tuples(IDS, IDS), body=st.binary(max_size=300))
def test_fast_encoded_frames_parse_with_the_spec(
    flag: dict[str, object], status: int, ids: tuple[int, int], body: bytes
) -> None:
    frame = DubboFrame.build(_flag_byte(flag), status, ids[0], body)
    CODEC.set_request_id(frame, ids[1])
    parsed = spec.FRAME.parse(CODEC.encode(frame))
    assert dict(parsed.flag, _io=None) == dict(flag, _io=None)
    assert (parsed.status, parsed.request_id, parsed.body_length, parsed.body) == (
        status,
        ids[1],
        len(body),
        body,
    )


# -- the body size limit, at its edge ----------------------------------------------------------


class SmallDubbo(DubboCodec):
    max_body = 100


def _header_with_length(length: int) -> bytes:
    return b"\xda\xbb\xc2\x00" + struct.pack(">QI", 7, length)  # a two-way hessian2 request


@pytest.mark.parametrize("codec", [CODEC, SmallDubbo()], ids=["default", "small"])
def test_a_body_of_exactly_max_body_decodes_and_one_byte_more_is_refused(codec: DubboCodec) -> None:
    """Catches an off-by-one in the dubbo body limit (``>=`` for ``>``, or the 16-byte
    header counted in), and a limit hard-coded instead of read from ``max_body``."""
    limit = codec.max_body
    body = bytes(range(256)) * (limit // 256) + bytes(limit % 256)
    buf = bytearray(_header_with_length(limit) + body + b"\xda")  # + the next frame's first byte
    try:
        frame = codec.decode(buf)
    except DecodeError as exc:
        pytest.fail(f"a body of exactly max_body={limit} bytes was refused: {exc}")
    assert isinstance(frame, DubboFrame), f"a body of exactly max_body={limit} bytes was not decoded"
    assert (frame.request_id, len(frame.body), frame.body == body) == (7, limit, True)
    assert buf == b"\xda"
    # Only the header yet: at the limit the codec waits for the body, one more is refused.
    try:
        assert codec.decode(bytearray(_header_with_length(limit))) is None
    except DecodeError as exc:
        pytest.fail(f"the header of a body of exactly max_body={limit} bytes was refused: {exc}")
    with pytest.raises(DecodeError, match=f"dubbo body of {limit + 1} bytes exceeds {limit}"):
        codec.decode(bytearray(_header_with_length(limit + 1)))


def test_the_fixed_header_size_is_the_struct_size() -> None:
    from mosnpy_dubbo import codec

    assert codec._HEADER_SIZE == codec.HEADER.size == 16
