"""gRPC over HTTP/2: what a proxy must know of it, and nothing more.

A gRPC call is an HTTP/2 request with ``content-type: application/grpc[+proto|...]``.
Its outcome is in the trailers (``grpc-status``, ``grpc-message``), not in ``:status``,
which is 200 even for a failed call.  So:

* an error the proxy makes (no route, no upstream, overflow, timeout) goes out as a
  *trailers-only* response — ``:status 200`` plus ``grpc-status`` in one HEADERS frame
  that ends the stream — with the code a gRPC client expects for it
  (:func:`local_reply_code`), never as a bare HTTP status;
* a trailers-only answer from upstream is mapped to an HTTP-style status
  (:func:`http_status`), so retry policies written in HTTP codes (MOSN's
  ``retry_on`` + ``status_codes``) and statistics see the failure;
* ``grpc-timeout`` is the call's deadline (:func:`parse_timeout`), passed upstream
  reduced by the time already spent (:func:`format_timeout`).

References: gRPC's PROTOCOL-HTTP2.md and http-grpc-status-mapping.md.
"""

from __future__ import annotations

import math
from urllib.parse import quote

__all__ = [
    "GRPC_CODES",
    "format_timeout",
    "http_status",
    "is_grpc",
    "local_reply_code",
    "parse_timeout",
    "percent_encode",
]

#: Status codes by name (google.rpc.Code).
GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

#: A proxy-made HTTP status → the gRPC code sent instead (gRPC's HTTP→gRPC table,
#: with the proxy's own cases: no route is UNIMPLEMENTED, a timeout DEADLINE_EXCEEDED).
_CODE_FOR_STATUS = {
    400: 13,  # INTERNAL
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 12,  # UNIMPLEMENTED: no route, no cluster
    429: 14,  # UNAVAILABLE
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE: connect failure, reset, no healthy upstream
    503: 14,  # UNAVAILABLE (RESOURCE_EXHAUSTED when it is an overflow)
    504: 4,  # DEADLINE_EXCEEDED
}

#: An upstream's gRPC code → the HTTP-style status retries and statistics see.
_STATUS_FOR_CODE = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}

#: unit → (multiplier, divisor): sub-second units divide by an exact power of ten, so
#: "2745m" is 2.745 and not 2.7449999999999997
_UNITS = {"H": (3600, 1), "M": (60, 1), "S": (1, 1), "m": (1, 1000), "u": (1, 10**6), "n": (1, 10**9)}


def is_grpc(content_type: str | None) -> bool:
    """``application/grpc`` or one of its ``+format`` / ``;params`` variants."""
    return content_type is not None and content_type.startswith("application/grpc")


def local_reply_code(status: int, error: str | None) -> int:
    """The gRPC code for a reply the proxy makes with HTTP-style ``status``;
    ``error`` is the proxy's ``x-mosnpy-error`` reason (an overflow is
    RESOURCE_EXHAUSTED, not UNAVAILABLE)."""
    if error == "UpstreamOverflow" or error == "StreamOverflow":
        return GRPC_CODES["RESOURCE_EXHAUSTED"]
    if 200 <= status < 300:
        return GRPC_CODES["UNKNOWN"]  # a local "success" carries no message: not OK
    return _CODE_FOR_STATUS.get(status, GRPC_CODES["UNKNOWN"])


def http_status(grpc_status: str | None) -> int:
    """The HTTP-style status for a trailers-only answer's ``grpc-status``."""
    if grpc_status is None or not grpc_status.isdigit():
        return 500
    return _STATUS_FOR_CODE.get(int(grpc_status), 500)


def parse_timeout(value: str | None) -> float | None:
    """``grpc-timeout`` (at most 8 digits and a unit) in seconds; None when absent or
    malformed (a malformed one is ignored, as gRPC servers do)."""
    if not value or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1]
    scale = _UNITS.get(unit)
    if scale is None or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits) * scale[0] / scale[1]


def format_timeout(seconds: float) -> str:
    """Seconds as ``grpc-timeout``: the finest unit that fits 8 digits, rounded up
    (a deadline passed on must never grow), at least ``1n``."""
    seconds = max(seconds, 0.0)
    for unit in ("n", "u", "m", "S", "M", "H"):
        mul, div = _UNITS[unit]
        value = math.ceil(round(seconds * div / mul, 6))  # round: 2.745*1000 is 2745.0000000000005
        if value < 100_000_000:
            return f"{max(value, 1)}{unit}"
    return "99999999H"


#: printable ASCII except ``%`` passes through ``grpc-message`` as is
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


def percent_encode(message: str) -> str:
    """``grpc-message`` encoding: UTF-8, percent-encoded outside printable ASCII."""
    return quote(message, safe=_SAFE)
