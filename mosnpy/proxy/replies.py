"""The proxy's own answers: one place for every framework status and its reason.

MOSN's table: no route 404, no healthy upstream or connect failure 502, overflow 503,
timeout 504, any other reset 502/500.  Bodies are one short line saying what went
wrong, so ``curl`` users see the reason without reading logs.
"""

from __future__ import annotations

import enum
import functools
import operator
from typing import Final

from mosnpy.config.models import RedirectConfig
from mosnpy.protocol.headers import HeaderMap
from mosnpy.stream.stream import ResetReason

__all__ = ["FLAG_FOR_RESET", "STATUS_FOR_RESET", "Reply", "ResponseFlag", "for_reset"]


class ResponseFlag(enum.IntFlag):
    """Why a request did not get its upstream's answer (MOSN's ``api.ResponseFlag``):
    what the access log's ``%response_flag%`` and
    ``%upstream_transport_failure_reason%`` report."""

    NoHealthyUpstream = 0x2
    UpstreamRequestTimeout = 0x4
    UpstreamLocalReset = 0x8
    UpstreamRemoteReset = 0x10
    UpstreamConnectionFailure = 0x20
    UpstreamConnectionTermination = 0x40
    UpstreamOverflow = 0x80
    NoRouteFound = 0x100
    DelayInjected = 0x200
    FaultInjected = 0x400
    RateLimited = 0x800
    DownStreamTerminate = 0x1000
    ReqEntityTooLarge = 0x2000


class Reply:
    __slots__ = ("body", "flag", "headers", "status")

    def __init__(
        self, status: int, body: str | bytes, headers: HeaderMap | None = None, flag: int = 0
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers if headers is not None else HeaderMap()
        #: the :class:`ResponseFlag` this answer stands for (0: none)
        self.flag = flag


#: Reset reason → downstream status (MOSN types/constant.go).
STATUS_FOR_RESET: Final[dict[ResetReason, int]] = {
    ResetReason.GLOBAL_TIMEOUT: 504,
    ResetReason.PER_TRY_TIMEOUT: 504,
    ResetReason.OVERFLOW: 503,
    ResetReason.CONNECTION_FAILED: 502,
    ResetReason.UPSTREAM_RESET: 502,
    ResetReason.LOCAL_RESET: 502,
    ResetReason.REMOTE_RESET: 502,
    ResetReason.CONNECTION_TERMINATION: 502,
}


#: Upstream reset reason → response flag (MOSN's streamResetReasonToResponseFlag).
FLAG_FOR_RESET: Final[dict[ResetReason, ResponseFlag]] = {
    ResetReason.GLOBAL_TIMEOUT: ResponseFlag.UpstreamRequestTimeout,
    ResetReason.PER_TRY_TIMEOUT: ResponseFlag.UpstreamRequestTimeout,
    ResetReason.OVERFLOW: ResponseFlag.UpstreamOverflow,
    ResetReason.CONNECTION_FAILED: ResponseFlag.UpstreamConnectionFailure,
    ResetReason.UPSTREAM_RESET: ResponseFlag.UpstreamRemoteReset,
    ResetReason.LOCAL_RESET: ResponseFlag.UpstreamLocalReset,
    ResetReason.REMOTE_RESET: ResponseFlag.UpstreamRemoteReset,
    ResetReason.CONNECTION_TERMINATION: ResponseFlag.UpstreamConnectionTermination,
}


#: The flags of a failure on the upstream's side (a request that ended without an
#: answer for any other reason is the client's doing: DownStreamTerminate).
UPSTREAM_FAILURES: Final = int(functools.reduce(operator.or_, FLAG_FOR_RESET.values()))


def _mosn_headers(reason: str) -> HeaderMap:
    return HeaderMap([("x-mosnpy-error", reason)])


def for_reset(reason: ResetReason, message: str) -> Reply:
    return Reply(
        STATUS_FOR_RESET.get(reason, 500),
        message + "\n",
        _mosn_headers(reason.value),
        FLAG_FOR_RESET.get(reason, 0),
    )


def no_route(host: str, path: str) -> Reply:
    return Reply(404, f"no route for {host}{path}\n", _mosn_headers("NoRoute"), ResponseFlag.NoRouteFound)


def no_cluster(name: str) -> Reply:
    return Reply(404, f"cluster {name!r} not found\n", _mosn_headers("NoCluster"), ResponseFlag.NoRouteFound)


def no_healthy_host(message: str) -> Reply:
    return Reply(502, message + "\n", _mosn_headers("NoHealthyUpstream"), ResponseFlag.NoHealthyUpstream)


def overflow(message: str) -> Reply:
    return Reply(
        503,
        f"upstream overflow: {message}\n",
        _mosn_headers("UpstreamOverflow"),
        ResponseFlag.UpstreamOverflow,
    )


def internal_error(message: str) -> Reply:
    return Reply(500, message + "\n", _mosn_headers("InternalError"))


def direct(status: int, body: str) -> Reply:
    return Reply(status, body)


def redirect(cfg: RedirectConfig, host: str, target: str) -> Reply:
    scheme = cfg.scheme_redirect or "http"
    location = f"{scheme}://{cfg.host_redirect or host}{cfg.path_redirect or target}"
    return Reply(cfg.response_code, "", HeaderMap([("location", location)]))
