"""The errors of the HTTP/1.1 codec.

One exception type carries everything a caller needs to react: the HTTP status a server
should answer with (400, 431, 505, ... for a bad request; 502 for a bad upstream
response; 500 for a head that cannot be encoded) and a human-readable reason for logs
and for the error page.  After raising, a codec is dead: every later ``receive_data``
raises the same error, so a caller cannot accidentally keep parsing garbage.
"""

from __future__ import annotations

__all__ = ["Http1ConnectionClosed", "Http1Error"]


class Http1Error(Exception):
    """Malformed or unacceptable input. ``status`` is what a server should answer.

    Raised by ``receive_data`` for bad input (400 bad request, 414 request line too
    long, 417 unknown expectation, 431 header block too large, 501 Upgrade/CONNECT or a
    transfer coding we do not implement, 505 bad version; 502 for any bad *response*
    on the client side), and by the ``encode_*`` methods with status 500 when a head
    cannot be written (a header value holding CR/LF, a non-latin-1 character, ...).
    """

    status: int
    reason: str

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class Http1ConnectionClosed(Http1Error):
    """The peer closed the connection (``receive_data(b"")``) in the middle of a message.

    ``before_response`` is true on the client side when a request was sent and not one
    byte of its response arrived: the classic race with an upstream that closed an idle
    pooled connection, after which an idempotent request may safely be retried.
    """

    before_response: bool

    def __init__(self, status: int, reason: str, *, before_response: bool = False) -> None:
        super().__init__(status, reason)
        self.before_response = before_response
