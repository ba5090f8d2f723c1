"""HTTP/1.1, sans-I/O: :class:`Http1ServerCodec` parses requests and writes responses,
:class:`Http1ClientCodec` writes requests and parses responses.

Both are built on llhttp (``httptools``) as a validator under our own boundary scan;
see the theory of operation in :mod:`mosnpy.protocol.http1.server`.  :data:`HTTP1` is
the protocol descriptor the ``mosnpy.protocols`` entry point ``Http1`` loads.

Layout: ``events`` (what the codecs hand up), ``errors``, ``server`` / ``client`` (the
two codecs), ``_parse`` / ``_encode`` (the reading and writing halves they share) and
``matcher`` (protocol detection).
"""

from __future__ import annotations

from mosnpy.protocol.api import PoolMode
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.http1.client import Http1ClientCodec as Http1ClientCodec
from mosnpy.protocol.http1.errors import Http1ConnectionClosed as Http1ConnectionClosed
from mosnpy.protocol.http1.errors import Http1Error as Http1Error
from mosnpy.protocol.http1.events import Body as Body
from mosnpy.protocol.http1.events import BodyFraming as BodyFraming
from mosnpy.protocol.http1.events import EndOfMessage as EndOfMessage
from mosnpy.protocol.http1.events import Event as Event
from mosnpy.protocol.http1.events import RequestHead as RequestHead
from mosnpy.protocol.http1.events import ResponseHead as ResponseHead
from mosnpy.protocol.http1.matcher import match_http1 as match_http1
from mosnpy.protocol.http1.server import Http1ServerCodec as Http1ServerCodec
from mosnpy.protocol.http1.stream import Http1ClientStreamConnection as Http1ClientStreamConnection
from mosnpy.protocol.http1.stream import Http1RequestHeaders as Http1RequestHeaders
from mosnpy.protocol.http1.stream import Http1ResponseHeaders as Http1ResponseHeaders
from mosnpy.protocol.http1.stream import Http1ServerStreamConnection as Http1ServerStreamConnection

__all__ = [
    "HTTP1",
    "Body",
    "BodyFraming",
    "EndOfMessage",
    "Event",
    "Http1ClientCodec",
    "Http1ClientStreamConnection",
    "Http1ConnectionClosed",
    "Http1Error",
    "Http1RequestHeaders",
    "Http1ResponseHeaders",
    "Http1ServerCodec",
    "Http1ServerStreamConnection",
    "RequestHead",
    "ResponseHead",
    "match_http1",
]

#: The ``Http1`` protocol: name, matcher, codecs, stream connections and ping-pong
#: pooling (``extend_config`` keys: ``max_header_size``).
HTTP1 = ProtocolDescriptor(
    name="Http1",
    matcher=match_http1,
    server_factory=Http1ServerCodec,
    client_factory=Http1ClientCodec,
    options=frozenset({"max_header_size"}),
    pool_mode=PoolMode.PING_PONG,
    server_stream_connection=Http1ServerStreamConnection,
    client_stream_connection=Http1ClientStreamConnection,
    family="http",
    alpn=("http/1.1",),
)
