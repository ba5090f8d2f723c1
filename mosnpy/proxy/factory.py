"""The ``proxy`` network filter: protocol detection, then the protocol's server driver.

One :class:`ProxyFilterFactory` per listener holds the shared :class:`ProxyContext`;
each connection gets a :class:`ProxyFilter`.  With one concrete downstream protocol the
driver starts at once; with ``Auto`` or a comma-separated list the first bytes are
sniffed by each candidate's matcher (MOSN's SelectStreamFactoryProtocol): AGAIN keeps
buffering, FAILED for every candidate closes the connection (logging the first bytes).

Every protocol is served the same way, through the stream connections its descriptor
names (:class:`~mosnpy.proxy.stream_server.StreamServer`): the proxy never knows which
protocol it forwards.  A registered protocol without stream connections is refused
when the config loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from mosnpy.config.errors import ConfigError
from mosnpy.config.mosn import parse_proxy_config
from mosnpy.net.connection import Connection
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import FilterStatus
from mosnpy.net.filtermanager import FilterManager
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.matcher import MatchResult, select
from mosnpy.protocol.registry import AUTO, known_names, lookup
from mosnpy.proxy.accesslog import AccessLog
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.stream_server import StreamServer
from mosnpy.registry import UnknownNameError
from mosnpy.router import Routers, RouteTable
from mosnpy.stream.filter import StreamFilterFactory
from mosnpy.upstream.cluster import ClusterManager

__all__ = [
    "BuildContext",
    "ProxyFilter",
    "ProxyFilterFactory",
    "create_proxy_filter_factory",
    "resolve_protocols",
]

log: Final = logging.getLogger("mosnpy.proxy")


def resolve_protocols(spec: str) -> list[tuple[str, ProtocolDescriptor]]:
    """A protocol name, a comma-separated list of names, or ``"Auto"`` → descriptors, in
    sniffing order.

    Raises:
        UnknownNameError: a name is not registered.
    """
    names = known_names() if spec == AUTO else [n.strip() for n in spec.split(",") if n.strip()]
    return [(name, lookup(name)) for name in names]


class ProxyFilter:
    """The per-connection read filter bridging NET/IO to the protocol and proxy layers."""

    def __init__(
        self,
        ctx: ProxyContext,
        candidates: list[tuple[str, ProtocolDescriptor]],
        upstream: ProtocolDescriptor | None = None,
    ) -> None:
        self.ctx = ctx
        self.candidates = candidates
        #: the upstream protocol (None: the same as the downstream's)
        self.upstream = upstream
        #: serves the connection once its protocol is known (a native call per batch
        #: compiled: the one driver there is, not a structural type)
        self.driver: StreamServer | None = None
        self.conn: Connection | None = None

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.conn = connection
        connection.add_event_listener(self._on_event)
        if len(self.candidates) == 1:
            self.driver = self._make_driver(self.candidates[0][1])
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        if self.driver is None:
            result, name = select(bytes(buffer[:64]), [(n, d.matcher) for n, d in self.candidates])
            if result is MatchResult.AGAIN:
                return FilterStatus.STOP
            if result is MatchResult.FAILED or name is None:
                assert self.conn is not None
                log.warning(
                    "connection %s: no protocol of %s matches first bytes %r; closing",
                    self.conn.id,
                    [n for n, _ in self.candidates],
                    bytes(buffer[:10]),
                )
                self.conn.close()
                return FilterStatus.STOP
            self.driver = self._make_driver(dict(self.candidates)[name])
        return await self.driver.on_data(buffer)

    def _make_driver(self, descriptor: ProtocolDescriptor) -> StreamServer:
        assert self.conn is not None
        return StreamServer(self.ctx, self.conn, descriptor, self.upstream or descriptor)

    def _on_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.SHUTDOWN:
            if self.driver is not None:
                self.driver.on_shutdown()
            elif self.conn is not None:
                self.conn.close()


class ProxyFilterFactory:
    """One per listener: gives each connection a :class:`ProxyFilter`."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.candidates = resolve_protocols(ctx.config.downstream_protocol)
        extend = ctx.config.extend_config
        for name, descriptor in self.candidates:
            if descriptor.server_stream_connection is None or descriptor.client_stream_connection is None:
                raise ValueError(f"protocol {name} has no stream connections to serve it with")
            options = extend.get(name, {})
            if isinstance(options, Mapping):
                descriptor.check_options(dict(options))
                try:  # values too: a bad one is a config error now, not per connection
                    descriptor.server_stream_connection(**options)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{name} extend_config: {exc}") from None
        self.upstream = upstream_protocol(ctx.config.upstream_protocol, self.candidates)
        # Routes may name their own upstream protocol: resolved and checked now.
        routes = ctx.routes
        for vhost in routes.virtual_hosts if routes is not None else ():
            for route in vhost.routes:
                spec = route.upstream_protocol
                if spec and spec != AUTO and spec not in ctx.route_protocols:
                    target = upstream_protocol(spec, self.candidates)
                    assert target is not None
                    ctx.route_protocols[spec] = target

    def create_filter_chain(self, manager: FilterManager) -> None:
        manager.add_read_filter(ProxyFilter(self.ctx, self.candidates, self.upstream))


def upstream_protocol(
    spec: str, candidates: list[tuple[str, ProtocolDescriptor]]
) -> ProtocolDescriptor | None:
    """The upstream protocol: None for ``Auto`` (the downstream's own).

    Raises:
        UnknownNameError: ``spec`` is not registered.
        ValueError: a downstream protocol cannot be converted to ``spec`` (only
            protocols of one family convert: HTTP/1.1 ↔ HTTP/2).
    """
    if spec in ("", AUTO):
        return None
    try:
        target = lookup(spec)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    for name, descriptor in candidates:
        if not descriptor.converts_to(target):
            raise ValueError(f"converting {name} to {spec} is not supported")
    return target


class BuildContext(Protocol):
    """What the runtime hands a network filter factory when building a listener."""

    @property
    def routers(self) -> Routers: ...

    @property
    def clusters(self) -> ClusterManager: ...

    @property
    def stream_filters(self) -> Sequence[StreamFilterFactory]: ...

    @property
    def listener_name(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def access_logs(self) -> Sequence[AccessLog]: ...


def create_proxy_filter_factory(config: Mapping[str, Any], build: BuildContext) -> ProxyFilterFactory:
    """The ``proxy`` entry of the network filter registry.

    Raises:
        ConfigError: bad proxy config, unknown router or protocol (with the key path).
    """
    path = f"{build.path}.config"
    proxy_cfg = parse_proxy_config(config, path)
    routes: RouteTable | None = None
    if proxy_cfg.router_config_name:
        try:
            routes = build.routers.get(proxy_cfg.router_config_name)
        except KeyError as exc:
            raise ConfigError(f"{path}.router_config_name", str(exc).strip("\"'")) from None
    ctx = ProxyContext(
        config=proxy_cfg,
        routes=routes,
        clusters=build.clusters,
        stream_filters=build.stream_filters,
        listener_name=build.listener_name,
        access_logs=tuple(build.access_logs),
    )
    try:
        return ProxyFilterFactory(ctx)
    except UnknownNameError as exc:
        raise ConfigError(f"{path}.downstream_protocol", str(exc)) from None
    except ValueError as exc:
        key = "extend_config" if "extend_config" in str(exc) else "upstream_protocol"
        raise ConfigError(f"{path}.{key}", str(exc)) from None
