"""HTTP/2 (h2c with prior knowledge; over TLS with ALPN once listeners speak TLS) and gRPC.

One more pair of stream connections (:mod:`.stream`, on h2) and pool mode MULTIPLEX:
the proxy serves it without knowing it, and converts to and from HTTP/1 because both
are of the ``http`` family (:attr:`ProtocolDescriptor.family`).  ``extend_config``
keys under ``Http2`` are the fields of :class:`H2Settings`.
"""

from __future__ import annotations

from mosnpy.protocol.api import PoolMode
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.http2.headers import H2RequestHeaders as H2RequestHeaders
from mosnpy.protocol.http2.headers import H2ResponseHeaders as H2ResponseHeaders
from mosnpy.protocol.http2.matcher import PREFACE as PREFACE
from mosnpy.protocol.http2.matcher import match_http2 as match_http2
from mosnpy.protocol.http2.stream import H2ClientStreamConnection as H2ClientStreamConnection
from mosnpy.protocol.http2.stream import H2ServerStreamConnection as H2ServerStreamConnection
from mosnpy.protocol.http2.stream import H2Settings as H2Settings

__all__ = [
    "HTTP2",
    "PREFACE",
    "H2ClientStreamConnection",
    "H2RequestHeaders",
    "H2ResponseHeaders",
    "H2ServerStreamConnection",
    "H2Settings",
    "match_http2",
]

#: The ``Http2`` protocol: h2c by its connection preface, multiplexed pooling.
HTTP2 = ProtocolDescriptor(
    name="Http2",
    matcher=match_http2,
    server_factory=H2ServerStreamConnection,
    client_factory=H2ClientStreamConnection,
    options=H2Settings.OPTIONS,
    pool_mode=PoolMode.MULTIPLEX,
    server_stream_connection=H2ServerStreamConnection,
    client_stream_connection=H2ClientStreamConnection,
    family="http",
    alpn=("h2",),
)
