"""The ClientHello reader against its construct spec, a hand encoder and OpenSSL.

The inspector's reader (:func:`parse_client_hello`) and the construct spec's parser
(:func:`parse_client_hello_spec`) are run through every test below, and a differential
property holds them equal (same answer, or the same error) on mutated ClientHellos.

* property: ClientHellos drawn from SNI, ALPN, session id, cipher suites, other
  extensions and a record size are encoded twice, with the spec's ``build`` and with
  the small byte builder below (written from RFC 8446 §4.1.2, RFC 6066 §3 and RFC 7301
  §3.1, sharing no code with the spec); the two must agree byte for byte, and
  :func:`parse_client_hello` must find the drawn name (lower-cased) and ALPN list;
* property: every proper prefix of such a ClientHello is an int "bytes needed" beyond
  the prefix and within the ClientHello, never an error;
* a real ClientHello from Python's ``ssl`` (OpenSSL) parses, and its body rebuilds
  byte for byte from what the spec parsed;
* malformed and edge-case bodies, one per row.
"""

from __future__ import annotations

import ssl
import string
from collections.abc import Callable, Sequence

import attrs
import pytest
from construct import GreedyRange, Int16ub
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.net.tls_hello_spec import (
    CLIENT_HELLO_BODY,
    HANDSHAKE_HEADER,
    TLS_RECORD_HEADER,
    parse_client_hello_spec,
)
from mosnpy.net.tls_inspector import (
    MAX_EXTENSIONS,
    MAX_RECORDS,
    ClientHello,
    ClientHelloError,
    ClientHelloTooLarge,
    parse_client_hello,
)

Parser = Callable[[bytes], "ClientHello | int"]
#: the inspector's reader and the construct spec: every test runs both
PARSERS = pytest.mark.parametrize(
    "parse", [parse_client_hello, parse_client_hello_spec], ids=["reader", "spec"]
)

pytestmark = pytest.mark.timeout(30)

SETTINGS = settings(max_examples=60, deadline=None, database=None)

# --------------------------------------------------------------------------- hand encoder


def u8(n: int) -> bytes:
    return n.to_bytes(1, "big")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def vec8(data: bytes) -> bytes:
    return u8(len(data)) + data


def vec16(data: bytes) -> bytes:
    return u16(len(data)) + data


def sni_data(*names: bytes, name_type: int = 0) -> bytes:
    """The server_name extension's data: a ServerNameList of host names."""
    return vec16(b"".join(u8(name_type) + vec16(name) for name in names))


def alpn_data(*protocols: bytes) -> bytes:
    """The ALPN extension's data: a ProtocolNameList."""
    return vec16(b"".join(vec8(p) for p in protocols))


def extension(kind: int, data: bytes) -> bytes:
    return u16(kind) + vec16(data)


def body(extensions: bytes | None = b"", *, session_id: bytes = b"", suites: bytes = b"\x13\x01") -> bytes:
    """A ClientHello body: ``extensions`` is the extensions vector's content (None: the
    body ends after the compression methods)."""
    head = u16(0x0303) + bytes(range(32)) + vec8(session_id) + vec16(suites) + vec8(b"\x00")
    return head if extensions is None else head + vec16(extensions)


def records(message_body: bytes, fragment: int = 2**14) -> bytes:
    """A ClientHello message around ``message_body``, in handshake records of at most
    ``fragment`` bytes each (and no more than MAX_RECORDS of them)."""
    message = u8(1) + u24(len(message_body)) + message_body
    fragment = max(fragment, -(-len(message) // MAX_RECORDS))
    chunks = [message[i : i + fragment] for i in range(0, len(message), fragment)]
    return b"".join(u8(22) + u16(0x0301) + vec16(chunk) for chunk in chunks)


# --------------------------------------------------------------------------- drawn ClientHellos


#: an extension to encode: a host name (server_name), a list of protocols (ALPN), or
#: any other extension's ``(type, data)``
Extension = str | list[str] | tuple[int, bytes]


@attrs.frozen
class Drawn:
    """A ClientHello to encode, records of at most ``fragment`` bytes."""

    random: bytes
    session_id: bytes
    suites: list[int]
    extensions: list[Extension]
    fragment: int

    @property
    def server_name(self) -> str:
        return next((ext.lower() for ext in self.extensions if isinstance(ext, str)), "")

    @property
    def alpn(self) -> tuple[str, ...]:
        return next((tuple(ext) for ext in self.extensions if isinstance(ext, list)), ())


_LABEL = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=10)
_HOST = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_PROTOCOL = st.text(st.characters(max_codepoint=255), min_size=1, max_size=12)
_OTHER = st.tuples(st.integers(1, 0xFFFF).filter(lambda t: t != 16), st.binary(max_size=20))


@st.composite
def drawn_hellos(draw: st.DrawFn) -> Drawn:
    extensions: list[Extension] = list(draw(st.lists(_OTHER, max_size=4)))
    if (host := draw(st.none() | _HOST)) is not None:
        extensions.insert(draw(st.integers(0, len(extensions))), host)
    if protocols := draw(st.lists(_PROTOCOL, max_size=5)):
        extensions.insert(draw(st.integers(0, len(extensions))), protocols)
    return Drawn(
        random=draw(st.binary(min_size=32, max_size=32)),
        session_id=draw(st.binary(max_size=32)),
        suites=draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=30)),
        extensions=extensions,
        fragment=draw(st.integers(24, 2**14)),
    )


def hand_built(hello: Drawn) -> bytes:
    """``hello`` encoded with the byte helpers above."""
    exts = b""
    for ext in hello.extensions:
        if isinstance(ext, str):
            exts += extension(0, sni_data(ext.encode("ascii")))
        elif isinstance(ext, list):
            exts += extension(16, alpn_data(*(p.encode("latin-1") for p in ext)))
        else:
            exts += extension(*ext)
    suites = b"".join(u16(s) for s in hello.suites)
    message_body = (
        u16(0x0303) + hello.random + vec8(hello.session_id) + vec16(suites) + vec8(b"\x00") + vec16(exts)
    )
    return records(message_body, hello.fragment)


def spec_built(hello: Drawn) -> bytes:
    """``hello`` encoded with the construct specs of :mod:`mosnpy.net.tls_inspector`."""
    extensions: list[dict[str, object]] = []
    for ext in hello.extensions:
        if isinstance(ext, str):
            names = [{"name_type": 0, "host_name": ext.encode("ascii")}]
            extensions.append({"extension_type": 0, "extension_data": names})
        elif isinstance(ext, list):
            extensions.append({"extension_type": 16, "extension_data": ext})
        else:
            extensions.append({"extension_type": ext[0], "extension_data": ext[1]})
    message_body = CLIENT_HELLO_BODY.build(
        {
            "legacy_version": 0x0303,
            "random": hello.random,
            "legacy_session_id": hello.session_id,
            "cipher_suites": GreedyRange(Int16ub).build(hello.suites),
            "legacy_compression_methods": b"\x00",
            "extensions": extensions,
        }
    )
    message = HANDSHAKE_HEADER.build({"msg_type": 1, "length": len(message_body)}) + message_body
    size = max(hello.fragment, -(-len(message) // MAX_RECORDS))
    out = b""
    for i in range(0, len(message), size):
        fragment = message[i : i + size]
        header = {"content_type": 22, "legacy_record_version": 0x0301, "length": len(fragment)}
        out += TLS_RECORD_HEADER.build(header) + fragment
    return out


def assert_prefixes_ask_for_more(data: bytes, parse: Parser = parse_client_hello) -> None:
    """Every proper prefix of ClientHello ``data`` asks for more bytes, never past its end."""
    for cut in range(len(data)):
        need = parse(data[:cut])
        assert isinstance(need, int), (cut, need)
        assert cut < need <= len(data), (cut, need)


@PARSERS
@SETTINGS
@given(drawn_hellos())
def test_spec_and_hand_encoder_agree_and_parse_back(parse: Parser, hello: Drawn) -> None:
    data = spec_built(hello)
    assert data == hand_built(hello)
    want = ClientHello(hello.server_name, hello.alpn)
    assert parse(data) == want
    assert parse(data + b"\x14\x03\x03\x00\x01\x01") == want  # what follows is not read


@PARSERS
@SETTINGS
@given(drawn_hellos())
def test_every_proper_prefix_asks_for_more(parse: Parser, hello: Drawn) -> None:
    assert_prefixes_ask_for_more(hand_built(hello), parse)


def _verdict(parse: Parser, data: bytes) -> object:
    try:
        return parse(data)
    except ClientHelloTooLarge:
        return "too large"
    except ClientHelloError:
        return "error"


@settings(max_examples=400, deadline=None, database=None)
@given(
    drawn_hellos(),
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4),
    st.integers(0, 3),
)
def test_the_reader_gives_the_specs_verdict_on_mutated_client_hellos(
    hello: Drawn, flips: list[tuple[int, int]], cut: int
) -> None:
    """Bytes changed here and there and a tail cut off: the reader and the spec agree
    (the same ClientHello, the same bytes needed, or the same refusal)."""
    data = bytearray(hand_built(hello))
    for at, value in flips:
        data[at % len(data)] = value
    data = data[: len(data) - cut]
    assert _verdict(parse_client_hello, bytes(data)) == _verdict(parse_client_hello_spec, bytes(data))


# --------------------------------------------------------------------------- a real ClientHello


def python_client_hello(server_name: str, alpn: Sequence[str]) -> bytes:
    """The first flight of Python's TLS client (OpenSSL): its ClientHello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@PARSERS
def test_a_real_client_hello(parse: Parser) -> None:
    data = python_client_hello("a.test", ["h2", "http/1.1"])
    assert parse(data) == ClientHello("a.test", ("h2", "http/1.1"))
    record = TLS_RECORD_HEADER.parse(data[:5])
    assert (record.content_type, record.length) == (22, len(data) - 5)
    header = HANDSHAKE_HEADER.parse(data[5:9])
    message_body = data[9:]
    assert (header.msg_type, header.length) == (1, len(message_body))
    parsed = CLIENT_HELLO_BODY.parse(message_body)
    assert CLIENT_HELLO_BODY.build(parsed) == message_body
    assert_prefixes_ask_for_more(data, parse)
    assert_prefixes_ask_for_more(records(message_body, 100), parse)  # the same, over several records


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    ("message_body", "want"),
    [
        (body(None), ClientHello()),  # no extensions vector at all (before TLS extensions)
        (body(b""), ClientHello()),
        (body(extension(0, sni_data(b"A.Test")), session_id=bytes(32)), ClientHello("a.test")),
        (body(extension(0, sni_data(b"a.test", b"b.test"))), ClientHello("a.test")),  # the first name
        (body(extension(0, sni_data(b"a.test") + b"\x00")), ClientHello("a.test")),  # after the list: ignored
        (body(extension(0, sni_data(b"x", name_type=7))), ClientHello()),  # not a host name
        (body(extension(16, alpn_data(b"h2")) + extension(16, alpn_data(b"x"))), ClientHello(alpn=("x",))),
        (body(extension(16, alpn_data(b"\xff"))), ClientHello(alpn=("\xff",))),  # opaque: read as Latin-1
        (body(extension(77, b"\xff\xff")), ClientHello()),  # others' data is not looked into
        (body(b"", suites=b"\x13"), ClientHello()),  # the unused fields are not checked
        (
            body(extension(0, sni_data(b"a.test"))) + b"\x00\x01",
            ClientHello("a.test"),
        ),  # after the extensions
    ],
)
@PARSERS
def test_parse_client_hello_edge_cases(parse: Parser, message_body: bytes, want: ClientHello) -> None:
    assert parse(records(message_body)) == want


@pytest.mark.parametrize(
    "message_body",
    [
        body(None)[:-1],  # cut short in the compression methods
        body(b"")[:-1],  # half an extensions length
        body(b"\x00"),  # an extension cut short
        body(extension(0, b"")),  # server_name without its list
        body(extension(0, sni_data(b"a.test")[:-1])),  # the name cut short
        body(extension(0, vec16(b"\x00\x00\x05ab"))),  # the list ends inside the name
        body(extension(0, sni_data("é.test".encode()))),  # not ASCII
        body(extension(16, vec16(b"\x03h2"))),  # an ALPN name longer than its list
        body(extension(16, b"\x00")),  # ALPN without its list
        body(None) + u16(10) + b"\x00\x00",  # the extensions vector longer than the body
    ],
)
@PARSERS
def test_parse_client_hello_refuses_a_malformed_body(parse: Parser, message_body: bytes) -> None:
    with pytest.raises(ClientHelloError):
        parse(records(message_body))


@PARSERS
def test_a_message_longer_than_its_records_waits_for_the_next_record(parse: Parser) -> None:
    message_body = body(extension(0, sni_data(b"a.test")))
    message = u8(1) + u24(len(message_body) + 1) + message_body  # one byte more than sent
    data = u8(22) + u16(0x0301) + vec16(message)
    assert parse(data) == len(data) + 5
    last = u8(22) + u16(0x0301) + vec16(b"\x00")  # that byte: after the extensions, so ignored
    assert parse(data + last[:-1]) == len(data) + len(last)
    assert parse(data + last) == ClientHello("a.test")


def tiny_records(message_body: bytes, n: int) -> bytes:
    """The message in ``n`` records: n - 1 of one byte, the rest in the last."""
    message = u8(1) + u24(len(message_body)) + message_body
    pieces = [message[i : i + 1] for i in range(n - 1)] + [message[n - 1 :]]
    return b"".join(u8(22) + u16(0x0301) + vec16(piece) for piece in pieces)


@PARSERS
def test_a_client_hello_over_too_many_records_is_refused(parse: Parser) -> None:
    """Dribbled in tiny records, a ClientHello would make every peek parse them all
    again: past MAX_RECORDS it is refused like one too large, before the rest is read."""
    message_body = body(extension(0, sni_data(b"a.test")))
    assert parse(tiny_records(message_body, MAX_RECORDS)) == ClientHello("a.test")
    with pytest.raises(ClientHelloTooLarge, match="records"):
        parse(tiny_records(message_body, MAX_RECORDS + 1))
    dribbled = b"".join(u8(22) + u16(0x0301) + vec16(bytes([b])) for b in u8(1) + u24(len(message_body)))
    with pytest.raises(ClientHelloTooLarge):
        parse(dribbled * 1000)  # refused at once, not read to the end


@PARSERS
def test_extensions_beyond_the_bound_are_refused(parse: Parser) -> None:
    filler = extension(77, b"")
    assert parse(records(body(filler * (MAX_EXTENSIONS - 1) + extension(0, sni_data(b"a.test"))))) == (
        ClientHello("a.test")
    )
    with pytest.raises(ClientHelloError, match="extensions"):
        parse(records(body(filler * MAX_EXTENSIONS + extension(0, sni_data(b"a.test")))))
