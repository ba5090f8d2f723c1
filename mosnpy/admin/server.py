"""The admin listener and its HTTP/1.1 read filter."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mosnpy.admin import metrics
from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.net.filter import FilterStatus
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.listener import Listener
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import Http1Error, Http1ServerCodec
from mosnpy.protocol.http1.events import BodyFraming, RequestHead, ResponseHead

__all__ = ["AdminServer"]

log = logging.getLogger("mosnpy.admin")

Snapshot = Callable[[], Any]

JSON = "application/json"


class AdminServer:
    """Serves the admin endpoints on ``address`` from the given snapshot callables.

    Args:
        address: ``host:port`` to listen on.
        config_dump: returns the running config as JSON-ready data.
        stats: returns the current statistics as JSON-ready data.
        version: the version string reported.
    """

    def __init__(self, address: str, *, config_dump: Snapshot, stats: Snapshot, version: str) -> None:
        self.stats = stats
        self.routes: dict[str, Snapshot] = {
            "/api/v1/config_dump": config_dump,
            "/api/v1/stats": stats,
            "/api/v1/version": lambda: {"version": version},
        }
        self.routes["/"] = lambda: {"endpoints": sorted([*self.routes, "/metrics"])}
        self.listener = Listener("admin", address, [_AdminFilterFactory(self)], idle_timeout=60)

    def answer(self, head: RequestHead) -> tuple[int, str, bytes]:
        """The status, content type and body for one request."""
        if head.method not in ("GET", "HEAD"):
            return (
                405,
                JSON,
                _json({"error": f"method {head.method} not allowed: the admin API is read-only"}),
            )
        try:
            if head.path == "/metrics":
                return 200, metrics.CONTENT_TYPE, metrics.render(self.stats)
            snapshot = self.routes.get(head.path)
            if snapshot is None:
                return (
                    404,
                    JSON,
                    _json({"error": f"no admin endpoint {head.path}", "endpoints": sorted(self.routes)}),
                )
            return 200, JSON, _json(snapshot())
        except Exception as exc:  # a snapshot bug must not kill the admin connection
            log.exception("admin %s failed", head.path)
            return 500, JSON, _json({"error": str(exc)})


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n"


class _AdminFilterFactory:
    def __init__(self, server: AdminServer) -> None:
        self.server = server

    def create_filter_chain(self, manager: FilterManager) -> None:
        manager.add_read_filter(_AdminFilter(self.server))


class _AdminFilter:
    """HTTP/1.1 for the admin endpoints: requests in order, bodies ignored."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.codec = Http1ServerCodec()
        self.conn: Connection | None = None

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.conn = connection
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        conn = self.conn
        assert conn is not None
        data = bytes(buffer)
        buffer.clear()
        try:
            events = self.codec.receive_data(data)
        except Http1Error as exc:
            await _send(conn, self.codec.error_response(exc.status, exc.reason))
            conn.close()
            return FilterStatus.STOP
        for event in events:
            if not isinstance(event, RequestHead):
                continue  # bodies and ends of requests: nothing to do with them
            status, content_type, body = self.server.answer(event)
            headers = HeaderMap([("content-type", content_type)])
            head = ResponseHead(status, headers, content_length=len(body))
            out = self.codec.encode_response_head(head, BodyFraming.LENGTH, keep_alive=event.keep_alive)
            if event.method != "HEAD":
                out += body
            await _send(conn, out)
            if not event.keep_alive:
                conn.close()
                break
        return FilterStatus.STOP


async def _send(conn: Connection, data: bytes) -> None:
    try:
        await conn.send_all(data)
    except ConnectionClosedError:
        pass
