"""Events the HTTP/1.1 codec hands up, named as facts (past tense / nouns).

A request or response is one head event, zero or more :class:`Body` events, then one
:class:`EndOfMessage`.  Framing (Content-Length, chunked, read-until-close) is the
codec's business: ``Transfer-Encoding`` and the other hop-by-hop headers never reach the
header map, and the encoder writes the framing it is asked for.
"""

from __future__ import annotations

from enum import Enum

from mosnpy.protocol.headers import HeaderMap

__all__ = ["Body", "BodyFraming", "EndOfMessage", "Event", "RequestHead", "ResponseHead"]


class BodyFraming(Enum):
    """How a message body is delimited on the wire."""

    NONE = "none"  # no body at all (GET without length, 204, 304, HEAD responses)
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # response body runs until the connection closes


class RequestHead:
    """A request line and headers.

    ``headers`` holds end-to-end headers only (Content-Length stays; hop-by-hop
    headers such as Connection, Keep-Alive, Transfer-Encoding, TE, Upgrade,
    Proxy-Connection and any named in Connection are removed).
    """

    __slots__ = (
        "content_length",
        "expect_continue",
        "framing",
        "headers",
        "host",
        "keep_alive",
        "method",
        "raw",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: HeaderMap,
        *,
        host: str | None = None,
        version: str = "1.1",
        keep_alive: bool = True,
        framing: BodyFraming = BodyFraming.NONE,
        content_length: int | None = None,
        expect_continue: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        #: the Host value when the head's scan read it (None: ask ``headers``)
        self.host = host
        #: the header block as parsed (``headers.raw`` while unedited; None if not parsed)
        self.raw = headers.raw
        self.version = version
        self.keep_alive = keep_alive
        self.framing = framing
        self.content_length = content_length
        self.expect_continue = expect_continue

    @property
    def path(self) -> str:
        """The target without its query string."""
        q = self.target.find("?")
        return self.target if q < 0 else self.target[:q]

    def __repr__(self) -> str:
        return f"RequestHead({self.method} {self.target} HTTP/{self.version}, {self.framing.value})"


class ResponseHead:
    """A status line and headers (end-to-end headers only, as for requests)."""

    __slots__ = ("content_length", "framing", "headers", "keep_alive", "raw", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        headers: HeaderMap,
        *,
        reason: str = "",
        version: str = "1.1",
        keep_alive: bool = True,
        framing: BodyFraming = BodyFraming.NONE,
        content_length: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        #: the header block as parsed (``headers.raw`` while unedited; None if not parsed)
        self.raw = headers.raw
        self.reason = reason
        self.version = version
        self.keep_alive = keep_alive
        self.framing = framing
        self.content_length = content_length

    def __repr__(self) -> str:
        return f"ResponseHead({self.status} {self.reason}, {self.framing.value})"


class Body:
    """A piece of a message body (already de-chunked)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Body({len(self.data)} bytes)"


class EndOfMessage:
    """The message is complete; ``trailers`` only for chunked bodies that had some."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: HeaderMap | None = None) -> None:
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"EndOfMessage(trailers={self.trailers!r})"


Event = RequestHead | ResponseHead | Body | EndOfMessage
