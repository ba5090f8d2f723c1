"""The bolt codecs against real frames (tests/vectors: sofa-rpc-node with hessian2 and
anthunder with protobuf), the conformance kit (v1 on the real frames, v2 on the same
frames rewritten as v2), and Hypothesis: the construct specs and the struct fast path
agree on every generated frame."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosnpy_bolt import spec
from mosnpy_bolt.codec import BoltCodec, BoltFrame, BoltV2Codec

from mosnpy.protocol.matcher import MatchResult
from mosnpy.protocol.xprotocol import DecodeError, StreamType
from mosnpy.testing import check_xcodec

VECTORS = Path(__file__).parent / "vectors"
CASES = [
    (f"{prefix}-{name}", fields)
    for prefix in ("bolt-node", "bolt-anthunder")
    for name, fields in json.loads((VECTORS / f"{prefix}-index.json").read_text()).items()
]
V1, V2 = BoltCodec(), BoltV2Codec()


def wire(name: str) -> bytes:
    return bytes.fromhex((VECTORS / f"{name}.hex").read_text().strip())


def to_v2(frame: bytes) -> bytes:
    """A v1 frame as v2: proto 2, ver1 1 after it, switch 0 after the codec byte."""
    return b"\x02\x01" + frame[1:10] + b"\x00" + frame[10:]


def decoded(name: str, codec: BoltCodec = V1) -> BoltFrame:
    data = wire(name) if codec is V1 else to_v2(wire(name))
    frame = codec.decode(bytearray(data))
    assert isinstance(frame, BoltFrame)
    return frame


def test_the_vectors_are_all_here() -> None:
    assert len(CASES) == 8 and len(list(VECTORS.glob("bolt-*.hex"))) == 8


@pytest.mark.parametrize(("name", "fields"), CASES, ids=[name for name, _ in CASES])
@pytest.mark.parametrize("codec", [V1, V2], ids=["v1", "v2"])
def test_real_frames_decode_and_re_encode(codec: BoltCodec, name: str, fields: dict[str, object]) -> None:
    data = wire(name) if codec is V1 else to_v2(wire(name))
    buf = bytearray(data)
    frame = codec.decode(buf)
    assert isinstance(frame, BoltFrame) and not buf
    assert len(data) == int(str(fields["bytes"])) + (0 if codec is V1 else 2)
    assert (frame.request_id, frame.cmd_code) == (fields["id"], fields["cmdcode"])
    assert frame.status == (fields["status"] or 0)
    assert frame.stream_type is (StreamType.RESPONSE if fields["dir"] == "s2c" else StreamType.REQUEST)
    assert frame.is_heartbeat is (fields["kind"] == "heartbeat")
    assert codec.encode(frame) == data


@pytest.mark.parametrize(("name", "fields"), CASES, ids=[name for name, _ in CASES])
@pytest.mark.parametrize("codec", [V1, V2], ids=["v1", "v2"])
def test_a_new_id_patches_only_the_id_bytes(codec: BoltCodec, name: str, fields: dict[str, object]) -> None:
    data = wire(name) if codec is V1 else to_v2(wire(name))
    frame = codec.decode(bytearray(data))
    assert frame is not None
    codec.set_request_id(frame, 0xA1B2C3D4)
    at = 5 if codec is V1 else 6
    assert codec.encode(frame) == data[:at] + bytes.fromhex("a1b2c3d4") + data[at + 4 :]
    codec.set_request_id(frame, int(str(fields["id"])))
    assert codec.encode(frame) == data


def test_the_conformance_kit_passes_on_every_vector() -> None:
    check_xcodec(BoltCodec(), [wire(name) for name, _ in CASES])


def test_the_conformance_kit_passes_on_every_vector_as_v2() -> None:
    check_xcodec(BoltV2Codec(), [to_v2(wire(name)) for name, _ in CASES])


# -- fields and header view ------------------------------------------------------------------


def test_header_view_is_the_sofa_header_map() -> None:
    view = decoded("bolt-anthunder-echo-request").header_view()
    assert view["sofa_head_method_name"] == "echo"
    assert view["service"] == view["sofa_head_target_service"] == "com.mosnpy.test.EchoServicePb:1.0"
    assert view["sofa_head_target_app"] == ""
    assert decoded("bolt-node-echo-request").header_view() == {"service": "com.mosnpy.test.EchoService:1.0"}
    assert decoded("bolt-node-echo-response").header_view() == {}


def test_request_fields() -> None:
    request = decoded("bolt-anthunder-echo-request")
    assert (request.timeout_ms, request.codec, request.ver2) == (10000, 11, 1)
    assert request.class_name == "com.alipay.sofa.rpc.core.request.SofaRequest"
    assert len(request.content) == 0x44
    assert decoded("bolt-node-heartbeat-request").timeout_ms == 3000
    response = decoded("bolt-node-fail-response")
    assert (response.timeout_ms, response.status, response.class_name) == (
        0,
        2,
        "com.alipay.sofa.rpc.core.response.SofaResponse",
    )


def _request(header: bytes, *, kind: int = 1) -> bytes:
    return struct.pack(">BBHBIBiHHI", 1, kind, 1, 1, 9, 1, -1, 0, len(header), 0) + header


def test_null_header_entries_are_skipped() -> None:
    entry = struct.pack(">I", 1) + b"k" + struct.pack(">I", 1) + b"v"
    null_value = struct.pack(">I", 1) + b"n" + struct.pack(">I", 0xFFFFFFFF)
    frame = V1.decode(bytearray(_request(null_value + entry)))
    assert frame is not None and frame.header_view() == {"k": "v"} and frame.timeout_ms == -1


def test_a_request_with_a_broken_header_map_can_still_be_answered() -> None:
    data = _request(struct.pack(">I", 50) + b"short")
    buf = bytearray(data + b"\x01")
    with pytest.raises(DecodeError) as caught:
        V1.decode(buf)
    assert caught.value.consumed == len(data) and buf == data + b"\x01"  # the framework drops it
    assert isinstance(caught.value.request, BoltFrame)
    reply = V1.hijack(caught.value.request, 0, "decode error")
    assert (reply.status, reply.request_id) == (9, 9)
    with pytest.raises(DecodeError) as caught:
        V1.decode(bytearray(_request(b"\x00\x00", kind=2)))  # oneway: nobody to answer
    assert caught.value.request is None


def test_decode_errors() -> None:
    echo = wire("bolt-node-echo-request")
    for garbage, message in [
        (b"\x02" + echo[1:], "not a bolt v1 frame"),
        (echo[:1] + b"\x07" + echo[2:], "bad bolt type 7"),
        (echo[:18] + b"\x01\x00\x00\x00", "exceeds"),
    ]:
        with pytest.raises(DecodeError, match=message):
            V1.decode(bytearray(garbage))
    crc = bytearray(to_v2(echo))
    crc[1], crc[11] = 2, 1  # ver1 2 with the CRC switch on
    with pytest.raises(DecodeError, match="CRC32"):
        V2.decode(crc)
    with pytest.raises(TypeError):
        V1.encode(object())  # type: ignore[arg-type]


def test_match() -> None:
    assert V1.match(b"") is MatchResult.AGAIN and V2.match(b"") is MatchResult.AGAIN
    assert V1.match(b"\x01") is MatchResult.MATCH and V1.match(b"\x02") is MatchResult.FAILED
    assert V2.match(b"\x02\x01") is MatchResult.MATCH and V2.match(b"\x01") is MatchResult.FAILED
    assert V1.match(b"\xda\xbb") is MatchResult.FAILED


# -- heartbeats, hijack, mapping ------------------------------------------------------------


def test_trigger_and_reply_are_what_real_peers_send() -> None:
    assert V1.encode(V1.trigger(3)) == wire("bolt-node-heartbeat-request")
    assert V1.encode(V1.reply(decoded("bolt-node-heartbeat-request"))) == wire("bolt-node-heartbeat-response")
    assert V2.encode(V2.trigger(3)) == to_v2(wire("bolt-node-heartbeat-request"))
    reply = V2.reply(decoded("bolt-node-heartbeat-request", V2))
    assert V2.encode(reply) == to_v2(wire("bolt-node-heartbeat-response"))


@pytest.mark.parametrize(
    ("status", "bolt_status"),
    [(200, 0), (404, 6), (502, 6), (503, 4), (504, 7), (0, 9), (3, 0x12), (403, 2), (500, 3), (2, 3)],
)
def test_hijack_maps_statuses_like_mosn(status: int, bolt_status: int) -> None:
    request = decoded("bolt-anthunder-echo-request")
    V1.set_request_id(request, 77)
    reply = V1.hijack(request, status, "no route")
    assert V1.encode(reply) == struct.pack(">BBHBIBHHHI", 1, 0, 2, 1, 77, 11, bolt_status, 0, 0, 0)
    assert reply.stream_type is StreamType.RESPONSE and not reply.is_heartbeat


@pytest.mark.parametrize(("status", "code"), [(0, 200), (4, 503), (7, 504), (0x10, 502), (1, 500), (6, 500)])
def test_response_code(status: int, code: int) -> None:
    response = V1.decode(bytearray(struct.pack(">BBHBIBHHHI", 1, 0, 2, 1, 1, 1, status, 0, 0, 0)))
    assert response is not None and V1.response_code(response) == code


# -- the construct specs and the fast path agree ---------------------------------------------

TEXT = st.text(max_size=20)
FRAMES = st.fixed_dictionaries(
    {
        "type": st.sampled_from([0, 1, 2]),
        "cmd_code": st.integers(0, 0xFFFF),
        "ver2": st.integers(0, 255),
        "request_id": st.integers(0, 2**32 - 1),
        "codec": st.integers(0, 255),
        "timeout": st.integers(-(2**31), 2**31 - 1),
        "status": st.integers(0, 0xFFFF),
        "class_name": st.binary(max_size=40),
        "entries": st.lists(st.fixed_dictionaries({"key": TEXT, "value": TEXT}), max_size=5),
        "content": st.binary(max_size=200),
        "ver1": st.integers(0, 1),
        "switch": st.integers(0, 255),
    }
)


def _build(fields: dict[str, object], *, v2: bool) -> bytes:
    values = dict(fields, header=spec.HEADER_MAP.build(fields["entries"]))
    if fields["type"] == 0:
        values["timeout"] = None
    else:
        values["status"] = None
    return bytes((spec.FRAME_V2 if v2 else spec.FRAME_V1).build(values))


@settings(max_examples=300, deadline=None)
@given(fields=FRAMES, v2=st.booleans())
def test_spec_built_frames_decode_fast(fields: dict[str, object], v2: bool) -> None:
    codec = V2 if v2 else V1
    data = _build(fields, v2=v2)
    frame = codec.decode(bytearray(data))
    assert isinstance(frame, BoltFrame)
    response = fields["type"] == 0
    assert (frame.kind, frame.cmd_code, frame.ver2, frame.request_id, frame.codec) == (
        fields["type"],
        fields["cmd_code"],
        fields["ver2"],
        fields["request_id"],
        fields["codec"],
    )
    assert frame.status == (fields["status"] if response else 0)
    assert frame.timeout_ms == (0 if response else fields["timeout"])
    assert (frame.ver1, frame.switch) == ((fields["ver1"], fields["switch"]) if v2 else (0, 0))
    entries = fields["entries"]
    assert isinstance(entries, list)
    assert frame.header_view() == {entry["key"]: entry["value"] for entry in entries}
    assert frame.class_name.encode("utf-8", "surrogateescape") == fields["class_name"]
    assert frame.content == fields["content"]
    assert codec.encode(frame) == data


@settings(max_examples=300, deadline=None)
@given(fields=FRAMES, v2=st.booleans(), new_id=st.integers(0, 2**32 - 1), status=st.integers(0, 600))
def test_fast_encoded_frames_parse_with_the_spec(
    fields: dict[str, object], v2: bool, new_id: int, status: int
) -> None:
    codec = V2 if v2 else V1
    frame = codec.decode(bytearray(_build(fields, v2=v2)))
    assert frame is not None
    codec.set_request_id(frame, new_id)
    frame_spec = spec.FRAME_V2 if v2 else spec.FRAME_V1
    parsed = frame_spec.parse(codec.encode(frame))
    assert (parsed.request_id, parsed.type, parsed.content) == (new_id, fields["type"], fields["content"])
    for made in (codec.hijack(frame, status, "x"), codec.reply(frame), codec.trigger(new_id)):
        parsed = frame_spec.parse(codec.encode(made))
        assert (parsed.type, parsed.cmd_code, parsed.request_id) == (made.kind, made.cmd_code, new_id)
        assert (parsed.status or 0, parsed.timeout or 0) == (made.status, made.timeout_ms)
        assert (parsed.ver2, parsed.codec, parsed.header, parsed.content) == (made.ver2, made.codec, b"", b"")


# -- the frame size limit, at its edge ---------------------------------------------------------


class SmallBolt(BoltCodec):
    max_frame = 200


class SmallBoltV2(BoltV2Codec):
    max_frame = 200


def _frame_of_size(codec: BoltCodec, kind: int, size: int) -> bytes:
    """A ``kind`` frame (1 request, 0 response) of ``size`` bytes in all: a class name,
    one header entry and the rest content."""
    class_name = b"c"
    header = struct.pack(">I", 1) + b"k" + struct.pack(">I", 1) + b"v"
    head = codec.layout.response if kind == 0 else codec.layout.request
    content_len = size - head.size - len(class_name) - len(header)
    fields = (1, 1, 9, 1, 0, len(class_name), len(header), content_len)
    raw = codec.layout.pack(kind, 1, 0, fields) + class_name + header
    return raw + bytes(max(content_len, 0))


@pytest.mark.parametrize("kind", [1, 0], ids=["request", "response"])
@pytest.mark.parametrize("codec", [V1, V2, SmallBolt(), SmallBoltV2()], ids=["v1", "v2", "small", "small-v2"])
def test_a_frame_of_exactly_max_frame_decodes_and_one_byte_more_is_refused(
    codec: BoltCodec, kind: int
) -> None:
    """Catches an off-by-one in the bolt frame limit (``>=`` for ``>``), a limit that
    leaves out the fixed header, class name or header map, and a limit hard-coded
    instead of read from ``max_frame``."""
    limit = codec.max_frame
    data = _frame_of_size(codec, kind, limit)
    assert len(data) == limit
    buf = bytearray(data + data[:1])  # + the next frame's first byte
    try:
        frame = codec.decode(buf)
    except DecodeError as exc:
        pytest.fail(f"a frame of exactly max_frame={limit} bytes was refused: {exc}")
    assert isinstance(frame, BoltFrame), f"a frame of exactly max_frame={limit} bytes was not decoded"
    assert (frame.request_id, frame.class_name, dict(frame.header_view())) == (9, "c", {"k": "v"})
    assert len(frame.raw) == limit and buf == data[:1]
    over = _frame_of_size(codec, kind, limit + 1)
    # Only the fixed header yet: at the limit the codec waits, one byte more is refused.
    head_size = frame.head_size
    try:
        assert codec.decode(bytearray(data[:head_size])) is None
    except DecodeError as exc:
        pytest.fail(f"the header of a frame of exactly max_frame={limit} bytes was refused: {exc}")
    with pytest.raises(DecodeError, match=f"bolt frame of {limit + 1} bytes exceeds {limit}"):
        codec.decode(bytearray(over[:head_size]))
    with pytest.raises(DecodeError, match="exceeds"):
        codec.decode(bytearray(over))
