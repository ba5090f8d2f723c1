"""The xprotocol codec contract: all a multiplexed RPC protocol plugin writes.

A plugin (dubbo, bolt, a company's private protocol) implements :class:`XCodec` and
hands up frames that satisfy :class:`XFrame`.  Everything else — stream creation,
routing on the frame's header view, pooling, request-id allocation and remapping,
heartbeats, timeouts, retries and error replies — is the framework's.

Required of every codec:

* ``decode(buf)`` returns one whole frame and deletes exactly its bytes from ``buf``,
  returns ``None`` when ``buf`` holds less than a frame (leaving ``buf`` untouched), and
  raises :class:`DecodeError` on garbage;
* ``encode(frame)`` returns the frame's bytes (a frame that was decoded and not edited
  except for its request id should re-encode to the same bytes with only the id bytes
  changed);
* ``get_request_id`` / ``set_request_id`` (ids are unsigned, ``id_bits`` wide);
* ``name`` and ``match(data)`` (protocol detection by the first bytes).

Optional capabilities are separate ``runtime_checkable`` protocols, so a plugin that
lacks one never stubs it out: :class:`HeartbeatCodec` (build a keepalive probe and
answer one) and :class:`HijackCodec` (build an error reply in the protocol's own status
language for a framework status such as 404, 502, 503 or 504).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import ClassVar, Protocol, runtime_checkable

from mosnpy.protocol.api import PoolMode
from mosnpy.protocol.matcher import MatchResult

__all__ = [
    "DecodeError",
    "HeartbeatCodec",
    "HijackCodec",
    "PoolMode",
    "StreamType",
    "XCodec",
    "XFrame",
]


class StreamType(Enum):
    """What a frame is, as the framework routes it."""

    REQUEST = "request"  # expects a response
    ONEWAY = "oneway"  # expects none
    RESPONSE = "response"


class DecodeError(Exception):
    """The bytes are not a frame of this protocol.

    Args:
        message: what is wrong.
        request: a request frame the codec could still read enough of to answer
            (for example its header was fine but its body did not deserialize), so the
            framework can send a protocol error reply instead of closing.
        consumed: how many bytes that frame took.  ``decode`` must leave them in the
            buffer when it raises: the framework drops them after sending the reply.
    """

    def __init__(self, message: str, *, request: XFrame | None = None, consumed: int = 0) -> None:
        super().__init__(message)
        self.request = request
        self.consumed = consumed


@runtime_checkable
class XFrame(Protocol):
    """What the framework reads from every frame.

    Read-only to the framework, so a frame may offer them as plain fields or as
    properties computed from its bytes.
    """

    @property
    def stream_type(self) -> StreamType:
        """Request, oneway or response."""
        ...

    @property
    def is_heartbeat(self) -> bool:
        """A keepalive probe or its answer (never reaches the proxy)."""
        ...

    @property
    def status(self) -> int:
        """The protocol's own status code (responses; 0 for requests)."""
        ...

    @property
    def timeout_ms(self) -> int:
        """The frame's own timeout in ms (0 = use the route's, < 0 = never)."""
        ...

    def header_view(self) -> Mapping[str, str]:
        """Routing keys (dubbo: service, method, version, group; bolt: its header map)."""
        ...


@runtime_checkable
class XCodec(Protocol):
    """A multiplexed RPC protocol's codec (sans-I/O: no sockets, no clocks)."""

    name: ClassVar[str]
    #: request ids are unsigned integers of this many bits (dubbo 64, bolt 32)
    id_bits: ClassVar[int]

    def decode(self, buf: bytearray) -> XFrame | None: ...

    def encode(self, frame: XFrame) -> bytes: ...

    def get_request_id(self, frame: XFrame) -> int: ...

    def set_request_id(self, frame: XFrame, request_id: int) -> None: ...

    def match(self, data: bytes) -> MatchResult: ...


@runtime_checkable
class HeartbeatCodec(Protocol):
    """Optional: the protocol has keepalive probes the framework may send and answer."""

    def trigger(self, request_id: int) -> XFrame:
        """A heartbeat request with ``request_id``."""
        ...

    def reply(self, request: XFrame) -> XFrame:
        """The answer to heartbeat ``request`` (same id)."""
        ...


@runtime_checkable
class HijackCodec(Protocol):
    """Optional: error replies in the protocol's own status language."""

    def hijack(self, request: XFrame, status: int, message: str) -> XFrame:
        """A response to ``request`` (same id) for framework ``status``.

        ``status`` is MOSN's common code: 404 no route, 502 no healthy upstream or
        upstream reset, 503 overflow, 504 timeout, 500 other, 0/2/3 decode errors.
        """
        ...

    def response_code(self, response: XFrame) -> int:
        """The response's status as an HTTP-style code (200 ok, 5xx failures), for
        retries and statistics."""
        ...
