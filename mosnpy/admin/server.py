"""The admin listener and its HTTP/1.1 read filter.

What the endpoints show and do comes from an :class:`AdminBackend`: the runtime's
server in a single process, the supervisor with ``--workers`` (which sums its workers'
stats and passes writes on to each of them).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import attrs

from mosnpy.admin import metrics
from mosnpy.config.dump import dump_config, dump_section
from mosnpy.config.models import MosnConfig
from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.net.filter import FilterStatus
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.listener import Listener
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import Http1Error, Http1ServerCodec
from mosnpy.protocol.http1.events import Body, BodyFraming, EndOfMessage, RequestHead, ResponseHead

__all__ = [
    "MOSN_LOG_LEVELS",
    "STATE_GRACEFUL_STOPPING",
    "STATE_RELOADING",
    "STATE_RUNNING",
    "STATE_STOPPED",
    "AdminBackend",
    "AdminServer",
    "ReloadRefused",
    "Request",
]

log = logging.getLogger("mosnpy.admin")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

#: MOSN's stage numbers (``pkg/stagemanager``) that ``/api/v1/states`` reports.
STATE_RUNNING = 6
STATE_GRACEFUL_STOPPING = 8
STATE_STOPPED = 11
#: MOSN's StartingNewServer: what it reports while a SIGHUP is being handled.
STATE_RELOADING = 12

#: The levels ``update_loglevel`` accepts (MOSN's ``levelMap``).
MOSN_LOG_LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")

#: Largest request body the admin API reads (the update_loglevel JSON is tiny).
MAX_BODY = 64 * 1024

Response = tuple[int, str, bytes]


class ReloadRefused(Exception):
    """A reload did not happen (a broken file, a port in use); ``str()`` says why.
    The running config is unchanged."""


class AdminBackend(Protocol):
    """What the admin API reads and changes."""

    def config(self) -> MosnConfig:
        """The config being served (``config_dump``)."""
        ...

    async def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot: ``{"listeners": {...}, "clusters": {...}}``."""
        ...

    def log_levels(self) -> dict[str, str]:
        """Log path → MOSN level name (``get_loglevel``)."""
        ...

    async def update_log_level(self, log_path: str, level: str) -> bool:
        """Set the level of the log at ``log_path`` (a MOSN level name); False when
        there is no such log."""
        ...

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply it; what changed.

        Raises:
            ReloadRefused: nothing changed, and why.
        """
        ...

    def state(self) -> int:
        """MOSN's stage number (``STATE_*``)."""
        ...


@attrs.frozen
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes


Handler = Callable[[Request], Awaitable[Response]]


class AdminServer:
    """Serves MOSN's admin endpoints on ``address`` (``host:port`` or a unix path).

    * ``GET /`` — the endpoints;
    * ``GET /api/v1/config_dump`` — the config in MOSN's JSON (loads back with
      ``mosnpy -c``); one query of ``mosnconfig``, ``allrouters``, ``allclusters``,
      ``alllisteners``, ``router=NAME``, ``cluster=NAME``, ``listener=NAME``;
    * ``GET /api/v1/stats`` — listeners and clusters as JSON;
    * ``GET /api/v1/stats_glob`` — the downstream totals as ``key:value`` lines;
    * ``GET /api/v1/get_loglevel`` — ``{"stdout": "INFO"}``;
    * ``POST /api/v1/update_loglevel`` — ``{"log_path": "stdout", "log_level": "DEBUG"}``;
    * ``GET /api/v1/states`` — ``pid=1234&state=6``;
    * ``GET /api/v1/version``;
    * ``POST /api/v1/reload`` — re-read the config file (mosnpy's own; SIGHUP does the same);
    * ``GET /metrics`` — Prometheus text format.
    """

    def __init__(self, address: str, backend: AdminBackend, *, version: str, name: str = "admin") -> None:
        self.backend = backend
        self.version = version
        self.routes: dict[str, tuple[str, Handler]] = {
            "/": ("GET", self._help),
            "/api/v1/config_dump": ("GET", self._config_dump),
            "/api/v1/stats": ("GET", self._stats),
            "/api/v1/stats_glob": ("GET", self._stats_glob),
            "/api/v1/get_loglevel": ("GET", self._get_loglevel),
            "/api/v1/update_loglevel": ("POST", self._update_loglevel),
            "/api/v1/states": ("GET", self._states),
            "/api/v1/version": ("GET", self._version),
            "/api/v1/reload": ("POST", self._reload),
            "/metrics": ("GET", self._metrics),
        }
        self.listener = Listener(name, address, [_AdminFilterFactory(self)], idle_timeout=60)

    async def answer(self, request: Request) -> Response:
        """The status, content type and body for one request."""
        route = self.routes.get(request.path)
        if route is None:
            error = f"no admin endpoint {request.path}"
            return 404, JSON, _json({"error": error, "endpoints": sorted(self.routes)})
        method, handler = route
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            error = f"method {request.method} not allowed on {request.path}: use {method}"
            return 405, JSON, _json({"error": error})
        try:
            return await handler(request)
        except Exception as exc:  # a backend bug must not kill the admin connection
            log.exception("admin %s failed", request.path)
            return 500, JSON, _json({"error": str(exc)})

    async def _help(self, request: Request) -> Response:
        return 200, JSON, _json({"endpoints": sorted(self.routes)})

    async def _config_dump(self, request: Request) -> Response:
        config = self.backend.config()
        if not request.query:
            return 200, JSON, _json(dump_config(config))
        if len(request.query) > 1:
            return 400, TEXT, b"only support one parameter"
        key, value = request.query[0]
        section = f"{key}={value}" if key in ("router", "cluster", "listener") else key
        if key in ("router", "cluster", "listener") and not value:
            return 400, JSON, _json({"error": f"{key}= needs a name"})
        data = dump_section(config, section)
        if data is None:
            if key in ("router", "cluster", "listener"):
                return 404, JSON, _json({"error": f"no {key} {value!r}"})
            return 400, JSON, _json({"error": f"unknown config_dump parameter {key!r}"})
        return 200, JSON, _json(data)

    async def _stats(self, request: Request) -> Response:
        return 200, JSON, _json(await self.backend.stats())

    async def _stats_glob(self, request: Request) -> Response:
        return 200, TEXT, metrics.render_glob(await self.backend.stats())

    async def _metrics(self, request: Request) -> Response:
        return 200, metrics.CONTENT_TYPE, metrics.render(await self.backend.stats())

    async def _get_loglevel(self, request: Request) -> Response:
        return 200, JSON, _json(self.backend.log_levels())

    async def _update_loglevel(self, request: Request) -> Response:
        try:
            data = json.loads(request.body or b"null")
        except ValueError:
            data = None
        level = data.get("log_level") if isinstance(data, dict) else None
        path = data.get("log_path", "") if isinstance(data, dict) else None
        if not isinstance(level, str) or not isinstance(path, str):
            why = 'the body must be {"log_path": "...", "log_level": "..."}'
        elif level.upper() not in MOSN_LOG_LEVELS:
            why = f"not found log level: {level} (known: {', '.join(MOSN_LOG_LEVELS)})"
        elif not await self.backend.update_log_level(path, level.upper()):
            why = f"no log {path!r} (known: {', '.join(sorted(self.backend.log_levels()))})"
        else:
            log.info("[admin api] [update log level] update log: %s level as %s", path, level.upper())
            return 200, TEXT, b"update logger success\n"
        log.warning("[admin api] update log level failed: %s", why)
        return 400, JSON, _json({"error": f"update logger failed: {why}"})

    async def _states(self, request: Request) -> Response:
        return 200, TEXT, f"pid={os.getpid()}&state={self.backend.state()}\n".encode()

    async def _version(self, request: Request) -> Response:
        return 200, JSON, _json({"version": self.version})

    async def _reload(self, request: Request) -> Response:
        try:
            result = await self.backend.reload()
        except ReloadRefused as exc:
            return 400, JSON, _json({"error": f"reload refused: {exc}"})
        return 200, JSON, _json(result)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n"


class _AdminFilterFactory:
    def __init__(self, server: AdminServer) -> None:
        self.server = server

    def create_filter_chain(self, manager: FilterManager) -> None:
        manager.add_read_filter(_AdminFilter(self.server))


class _AdminFilter:
    """HTTP/1.1 for the admin endpoints: requests in order, each answered once its body
    (at most :data:`MAX_BODY` bytes) has arrived."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.codec = Http1ServerCodec()
        self.conn: Connection | None = None
        self.head: RequestHead | None = None
        self.body = bytearray()

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
            if isinstance(event, RequestHead):
                self.head = event
                self.body.clear()
                if event.expect_continue:
                    await _send(conn, self.codec.continue_response())
                continue
            if isinstance(event, Body):
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    await _send(conn, self.codec.error_response(413, "admin request body too large"))
                    conn.close()
                    return FilterStatus.STOP
                continue
            if not isinstance(event, EndOfMessage) or self.head is None:
                continue
            head, self.head = self.head, None
            _, _, query = head.target.partition("?")
            params = tuple(parse_qsl(query, keep_blank_values=True))
            request = Request(head.method, head.path, params, bytes(self.body))
            status, content_type, body = await self.server.answer(request)
            headers = HeaderMap([("content-type", content_type)])
            response = ResponseHead(status, headers, content_length=len(body))
            out = self.codec.encode_response_head(response, BodyFraming.LENGTH, keep_alive=head.keep_alive)
            if head.method != "HEAD":
                out += body
            await _send(conn, out)
            if not head.keep_alive:
                conn.close()
                break
        return FilterStatus.STOP


async def _send(conn: Connection, data: bytes) -> None:
    try:
        await conn.send_all(data)
    except ConnectionClosedError:
        pass
