"""Sans-I/O halves of an xprotocol connection: what to do with each decoded frame.

:class:`ServerSession` is the downstream side: it decodes requests, answers heartbeats
itself (they never reach the proxy), turns a decode error into the protocol's error
reply when the codec could still read the request, and asks to close otherwise.

:class:`ClientSession` is the upstream side: it allocates request ids (one counter per
connection, wrapping within the protocol's id width and never handing out 0) and
decodes responses.  The trio layer keeps the id → waiting stream table.
"""

from __future__ import annotations

from collections.abc import Iterator

from mosnpy.protocol.xprotocol.codec import (
    DecodeError,
    HeartbeatCodec,
    HijackCodec,
    StreamType,
    XCodec,
    XFrame,
)

__all__ = ["ClientSession", "Received", "ServerSession"]

#: Framework status for a request whose body could not be decoded (MOSN: codec error).
DECODE_ERROR_STATUS = 0


class Received:
    """What one batch of downstream bytes produced."""

    __slots__ = ("close", "requests", "to_send")

    def __init__(self) -> None:
        #: requests and oneway requests for the proxy, in arrival order
        self.requests: list[XFrame] = []
        #: bytes to write back at once (heartbeat answers, decode-error replies)
        self.to_send = bytearray()
        #: the stream is unreadable: close the connection after sending ``to_send``
        self.close = False


class ServerSession:
    """Decodes a downstream connection's frames."""

    __slots__ = ("buffer", "codec", "stray")

    def __init__(self, codec: XCodec) -> None:
        self.codec = codec
        self.buffer = bytearray()
        self.stray = 0

    def receive_data(self, data: bytes) -> Received:
        out = Received()
        self.buffer += data
        codec = self.codec
        while self.buffer:
            try:
                frame = codec.decode(self.buffer)
            except DecodeError as exc:
                if exc.request is not None and exc.consumed and isinstance(codec, HijackCodec):
                    del self.buffer[: exc.consumed]
                    reply = codec.hijack(exc.request, DECODE_ERROR_STATUS, f"decode error: {exc}")
                    out.to_send += codec.encode(reply)
                    continue
                out.close = True
                self.buffer.clear()
                break
            if frame is None:
                break
            if frame.is_heartbeat and frame.stream_type is not StreamType.RESPONSE:
                if isinstance(codec, HeartbeatCodec):
                    out.to_send += codec.encode(codec.reply(frame))
                continue
            if frame.stream_type is StreamType.RESPONSE:
                self.stray += 1  # a client does not send responses; drop it
                continue
            out.requests.append(frame)
        return out


class ClientSession:
    """Request ids and response decoding for one upstream connection."""

    __slots__ = ("_mask", "_next", "buffer", "codec")

    def __init__(self, codec: XCodec) -> None:
        self.codec = codec
        self.buffer = bytearray()
        self._mask = (1 << codec.id_bits) - 1
        self._next = 0

    def next_id(self) -> int:
        """The next request id: 1, 2, ... wrapping within ``id_bits`` and skipping 0."""
        self._next = (self._next + 1) & self._mask or 1
        return self._next

    def receive_data(self, data: bytes) -> Iterator[XFrame]:
        """Every whole frame in ``data`` (plus what was buffered).

        Raises:
            DecodeError: the upstream sent garbage; the connection is unusable.
        """
        self.buffer += data
        while self.buffer:
            frame = self.codec.decode(self.buffer)
            if frame is None:
                return
            yield frame
