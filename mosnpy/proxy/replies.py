"""The proxy's own answers: one place for every framework status and its reason.

MOSN's table: no route 404, no healthy upstream or connect failure 502, overflow 503,
timeout 504, any other reset 502/500.  Bodies are one short line saying what went
wrong, so ``curl`` users see the reason without reading logs.
"""

from __future__ import annotations

from mosnpy.config.models import RedirectConfig
from mosnpy.protocol.headers import HeaderMap
from mosnpy.stream.stream import ResetReason

__all__ = ["Reply", "STATUS_FOR_RESET", "for_reset"]


class Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: str | bytes, headers: HeaderMap | None = None) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers if headers is not None else HeaderMap()


#: Reset reason → downstream status (MOSN types/constant.go).
STATUS_FOR_RESET: dict[ResetReason, int] = {
    ResetReason.GLOBAL_TIMEOUT: 504,
    ResetReason.PER_TRY_TIMEOUT: 504,
    ResetReason.OVERFLOW: 503,
    ResetReason.CONNECTION_FAILED: 502,
    ResetReason.UPSTREAM_RESET: 502,
    ResetReason.LOCAL_RESET: 502,
    ResetReason.REMOTE_RESET: 502,
    ResetReason.CONNECTION_TERMINATION: 502,
}


def _mosn_headers(reason: str) -> HeaderMap:
    return HeaderMap([("x-mosnpy-error", reason)])


def for_reset(reason: ResetReason, message: str) -> Reply:
    return Reply(STATUS_FOR_RESET.get(reason, 500), message + "\n", _mosn_headers(reason.value))


def no_route(host: str, path: str) -> Reply:
    return Reply(404, f"no route for {host}{path}\n", _mosn_headers("NoRoute"))


def no_cluster(name: str) -> Reply:
    return Reply(404, f"cluster {name!r} not found\n", _mosn_headers("NoCluster"))


def no_healthy_host(message: str) -> Reply:
    return Reply(502, message + "\n", _mosn_headers("NoHealthyUpstream"))


def overflow(message: str) -> Reply:
    return Reply(503, f"upstream overflow: {message}\n", _mosn_headers("UpstreamOverflow"))


def internal_error(message: str) -> Reply:
    return Reply(500, message + "\n", _mosn_headers("InternalError"))


def direct(status: int, body: str) -> Reply:
    return Reply(status, body)


def redirect(cfg: RedirectConfig, host: str, target: str) -> Reply:
    scheme = cfg.scheme_redirect or "http"
    location = f"{scheme}://{cfg.host_redirect or host}{cfg.path_redirect or target}"
    return Reply(cfg.response_code, "", HeaderMap([("location", location)]))
