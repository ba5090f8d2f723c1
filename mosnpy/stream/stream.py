"""The Stream: one request and its response, as every filter and the proxy see it.

A stream is protocol-neutral.  HTTP/1 fills :attr:`Stream.method`, :attr:`Stream.path`
and :attr:`Stream.host` from the request line and Host header; an RPC protocol fills
``host`` from its service name and leaves ``path`` empty.  Routing reads these three
plus :attr:`Stream.headers`, so the router never needs to know the protocol.

Filters answer a request themselves with :meth:`Stream.send_local_reply` (MOSN's
SendHijackReply / SendDirectResponse) and return STOP; the proxy sends that reply
through the sender filters instead of going upstream.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

from mosnpy.protocol.api import ResetReason
from mosnpy.protocol.headers import HeaderMap

__all__ = ["LocalReply", "ResetReason", "Stream"]

_ids: Final = itertools.count(1)


class LocalReply:
    """A response produced by mosnpy or a filter instead of an upstream."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: HeaderMap | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else HeaderMap()

    def __repr__(self) -> str:
        return f"LocalReply({self.status}, {len(self.body)} bytes)"


class Stream:
    """One request/response exchange flowing through the proxy."""

    __slots__ = (
        "_reset_listeners",
        "cluster_name",
        "downstream_address",
        "headers",
        "host",
        "id",
        "local_reply",
        "method",
        "path",
        "protocol",
        "reset_reason",
        "response_headers",
        "response_status",
        "route",
        "start_time",
        "upstream_host",
        "variables",
    )

    def __init__(
        self,
        *,
        protocol: str,
        headers: HeaderMap,
        method: str = "",
        path: str = "",
        host: str = "",
        downstream_address: str = "",
        start_time: float = 0.0,
    ) -> None:
        self.id = next(_ids)
        self.protocol = protocol
        #: request headers (edits here are what goes upstream)
        self.headers = headers
        self.method = method
        self.path = path
        self.host = host
        self.downstream_address = downstream_address
        self.start_time = start_time
        #: response, once there is one (upstream's or a local reply's)
        self.response_status: int | None = None
        self.response_headers: HeaderMap | None = None
        #: the matched route (a ``mosnpy.router`` Route), cluster and host chosen
        self.route: Any = None
        self.cluster_name = ""
        self.upstream_host: Any = None
        #: a reply a filter or the proxy decided to send instead of going upstream
        self.local_reply: LocalReply | None = None
        self.reset_reason: ResetReason | None = None
        #: free-form per-request variables (MOSN's context variables)
        self.variables: dict[str, Any] = {}
        self._reset_listeners: list[Callable[[ResetReason], None]] = []

    def __repr__(self) -> str:
        return f"<Stream #{self.id} {self.protocol} {self.method} {self.host}{self.path}>"

    def send_local_reply(
        self, status: int, body: bytes | str = b"", headers: HeaderMap | None = None
    ) -> None:
        """Answer this request locally with ``status`` (call, then return STOP)."""
        if isinstance(body, str):
            body = body.encode()
        self.local_reply = LocalReply(status, body, headers)

    def add_reset_listener(self, callback: Callable[[ResetReason], None]) -> None:
        self._reset_listeners.append(callback)

    def reset(self, reason: ResetReason) -> None:
        """Mark the stream reset (idempotent) and tell the listeners."""
        if self.reset_reason is not None:
            return
        self.reset_reason = reason
        for cb in self._reset_listeners:
            cb(reason)
