"""Peek at a fresh connection: is it TLS, and which name and protocols does it ask for?

Envoy's ``tls_inspector`` listener filter, for choosing a filter chain
(:mod:`mosnpy.net.filterchain`) before any handshake.  The first bytes are read with
``MSG_PEEK``, so they stay in the socket: the chosen chain's TLS context then reads
the ClientHello itself, and a plaintext chain (a ``tcp_proxy`` passing TLS through by
SNI, or a plaintext protocol) gets the stream from its first byte.

A connection whose first byte opens a TLS handshake record (``0x16``) is ``"tls"``,
anything else ``"raw_buffer"``, as MOSN's ``fall_back`` and Envoy decide.  For
``"tls"`` the ClientHello is parsed (:func:`parse_client_hello`) for its SNI host name
and its ALPN list; a ClientHello split over several records or TCP segments is waited
for, the wait sleeping in the kernel (``SO_RCVLOWAT`` set to the bytes still missing,
since a peeked socket stays readable), with a short backoff where the kernel does not
honour it.  A malformed ClientHello is still ``"tls"`` (the handshake will refuse it);
one larger than :data:`MAX_CLIENT_HELLO` closes the connection, as in Envoy.
"""

from __future__ import annotations

import select
import socket

import attrs
import trio

__all__ = [
    "MAX_CLIENT_HELLO",
    "MAX_EXTENSIONS",
    "MAX_RECORDS",
    "RAW_BUFFER",
    "TLS",
    "ClientHello",
    "ClientHelloError",
    "ClientHelloTooLarge",
    "Inspection",
    "inspect",
    "client_hello_body",
    "parse_client_hello",
]

#: transport protocol names (Envoy's)
TLS = "tls"
RAW_BUFFER = "raw_buffer"

#: the largest ClientHello handshake message waited for (Envoy's default limit)
MAX_CLIENT_HELLO = 64 * 1024
#: the most records one ClientHello may span: a client fills records up to 16 KiB, so
#: even the largest ClientHello takes 5; a message dribbled in tiny records would make
#: every peek parse them all again (quadratic, on the event loop)
MAX_RECORDS = 16
#: the most extensions read (real clients send a few dozen): bounds the work of a
#: ClientHello packed with tiny ones
MAX_EXTENSIONS = 256

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 1
_MAX_RECORD = 2**14 + 2048  # TLSCiphertext's bound; a plaintext record is at most 2**14
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_SNI_HOST_NAME = 0
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


class ClientHelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello."""


class ClientHelloTooLarge(ClientHelloError):
    """The ClientHello is longer than :data:`MAX_CLIENT_HELLO`."""


@attrs.frozen
class ClientHello:
    """What a ClientHello asks for: the SNI host name (lower-cased; ``""``: none) and
    the ALPN protocols in the client's order."""

    server_name: str = ""
    alpn: tuple[str, ...] = ()


@attrs.frozen
class Inspection:
    """What :func:`inspect` learnt: ``"tls"`` or ``"raw_buffer"``, and the ClientHello
    (empty for plaintext, or when it was not asked for or did not parse)."""

    transport_protocol: str
    hello: ClientHello = ClientHello()


class _Reader:
    """Length-prefixed fields of a TLS structure; running short is malformed."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ClientHelloError("truncated ClientHello")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector8(self) -> _Reader:
        return _Reader(self.take(self.u8()))

    def vector16(self) -> _Reader:
        return _Reader(self.take(self.u16()))


def parse_client_hello(data: bytes) -> ClientHello | int:
    """The ClientHello at the start of ``data`` (the first bytes of a connection), or,
    when ``data`` holds only part of it, how many bytes of the stream it needs at least
    (always more than ``len(data)``: ask again with that many).

    Raises:
        ClientHelloTooLarge: it is longer than :data:`MAX_CLIENT_HELLO`, or spread over
            more than :data:`MAX_RECORDS` records.
        ClientHelloError: the bytes are not a TLS ClientHello.
    """
    body = client_hello_body(data)
    return body if isinstance(body, int) else _client_hello(body)


def client_hello_body(data: bytes) -> bytes | int:
    """The body of the ClientHello message at the start of ``data``, gathered from the
    fragments of as many handshake records as it spans, or how many bytes of the stream
    it needs at least (a record still missing is an answer, not an error).  Whatever
    follows the message is not read.

    Raises: as :func:`parse_client_hello`.
    """
    handshake = bytearray()
    pos = 0
    records = 0
    while True:
        if records == MAX_RECORDS:  # the message is not whole yet
            raise ClientHelloTooLarge(f"a ClientHello spread over more than {MAX_RECORDS} records")
        if len(data) < pos + 5:
            return pos + 5
        if data[pos] != _HANDSHAKE_RECORD or data[pos + 1] != 3:
            raise ClientHelloError("not a TLS handshake record")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if not 0 < length <= _MAX_RECORD:
            raise ClientHelloError(f"bad TLS record length {length}")
        end = pos + 5 + length
        if len(data) < end:
            return end
        handshake += data[pos + 5 : end]
        pos = end
        records += 1
        if len(handshake) < 4:
            continue
        if handshake[0] != _CLIENT_HELLO:
            raise ClientHelloError(f"the first handshake message is of type {handshake[0]}, not ClientHello")
        size = int.from_bytes(handshake[1:4], "big")
        if size > MAX_CLIENT_HELLO:
            raise ClientHelloTooLarge(f"a ClientHello of {size} bytes (at most {MAX_CLIENT_HELLO})")
        if len(handshake) >= 4 + size:
            return bytes(handshake[4 : 4 + size])


def _client_hello(body: bytes) -> ClientHello:
    """The SNI host name and the ALPN list of a ClientHello message body."""
    hello = _Reader(body)
    hello.take(2 + 32)  # legacy_version, random
    hello.vector8()  # legacy_session_id
    hello.vector16()  # cipher_suites
    hello.vector8()  # legacy_compression_methods
    if hello.done:
        return ClientHello()  # no extensions (SSL 3.0-style)
    extensions = hello.vector16()
    server_name = ""
    alpn: tuple[str, ...] = ()
    count = 0
    while not extensions.done:
        count += 1
        if count > MAX_EXTENSIONS:
            raise ClientHelloError(f"more than {MAX_EXTENSIONS} extensions")
        kind = extensions.u16()
        ext = extensions.vector16()
        if kind == _EXT_SERVER_NAME:
            names = ext.vector16()
            while not names.done:
                name_type = names.u8()
                name = names.vector16().data
                if name_type == _SNI_HOST_NAME and not server_name:
                    try:
                        server_name = name.decode("ascii").lower()
                    except UnicodeDecodeError:
                        raise ClientHelloError("a server name that is not ASCII") from None
        elif kind == _EXT_ALPN:
            protocols = ext.vector16()
            found: list[str] = []
            while not protocols.done:
                found.append(protocols.vector8().data.decode("latin-1"))
            alpn = tuple(found)
    return ClientHello(server_name, alpn)


async def inspect(sock: socket.socket, timeout: float, *, client_hello: bool = True) -> Inspection | None:
    """Peek at the first bytes of accepted TCP socket ``sock`` (nothing is consumed).

    ``client_hello``: also parse the ClientHello of a TLS connection (otherwise only
    the first byte is looked at).  A client that sends nothing within ``timeout``
    seconds is taken as plaintext (a server-speaks-first protocol); a ClientHello still
    incomplete then is TLS without a name.

    Returns:
        What was seen, or None when the connection should be closed: the peer left (or
        reset) before a byte came, or its ClientHello is too large.
    """
    sock.setblocking(False)
    need = 5 if client_hello else 1
    seen = -1
    backoff = 0.001
    lowat = 1
    transport = RAW_BUFFER
    try:
        with trio.move_on_after(timeout):
            while True:
                try:
                    data = sock.recv(need, socket.MSG_PEEK)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError:
                    return None
                if not data:
                    return None
                if data[0] != _HANDSHAKE_RECORD:
                    return Inspection(RAW_BUFFER)
                transport = TLS
                if not client_hello:
                    return Inspection(TLS)
                try:
                    parsed = parse_client_hello(data)
                except ClientHelloTooLarge:
                    return None
                except ClientHelloError:
                    return Inspection(TLS)
                if isinstance(parsed, ClientHello):
                    return Inspection(TLS, parsed)
                if len(data) == need:  # all asked for was there: ask for more at once
                    need = parsed
                    continue
                # Part of what is needed is here.  A peeked socket stays readable, so
                # sleep in the kernel until the rest came (SO_RCVLOWAT) ...
                if lowat != need:
                    lowat = _set_rcvlowat(sock, need)
                if len(data) == seen:
                    # ... and where nothing came since the last wake-up (the kernel
                    # ignores SO_RCVLOWAT, or the peer stopped sending) back off.
                    if _peer_hung_up(sock):
                        return None
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 0.05)
                seen = len(data)
                await trio.lowlevel.wait_readable(sock)
    finally:
        if lowat != 1:
            _set_rcvlowat(sock, 1)
    return Inspection(transport)


def _set_rcvlowat(sock: socket.socket, value: int) -> int:
    """Set ``SO_RCVLOWAT`` (the bytes a read waits for); the value now in effect."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
    except OSError:
        return 1
    return value


def _peer_hung_up(sock: socket.socket) -> bool:
    """Whether the peer shut its side down (it will send nothing more)."""
    if not _POLLRDHUP:
        return False
    poller = select.poll()
    poller.register(sock, _POLLRDHUP)
    return any(events & (_POLLRDHUP | select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))
