"""Choosing a listener's filter chain per connection (Envoy's ``filter_chain_match``).

* the selection function, table-driven: exact and wildcard server names, ports,
  transport protocol, ALPN, address ranges, no match;
* the ClientHello parser and the peeking inspector, on ClientHellos made by Python's
  own TLS client and sent over real sockets (whole, split, cut short);
* a real :class:`Listener` on 127.0.0.1 with several chains: TLS chains by SNI, each
  with its own certificate (trustme), a plaintext chain on the same port, and a
  connection no chain matches being closed and counted.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
import trustme

from mosnpy.config.models import CidrRangeConfig, FilterChainMatchConfig
from mosnpy.net import AcceptedSocket, Connection, FilterManager, FilterStatus, Listener
from mosnpy.net.filterchain import (
    ConnectionInfo,
    FilterChain,
    FilterChainMatch,
    FilterChains,
    parse_address,
    select_filter_chain,
)
from mosnpy.net.original_dst import ORIGINAL_DST
from mosnpy.net.tls_inspector import (
    MAX_CLIENT_HELLO,
    RAW_BUFFER,
    TLS,
    ClientHello,
    ClientHelloError,
    ClientHelloTooLarge,
    Inspection,
    inspect,
    parse_client_hello,
)
from tests.net.test_listener import serving

pytestmark = pytest.mark.timeout(30)

LOCALHOST = "127.0.0.1"


def chain(name: str, **match: object) -> FilterChain:
    """A chain named ``name`` with ``filter_chain_match`` keys ``match`` (config form)."""
    config = FilterChainMatchConfig(**match)  # type: ignore[arg-type]
    return FilterChain((), FilterChainMatch.from_config(config), name=name)


def pick(chains: list[FilterChain], **info: object) -> str | None:
    if isinstance(info.get("destination_ip"), str):
        info["destination_ip"] = ipaddress.ip_address(info["destination_ip"])
    if isinstance(info.get("source_ip"), str):
        info["source_ip"] = ipaddress.ip_address(info["source_ip"])
    chosen = select_filter_chain(chains, ConnectionInfo(**info))  # type: ignore[arg-type]
    return None if chosen is None else chosen.name


# --------------------------------------------------------------------------- selection

SERVER_NAMES = [
    chain("exact", server_names=["a.test", "x.b.example.com"]),
    chain("wild", server_names=["*.example.com"]),
    chain("wild-b", server_names=["*.b.example.com"]),
    chain("any"),
]


@pytest.mark.parametrize(
    ("server_name", "want"),
    [
        ("a.test", "exact"),
        ("x.b.example.com", "exact"),  # exact beats every wildcard
        ("y.b.example.com", "wild-b"),  # the longer wildcard beats the shorter
        ("c.example.com", "wild"),
        ("a.b.c.example.com", "wild"),  # a wildcard spans several labels, as in Envoy
        ("example.com", "any"),  # *.example.com needs a label before the suffix
        ("b.test", "any"),
        ("", "any"),  # no SNI (plaintext, or a client that sent none)
    ],
)
def test_server_names_exact_beats_wildcard_and_longer_wildcard_beats_shorter(
    server_name: str, want: str
) -> None:
    assert pick(SERVER_NAMES, server_name=server_name, transport_protocol=TLS) == want


def test_server_names_without_a_catch_all_refuse_other_names() -> None:
    chains = [chain("a", server_names=["a.test"]), chain("b", server_names=["b.test"])]
    assert pick(chains, server_name="b.test") == "b"
    assert pick(chains, server_name="c.test") is None
    assert pick(chains) is None


PORTS = [
    chain("443", destination_port=443),
    chain("443-a", destination_port=443, server_names=["a.test"]),
    chain("any"),
]


@pytest.mark.parametrize(
    ("port", "server_name", "want"),
    [
        (443, "a.test", "443-a"),
        (443, "b.test", "443"),
        (8443, "a.test", "any"),
        (None, "", "any"),  # a unix socket: no port
    ],
)
def test_destination_port_comes_first(port: int | None, server_name: str, want: str) -> None:
    assert pick(PORTS, destination_port=port, server_name=server_name) == want


def test_no_backtracking_once_a_criterion_narrowed_the_chains() -> None:
    """Envoy's rule: port 443 chains exist, so the port-less chain is out for port 443,
    even when no port-443 chain takes the server name."""
    chains = [chain("443-a", destination_port=443, server_names=["a.test"]), chain("any")]
    assert pick(chains, destination_port=443, server_name="b.test") is None
    assert pick(chains, destination_port=80, server_name="b.test") == "any"


TRANSPORT_AND_ALPN = [
    chain("tls", transport_protocol="tls"),
    chain("tls-h2", transport_protocol="tls", application_protocols=["h2"]),
    chain("raw", transport_protocol="raw_buffer"),
]


@pytest.mark.parametrize(
    ("transport", "alpn", "want"),
    [
        ("tls", ("h2", "http/1.1"), "tls-h2"),
        ("tls", ("http/1.1",), "tls"),
        ("tls", (), "tls"),
        ("raw_buffer", (), "raw"),
        ("", (), None),  # not looked at: only chains without a transport could match
    ],
)
def test_transport_protocol_then_application_protocols(
    transport: str, alpn: tuple[str, ...], want: str | None
) -> None:
    assert pick(TRANSPORT_AND_ALPN, transport_protocol=transport, application_protocols=alpn) == want


@pytest.mark.parametrize(
    ("alpn", "want"),
    [
        (("http/1.1", "h2"), "h1"),  # the client's preference decides
        (("h2", "http/1.1"), "h2"),
        (("spdy/3",), None),
        ((), None),
    ],
)
def test_application_protocols_follow_the_clients_order(alpn: tuple[str, ...], want: str | None) -> None:
    chains = [chain("h2", application_protocols=["h2"]), chain("h1", application_protocols=["http/1.1"])]
    assert pick(chains, transport_protocol=TLS, application_protocols=alpn) == want


DESTINATION_RANGES = [
    chain("10/8", prefix_ranges=["10.0.0.0/8"]),
    chain("10.1/16", prefix_ranges=[CidrRangeConfig(address_prefix="10.1.0.0", prefix_len=16)]),
    chain("v6", prefix_ranges=["fd00::/8"]),
    chain("any"),
]


@pytest.mark.parametrize(
    ("ip", "want"),
    [
        ("10.1.2.3", "10.1/16"),  # the longest prefix wins
        ("10.2.0.1", "10/8"),
        ("11.0.0.1", "any"),
        ("fd00::1", "v6"),
        (None, "any"),
    ],
)
def test_destination_ranges_longest_prefix_wins(ip: str | None, want: str) -> None:
    assert pick(DESTINATION_RANGES, destination_ip=ip) == want


SOURCES = [
    chain("/24", source_prefix_ranges=["192.168.1.0/24"]),
    chain("/16", source_prefix_ranges=["192.168.0.0/16"]),
    chain("port", source_ports=[5000]),
    chain("any"),
]


@pytest.mark.parametrize(
    ("ip", "port", "want"),
    [
        ("192.168.1.9", 1234, "/24"),
        ("192.168.2.1", 1234, "/16"),
        ("10.0.0.1", 5000, "port"),
        ("10.0.0.1", 6000, "any"),
        ("::1", 5000, "port"),
    ],
)
def test_source_ranges_then_source_ports(ip: str, port: int, want: str) -> None:
    assert pick(SOURCES, source_ip=ip, source_port=port) == want


def test_a_catch_all_chain_takes_what_no_other_matches_and_without_it_nothing_does() -> None:
    specific = [chain("tls", transport_protocol="tls"), chain("a", server_names=["a.test"])]
    assert pick(specific, transport_protocol=RAW_BUFFER) is None
    assert pick([*specific, chain("any")], transport_protocol=RAW_BUFFER) == "any"


def test_what_a_listener_must_learn_follows_the_criteria_in_use() -> None:
    ports = FilterChains([chain("p", destination_port=80), chain("any")])
    assert (ports.needs_destination, ports.needs_transport, ports.needs_client_hello) == (True, False, False)
    raw = FilterChains([chain("raw", transport_protocol="raw_buffer"), chain("any")])
    assert (raw.needs_transport, raw.needs_client_hello, raw.needs_source) == (True, False, False)
    sni = FilterChains([chain("a", server_names=["a.test"]), chain("src", source_ports=[1])])
    assert (sni.needs_transport, sni.needs_client_hello, sni.needs_source) == (True, True, True)


def test_match_from_config_lower_cases_names_and_parses_ranges() -> None:
    match = FilterChainMatch.from_config(
        FilterChainMatchConfig(server_names=["A.Test"], source_prefix_ranges=["10.1.2.3/8", "::1"])
    )
    assert match.server_names == frozenset({"a.test"})
    assert match.source_prefix_ranges == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert FilterChainMatch.from_config(None) == FilterChainMatch()


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:443", ("::1", 443)),
        ("[::ffff:10.0.0.1]:8", ("10.0.0.1", 8)),  # a v4 client of a dual-stack socket
        ("example.com:80", (None, 80)),
        ("/tmp/mosnpy.sock", (None, None)),
        ("", (None, None)),
    ],
)
def test_parse_address(address: str, want: tuple[str | None, int | None]) -> None:
    ip, port = parse_address(address)
    assert (None if ip is None else str(ip), port) == want


# --------------------------------------------------------------------------- ClientHello


def client_hello(server_name: str | None = "a.test", alpn: list[str] | None = None) -> bytes:
    """The first flight of Python's TLS client: one record holding a ClientHello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, at: int) -> bytes:
    """The same ClientHello carried in two handshake records (split at ``at``)."""
    body = hello[5:]

    def record(part: bytes) -> bytes:
        return hello[:3] + len(part).to_bytes(2, "big") + part

    return record(body[:at]) + record(body[at:])


def test_parse_client_hello_reads_sni_and_alpn() -> None:
    hello = client_hello("A.Test", ["h2", "http/1.1"])
    assert parse_client_hello(hello) == ClientHello("a.test", ("h2", "http/1.1"))
    assert parse_client_hello(client_hello(None)) == ClientHello("", ())


def test_parse_client_hello_says_how_many_bytes_it_needs() -> None:
    hello = client_hello("a.test", ["h2"])
    assert parse_client_hello(b"") == 5
    assert parse_client_hello(hello[:3]) == 5
    assert parse_client_hello(hello[:5]) == len(hello)
    assert parse_client_hello(hello[:-1]) == len(hello)
    two = split_records(hello, 40)
    assert parse_client_hello(two[:48]) == 5 + 40 + 5  # the second record's header
    assert parse_client_hello(two[: 5 + 40 + 5]) == len(two)
    assert parse_client_hello(two) == ClientHello("a.test", ("h2",))


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x00\x00",  # an empty record
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello
        b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",  # cut short inside the message
    ],
)
def test_parse_client_hello_refuses_what_is_not_one(data: bytes) -> None:
    with pytest.raises(ClientHelloError):
        parse_client_hello(data)


def test_parse_client_hello_refuses_a_huge_one() -> None:
    size = MAX_CLIENT_HELLO + 1
    data = b"\x16\x03\x01\x00\x04\x01" + size.to_bytes(3, "big")
    with pytest.raises(ClientHelloTooLarge):
        parse_client_hello(data)


# --------------------------------------------------------------------------- inspector


@asynccontextmanager
async def accepted_pair() -> AsyncIterator[tuple[socket.socket, socket.socket]]:
    """(client, accepted server socket) over 127.0.0.1, both closed afterwards."""
    with socket.socket() as lsock:
        lsock.bind((LOCALHOST, 0))
        lsock.listen(1)
        client = socket.create_connection(lsock.getsockname(), timeout=5)
        server, _ = lsock.accept()
    with client, server:
        server.setblocking(False)
        yield client, server


async def test_inspect_reads_sni_and_alpn_and_consumes_nothing() -> None:
    hello = client_hello("a.test", ["h2"])
    async with accepted_pair() as (client, server):
        client.sendall(hello)
        with trio.fail_after(5):
            seen = await inspect(server, 5.0)
        assert seen == Inspection(TLS, ClientHello("a.test", ("h2",)))
        assert server.recv(len(hello) + 10) == hello  # still all there for the handshake


async def test_inspect_waits_for_a_client_hello_split_over_segments_and_records() -> None:
    hello = split_records(client_hello("b.test", ["http/1.1"]), 100)
    async with accepted_pair() as (client, server):
        client.sendall(hello[:7])

        async def rest() -> None:
            await trio.sleep(0.2)
            client.sendall(hello[7:120])
            await trio.sleep(0.2)
            client.sendall(hello[120:])

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rest)
                start = trio.current_time()
                seen = await inspect(server, 5.0)
        assert seen == Inspection(TLS, ClientHello("b.test", ("http/1.1",)))
        assert trio.current_time() - start >= 0.35
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1  # restored


@pytest.mark.parametrize(
    ("first", "client_hello_too", "want"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", True, Inspection(RAW_BUFFER)),
        (b"\x16\x03\x01", False, Inspection(TLS)),  # the first byte is enough without SNI
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", True, Inspection(TLS)),  # malformed: TLS, no name
    ],
)
async def test_inspect_tells_tls_from_plaintext(
    first: bytes, client_hello_too: bool, want: Inspection
) -> None:
    async with accepted_pair() as (client, server):
        client.sendall(first)
        with trio.fail_after(5):
            assert await inspect(server, 5.0, client_hello=client_hello_too) == want


async def test_inspect_gives_up_on_a_peer_that_left() -> None:
    async with accepted_pair() as (client, server):
        client.shutdown(socket.SHUT_WR)
        with trio.fail_after(5):
            assert await inspect(server, 5.0) is None
    async with accepted_pair() as (client, server):
        client.sendall(client_hello()[:30])  # half a ClientHello, then nothing more ever
        client.shutdown(socket.SHUT_WR)
        with trio.fail_after(2):
            assert await inspect(server, 10.0) is None


async def test_inspect_takes_a_silent_client_as_plaintext_after_the_timeout() -> None:
    """A server-speaks-first protocol: the client waits, so the listener stops waiting."""
    async with accepted_pair() as (_, server):
        with trio.fail_after(5):
            assert await inspect(server, 0.2) == Inspection(RAW_BUFFER)


async def test_inspect_closes_on_a_client_hello_too_large() -> None:
    async with accepted_pair() as (client, server):
        client.sendall(b"\x16\x03\x01\x00\x04\x01" + (MAX_CLIENT_HELLO + 1).to_bytes(3, "big"))
        with trio.fail_after(5):
            assert await inspect(server, 5.0) is None


# --------------------------------------------------------------------------- a listener


class Tagger:
    """A read filter answering every chunk with its chain's tag (then the chunk)."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.conn: Connection | None = None

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.conn = connection
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        assert self.conn is not None
        data = bytes(buffer)
        del buffer[:]
        await self.conn.send_all(self.tag + b":" + data)
        return FilterStatus.CONTINUE


class TagFactory:
    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.connections = 0

    def create_filter_chain(self, manager: FilterManager) -> None:
        self.connections += 1
        manager.add_read_filter(Tagger(self.tag))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_contexts(ca: trustme.CA) -> Iterator[dict[str, ssl.SSLContext]]:
    """A server context per name, each with a certificate for that name only."""
    contexts: dict[str, ssl.SSLContext] = {}
    for name in ("a.test", "b.test"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(context)
        contexts[name] = context
    yield contexts


def tls_chain(name: str, context: ssl.SSLContext, factory: TagFactory) -> FilterChain:
    match = FilterChainMatch.from_config(FilterChainMatchConfig(server_names=[name]))
    return FilterChain((factory,), match, context, name=name)


async def tls_exchange(port: int, ca: trustme.CA, server_name: str) -> tuple[bytes, bytes]:
    """(the leaf certificate served for ``server_name``, the answer to ``ping``)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    raw = await trio.open_tcp_stream(LOCALHOST, port)
    stream = trio.SSLStream(raw, context, server_hostname=server_name)
    try:
        await stream.do_handshake()
        cert = stream.getpeercert(binary_form=True)
        await stream.send_all(b"ping")
        answer = await stream.receive_some(1024)
    finally:
        await stream.aclose()
    assert cert is not None
    return cert, answer


async def test_listener_picks_the_chain_and_its_certificate_by_sni_and_refuses_unknown_names(
    ca: trustme.CA, server_contexts: dict[str, ssl.SSLContext]
) -> None:
    a, b, plain = TagFactory(b"A"), TagFactory(b"B"), TagFactory(b"PLAIN")
    chains = FilterChains(
        [
            tls_chain("a.test", server_contexts["a.test"], a),
            tls_chain("b.test", server_contexts["b.test"], b),
            FilterChain(
                (plain,),
                FilterChainMatch.from_config(FilterChainMatchConfig(transport_protocol="raw_buffer")),
                name="plain",
            ),
        ]
    )
    listener = Listener("fcm", f"{LOCALHOST}:0", [a, b, plain], idle_timeout=None, filter_chains=chains)
    with trio.fail_after(10):
        async with serving(listener) as lst:
            cert_a, answer_a = await tls_exchange(lst.port, ca, "a.test")
            cert_b, answer_b = await tls_exchange(lst.port, ca, "b.test")
            assert (answer_a, answer_b) == (b"A:ping", b"B:ping")
            assert cert_a != cert_b  # each name got its own chain's certificate

            stream = await trio.open_tcp_stream(LOCALHOST, lst.port)  # plaintext, same port
            await stream.send_all(b"hello")
            assert await stream.receive_some(1024) == b"PLAIN:hello"
            await stream.aclose()

            with pytest.raises((trio.BrokenResourceError, ssl.SSLError)):
                await tls_exchange(lst.port, ca, "c.test")  # no chain for it: closed
            assert lst.no_filter_chain_match == 1
            assert lst.tls_failures == 0  # refused before any handshake
    assert (a.connections, b.connections, plain.connections) == (1, 1, 1)


async def test_a_listener_with_one_chain_never_peeks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without filter_chains the listener serves as before: no inspection at all."""

    async def no_peeking(*args: object, **kwargs: object) -> Inspection | None:
        raise AssertionError("a single-chain listener peeked")

    monkeypatch.setattr("mosnpy.net.listener.inspect", no_peeking)
    factory = TagFactory(b"ONE")
    with trio.fail_after(10):
        async with serving(Listener("one", f"{LOCALHOST}:0", [factory], idle_timeout=None)) as lst:
            stream = await trio.open_tcp_stream(LOCALHOST, lst.port)
            await stream.send_all(b"x")
            assert await stream.receive_some(1024) == b"ONE:x"
            await stream.aclose()


async def test_chains_by_port_and_source_need_no_peeking(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_peeking(*args: object, **kwargs: object) -> Inspection | None:
        raise AssertionError("peeked though no chain matches on the first bytes")

    monkeypatch.setattr("mosnpy.net.listener.inspect", no_peeking)
    local, other = TagFactory(b"LOCAL"), TagFactory(b"OTHER")
    chains = FilterChains(
        [
            FilterChain(
                (local,),
                FilterChainMatch.from_config(FilterChainMatchConfig(source_prefix_ranges=["127.0.0.0/8"])),
            ),
            FilterChain((other,), FilterChainMatch()),
        ]
    )
    with trio.fail_after(10):
        listener = Listener("src", f"{LOCALHOST}:0", [local, other], idle_timeout=None, filter_chains=chains)
        async with serving(listener) as lst:
            stream = await trio.open_tcp_stream(LOCALHOST, lst.port)
            await stream.send_all(b"y")
            assert await stream.receive_some(1024) == b"LOCAL:y"
            await stream.aclose()


class RedirectedTo:
    """A listener filter standing in for ``original_dst``: the connection was meant for
    ``address`` (what an iptables REDIRECT would have the kernel report)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        accepted.values[ORIGINAL_DST] = self.address
        accepted.local_address = self.address
        return FilterStatus.CONTINUE


@pytest.mark.parametrize(("original", "want"), [("10.0.0.1:8443", b"8443"), ("10.0.0.1:80", b"OTHER")])
async def test_destination_port_is_the_original_destinations(original: str, want: bytes) -> None:
    by_port, other = TagFactory(b"8443"), TagFactory(b"OTHER")
    chains = FilterChains(
        [
            FilterChain(
                (by_port,), FilterChainMatch.from_config(FilterChainMatchConfig(destination_port=8443))
            ),
            FilterChain((other,), FilterChainMatch()),
        ]
    )
    listener = Listener(
        "dst",
        f"{LOCALHOST}:0",
        [by_port, other],
        listener_filters=[RedirectedTo(original)],
        idle_timeout=None,
        filter_chains=chains,
    )
    with trio.fail_after(10):
        async with serving(listener) as lst:
            stream = await trio.open_tcp_stream(LOCALHOST, lst.port)
            await stream.send_all(b"z")
            assert await stream.receive_some(1024) == want + b":z"
            await stream.aclose()
