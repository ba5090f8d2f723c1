"""What the proxy filter of one listener needs: routes, clusters, stream filters, limits.

Both classes are read on every request (the stats several times), so they are plain
classes with their attributes declared: compiled, a read is a field access where an
attrs class would be a Python attribute lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from mosnpy.config.models import ProxyConfig
from mosnpy.net.stats import Histogram
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.proxy.accesslog import AccessLog
from mosnpy.router import RouteTable
from mosnpy.stream.filter import StreamFilterFactory
from mosnpy.upstream.cluster import ClusterManager

__all__ = ["DEFAULT_GLOBAL_TIMEOUT", "DownstreamStats", "ProxyContext"]

#: MOSN's route timeout when none is configured.
DEFAULT_GLOBAL_TIMEOUT: Final = 60.0


class DownstreamStats:
    """Plain counters (MOSN's ``downstream`` metrics), read at scrape time.

    ``responses`` counts by status; a request that ended without one (the client left,
    or the response was cut) counts under 0.
    """

    def __init__(self) -> None:
        self.requests_total = 0
        self.requests_active = 0
        #: requests a bug in a handler or filter ended (answered 500 where still possible)
        self.internal_errors = 0
        self.responses: dict[int, int] = {}
        #: seconds from a request's head to the end of its exchange (MOSN's request_time)
        self.request_time = Histogram()
        #: access log lines dropped because their writer's queue was full
        self.access_log_dropped = 0

    def __repr__(self) -> str:
        return f"DownstreamStats(total={self.requests_total}, active={self.requests_active})"

    def snapshot(self) -> dict[str, object]:
        return {
            "request_total": self.requests_total,
            "request_active": self.requests_active,
            "internal_errors": self.internal_errors,
            "response_total": {str(code): n for code, n in sorted(self.responses.items())},
            "request_time": self.request_time.snapshot(),
            "access_log_dropped": self.access_log_dropped,
        }


class ProxyContext:
    """Shared by every connection of one listener's ``proxy`` filter.

    Attributes:
        config: the proxy filter's config.
        routes: the route table named by ``router_config_name`` (None: every request
            gets 404).
        clusters: the cluster manager.
        stream_filters: the listener's stream filter factories, in order.
        listener_name: for logs.
        access_logs: the listener's access logs (a line each per request).
        retry_buffer_limit: largest request body kept in memory so the request can be
            retried after it was sent; larger bodies stream through and are not
            retried once sent.
        max_requests_in_flight: multiplexed (RPC) requests in flight per downstream
            connection before the proxy stops reading it (MOSN's max_request_per_conn
            default).
        stats: the listener's downstream counters.
        route_protocols: upstream protocols routes name (``route.upstream_protocol``),
            resolved and checked convertible when the listener is built.
    """

    def __init__(
        self,
        *,
        config: ProxyConfig,
        routes: RouteTable | None,
        clusters: ClusterManager,
        stream_filters: Sequence[StreamFilterFactory] = (),
        listener_name: str = "",
        retry_buffer_limit: int = 1 << 20,
        max_requests_in_flight: int = 1024,
        stats: DownstreamStats | None = None,
        route_protocols: dict[str, ProtocolDescriptor] | None = None,
        access_logs: tuple[AccessLog, ...] = (),
    ) -> None:
        self.config = config
        self.routes = routes
        self.clusters = clusters
        self.stream_filters = stream_filters
        self.listener_name = listener_name
        self.retry_buffer_limit = retry_buffer_limit
        self.max_requests_in_flight = max_requests_in_flight
        self.stats = stats if stats is not None else DownstreamStats()
        self.route_protocols: dict[str, ProtocolDescriptor] = route_protocols or {}
        self.access_logs = access_logs

    def __repr__(self) -> str:
        return f"ProxyContext(listener_name={self.listener_name!r}, config={self.config!r})"

    def take_settings(self, other: ProxyContext) -> None:
        """Take everything of ``other`` (a reloaded listener's) but the counters: the
        live connections keep this context, and the stats run on."""
        self.config = other.config
        self.routes = other.routes
        self.clusters = other.clusters
        self.stream_filters = other.stream_filters
        self.listener_name = other.listener_name
        self.retry_buffer_limit = other.retry_buffer_limit
        self.max_requests_in_flight = other.max_requests_in_flight
        self.route_protocols = other.route_protocols
        self.access_logs = other.access_logs
