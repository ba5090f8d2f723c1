"""Build a proxy in code: a small fluent builder over the config models.

The config models are the single source of truth; :class:`ProxyBuilder` only saves the
nesting.  What it builds is exactly what ``mosnpy -c`` would load from a file::

    proxy = (
        mosnpy.ProxyBuilder()
        .cluster("v1", ["127.0.0.1:9001"])
        .cluster("v2", ["127.0.0.1:9002"])
        .route(prefix="/", headers={"x-canary": "1"}, cluster="v2")
        .route(prefix="/", cluster="v1")
        .listener("http", "127.0.0.1:8080", stream_filters=[("canary", {"percent": 10})])
    )
    await proxy.serve()      # or: server = proxy.server(); await server.serve()

User classes join through the registries (``mosnpy.STREAM_FILTERS.register(...)``) and
are then named like built-ins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from mosnpy.config.models import (
    CircuitBreakerConfig,
    ClusterConfig,
    ClusterManagerConfig,
    DirectResponseConfig,
    FilterChainConfig,
    FilterConfig,
    HeaderMatcherConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    ServerConfig,
    VirtualHostConfig,
    WeightedClusterConfig,
)
from mosnpy.runtime.server import MosnServer

__all__ = ["ProxyBuilder"]


class ProxyBuilder:
    """Collects clusters, routes and listeners, then builds a :class:`MosnConfig`."""

    def __init__(self, *, graceful_timeout: float = 30.0) -> None:
        self.graceful_timeout = graceful_timeout
        self._clusters: list[ClusterConfig] = []
        self._routes: dict[str, dict[tuple[str, ...], list[RouteConfig]]] = {}
        self._listeners: list[ListenerConfig] = []

    def cluster(
        self,
        name: str,
        hosts: Sequence[str | tuple[str, int]],
        *,
        lb: str = "LB_ROUNDROBIN",
        connect_timeout: float = 10.0,
        max_connections: int = 0,
        max_requests: int = 0,
        max_retries: int = 0,
    ) -> ProxyBuilder:
        """Add a cluster; a host is ``"ip:port"`` or ``("ip:port", weight)``."""
        host_cfgs = [
            HostConfig(address=h) if isinstance(h, str) else HostConfig(address=h[0], weight=h[1])
            for h in hosts
        ]
        breakers = (
            (
                CircuitBreakerConfig(
                    max_connections=max_connections, max_requests=max_requests, max_retries=max_retries
                ),
            )
            if (max_connections or max_requests or max_retries)
            else ()
        )
        self._clusters.append(
            ClusterConfig(
                name=name,
                lb_type=lb,
                hosts=host_cfgs,
                connect_timeout=connect_timeout,
                circuit_breakers=breakers,
            )
        )
        return self

    def route(
        self,
        *,
        cluster: str = "",
        weighted: Mapping[str, int] | None = None,
        prefix: str | None = None,
        path: str | None = None,
        regex: str | None = None,
        headers: Mapping[str, str] | None = None,
        domains: Sequence[str] = ("*",),
        router: str = "default",
        timeout: float = 0.0,
        retries: int = 0,
        retry_on_status: Sequence[int] = (),
        direct_response: tuple[int, str] | None = None,
    ) -> ProxyBuilder:
        """Add a route (first added, first matched) to ``router``'s virtual host.

        With no ``prefix``, ``path`` or ``regex`` the route matches every path when it
        has ``headers`` (an RPC route: RPC requests have no path) and prefix ``/``
        otherwise.
        """
        if prefix is None and path is None and regex is None and not headers:
            prefix = "/"
        match = RouteMatchConfig(
            prefix=prefix,
            path=path,
            regex=regex,
            headers=[HeaderMatcherConfig(name=k, value=v) for k, v in (headers or {}).items()],
        )
        if direct_response is not None:
            rc = RouteConfig(
                match=match,
                direct_response=DirectResponseConfig(status=direct_response[0], body=direct_response[1]),
            )
        else:
            policy = (
                RetryPolicyConfig(retry_on=True, num_retries=retries, status_codes=tuple(retry_on_status))
                if retries
                else None
            )
            action = RouteActionConfig(
                cluster_name=cluster,
                weighted_clusters=[
                    WeightedClusterConfig(name=n, weight=w) for n, w in (weighted or {}).items()
                ],
                timeout=timeout,
                retry_policy=policy,
            )
            rc = RouteConfig(match=match, route=action)
        self._routes.setdefault(router, {}).setdefault(tuple(domains), []).append(rc)
        return self

    def listener(
        self,
        name: str,
        address: str,
        *,
        router: str = "default",
        protocol: str = "Http1",
        upstream_protocol: str = "Auto",
        extend_config: Mapping[str, Any] | None = None,
        stream_filters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        network_filters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        max_connections: int = 0,
        idle_timeout: float | None = None,
    ) -> ProxyBuilder:
        """Add a listener whose chain is ``network_filters`` then the ``proxy`` filter
        (``protocol`` downstream, ``upstream_protocol`` upstream: ``"Auto"`` is the
        same; ``extend_config`` per protocol name, e.g. ``{"Http2": {...}}``)."""
        filters = [FilterConfig(type=t, config=c) for t, c in network_filters]
        proxy: dict[str, Any] = {
            "downstream_protocol": protocol,
            "upstream_protocol": upstream_protocol,
            "router_config_name": router,
        }
        if extend_config:
            proxy["extend_config"] = dict(extend_config)
        filters.append(FilterConfig(type="proxy", config=proxy))
        self._listeners.append(
            ListenerConfig(
                name=name,
                address=address,
                filter_chains=[FilterChainConfig(filters=filters)],
                stream_filters=[FilterConfig(type=t, config=c) for t, c in stream_filters],
                max_connections=max_connections,
                connection_idle_timeout=idle_timeout,
            )
        )
        return self

    def build(self) -> MosnConfig:
        """The config this builder describes."""
        routers = [
            RouterConfig(
                router_config_name=name,
                virtual_hosts=[
                    VirtualHostConfig(name=f"{name}-{i}", domains=domains, routers=routes)
                    for i, (domains, routes) in enumerate(vhosts.items())
                ],
            )
            for name, vhosts in self._routes.items()
        ]
        return MosnConfig(
            servers=[
                ServerConfig(
                    graceful_timeout=self.graceful_timeout, listeners=self._listeners, routers=routers
                )
            ],
            cluster_manager=ClusterManagerConfig(clusters=self._clusters),
        )

    def server(self) -> MosnServer:
        """A :class:`MosnServer` for this config (not yet serving)."""
        return MosnServer(self.build())

    async def serve(self, *, task_status: trio.TaskStatus[MosnServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Build and serve until the server's ``shutdown()``; reports the server started."""
        await self.server().serve(task_status=task_status)
