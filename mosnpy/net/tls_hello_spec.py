"""The TLS ClientHello as construct declares it: the spec the inspector's reader obeys.

:func:`mosnpy.net.tls_inspector.parse_client_hello` reads the few fields a filter
chain needs with a small hand reader, because it runs on the event loop for every
connection a listener peeks at: construct takes about ten times as long per
ClientHello (0.3-0.4 ms against 0.04 ms for a real one; 230 ms against 30 ms for a
64 KiB one of tiny extensions).  This module declares the same wire format with
``construct`` (RFC 8446 §5.1 records, §4 handshake header, §4.1.2 ClientHello, RFC
6066 §3 server names, RFC 7301 §3.1 ALPN) and parses with it
(:func:`parse_client_hello_spec`, same contract, the records gathered by the
inspector's own code); the test suite holds the two equal on drawn, mutated and real
ClientHellos, and builds its ClientHellos (records and handshake headers included)
with these specs.

The specs check what finding the name and protocols needs (every length prefix and
every vector filled exactly), not the RFC's size bounds nor the fields nothing here
reads: the handshake that follows checks those.  They are not ``.compile()``-d:
construct's compiled parsers do not notice a field cut short, which must be an error.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Bytes,
    ConstructError,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int24ub,
    PascalString,
    Prefixed,
    Select,
    Struct,
    Switch,
    Terminated,
    this,
)

from mosnpy.net.tls_inspector import (
    _EXT_ALPN,
    _EXT_SERVER_NAME,
    _SNI_HOST_NAME,
    MAX_EXTENSIONS,
    ClientHello,
    ClientHelloError,
    client_hello_body,
)

__all__ = [
    "CLIENT_HELLO_BODY",
    "EXTENSION",
    "HANDSHAKE_HEADER",
    "PROTOCOL_NAME_LIST",
    "SERVER_NAME_LIST",
    "TLS_RECORD_HEADER",
    "parse_client_hello_spec",
]


def _opaque(length: Any) -> Any:
    """``opaque data<..>`` (RFC 8446 §3.4): a ``length``-field count of bytes, then
    those bytes."""
    return Prefixed(length, GreedyBytes)


def _vector(length: Any, element: Any) -> Any:
    """A vector of ``element`` (RFC 8446 §3.4): a ``length``-field count of bytes,
    which the elements fill exactly.  ``GreedyRange`` alone stops quietly at an element
    it cannot parse; ``Terminated`` makes one cut short malformed, not the list's end."""
    return Prefixed(length, FocusedSeq("elements", "elements" / GreedyRange(element), Terminated))


#: TLSPlaintext's header (RFC 8446 §5.1); the fragment, ``length`` bytes, follows.
#: ``content_type`` 22 is a handshake record; ``legacy_record_version`` is 0x03XX.
TLS_RECORD_HEADER = Struct(
    "content_type" / Int8ub,
    "legacy_record_version" / Int16ub,
    "length" / Int16ub,
)

#: a Handshake message's header (RFC 8446 §4); its body, ``length`` bytes, follows,
#: spread over as many handshake records as it takes.  ``msg_type`` 1 is a ClientHello.
HANDSHAKE_HEADER = Struct(
    "msg_type" / Int8ub,
    "length" / Int24ub,
)

#: ServerNameList (RFC 6066 §3), the data of the ``server_name`` extension.  Every
#: entry is read as a ``HostName``: ``host_name`` (0) is the only ``name_type`` there is.
SERVER_NAME_LIST = _vector(
    Int16ub,
    Struct(
        "name_type" / Int8ub,
        "host_name" / _opaque(Int16ub),
    ),
)

#: ProtocolNameList (RFC 7301 §3.1), the data of the ALPN extension; the names are
#: opaque bytes, read as Latin-1 so that any of them round-trips.
PROTOCOL_NAME_LIST = _vector(Int16ub, PascalString(Int8ub, "latin-1"))

#: Extension (RFC 8446 §4.2): the ``server_name`` and ALPN data parsed (bytes after
#: their list are ignored), any other extension's data kept as bytes
EXTENSION = Struct(
    "extension_type" / Int16ub,
    "extension_data"
    / Prefixed(
        Int16ub,
        Switch(
            this.extension_type,
            {_EXT_SERVER_NAME: SERVER_NAME_LIST, _EXT_ALPN: PROTOCOL_NAME_LIST},
            default=GreedyBytes,
        ),
    ),
)

#: the body of a ClientHello message (RFC 8446 §4.1.2), after its HANDSHAKE_HEADER.
#: ``cipher_suites`` (u16 each) stay bytes, as nothing here reads them.  ``extensions``
#: is None when the body ends after the compression methods (a client from before
#: extensions); bytes after the extensions are ignored.
CLIENT_HELLO_BODY = Struct(
    "legacy_version" / Int16ub,
    "random" / Bytes(32),
    "legacy_session_id" / _opaque(Int8ub),
    "cipher_suites" / _opaque(Int16ub),
    "legacy_compression_methods" / _opaque(Int8ub),
    "extensions" / Select(_vector(Int16ub, EXTENSION), Terminated),
)


def parse_client_hello_spec(data: bytes) -> ClientHello | int:
    """:func:`~mosnpy.net.tls_inspector.parse_client_hello` with the message body parsed
    by :data:`CLIENT_HELLO_BODY`.  The records are gathered by the inspector's own
    :func:`~mosnpy.net.tls_inspector.client_hello_body` (control flow over 5-byte
    headers, not a field layout: the two parsers differ only in how the body is read).

    Raises: as ``parse_client_hello``.
    """
    body = client_hello_body(data)
    return body if isinstance(body, int) else _client_hello_spec(body)


def _client_hello_spec(body: bytes) -> ClientHello:
    """The SNI host name and the ALPN list of a ClientHello message body.

    The name is the first non-empty ``host_name`` entry of the ``server_name``
    extensions, lower-cased (host names compare without case); the ALPN list is the last
    ALPN extension's, in the client's order.
    """
    try:
        hello = CLIENT_HELLO_BODY.parse(body)
    except ConstructError as exc:
        raise ClientHelloError(f"a malformed ClientHello, at {exc.path}") from exc
    if hello.extensions is not None and len(hello.extensions) > MAX_EXTENSIONS:
        raise ClientHelloError(f"more than {MAX_EXTENSIONS} extensions")
    server_name = ""
    alpn: tuple[str, ...] = ()
    for extension in hello.extensions or ():
        if extension.extension_type == _EXT_SERVER_NAME:
            for entry in extension.extension_data:
                if entry.name_type == _SNI_HOST_NAME and not server_name:
                    try:
                        server_name = entry.host_name.decode("ascii").lower()
                    except UnicodeDecodeError:
                        raise ClientHelloError("a server name that is not ASCII") from None
        elif extension.extension_type == _EXT_ALPN:
            alpn = tuple(extension.extension_data)  # the last ALPN extension counts
    return ClientHello(server_name, alpn)
