"""What the proxy filter of one listener needs: routes, clusters, stream filters, limits."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import attrs

from mosnpy.config.models import ProxyConfig
from mosnpy.net.stats import Histogram
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.proxy.accesslog import AccessLog
from mosnpy.router import RouteTable
from mosnpy.stream.filter import StreamFilterFactory
from mosnpy.upstream.cluster import ClusterManager

__all__ = ["DEFAULT_GLOBAL_TIMEOUT", "DownstreamStats", "ProxyContext"]

#: MOSN's route timeout when none is configured.
DEFAULT_GLOBAL_TIMEOUT = 60.0


@attrs.define(kw_only=True)
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
    """

    config: ProxyConfig
    routes: RouteTable | None
    clusters: ClusterManager
    stream_filters: Sequence[StreamFilterFactory] = ()
    listener_name: str = ""
    #: largest request body kept in memory so the request can be retried after it
    #: was sent; larger bodies stream through and are not retried once sent.
    retry_buffer_limit: int = 1 << 20
    #: multiplexed (RPC) requests in flight per downstream connection before the proxy
    #: stops reading it (MOSN's max_request_per_conn default)
    max_requests_in_flight: int = 1024
    stats: DownstreamStats = attrs.field(factory=lambda: DownstreamStats())
    #: upstream protocols routes name (``route.upstream_protocol``), resolved and
    #: checked convertible when the listener is built
    route_protocols: dict[str, ProtocolDescriptor] = attrs.field(factory=dict)
    access_logs: tuple[AccessLog, ...] = ()


@attrs.define
class DownstreamStats:
    """Plain counters (MOSN's ``downstream`` metrics), read at scrape time.

    ``responses`` counts by status; a request that ended without one (the client left,
    or the response was cut) counts under 0.
    """

    requests_total: int = 0
    requests_active: int = 0
    #: requests a bug in a handler or filter ended (answered 500 where still possible)
    internal_errors: int = 0
    responses: collections.Counter[int] = attrs.field(factory=collections.Counter)
    #: seconds from a request's head to the end of its exchange (MOSN's request_time)
    request_time: Histogram = attrs.field(factory=Histogram)
    #: access log lines dropped because their writer's queue was full
    access_log_dropped: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "request_total": self.requests_total,
            "request_active": self.requests_active,
            "internal_errors": self.internal_errors,
            "response_total": {str(code): n for code, n in sorted(self.responses.items())},
            "request_time": self.request_time.snapshot(),
            "access_log_dropped": self.access_log_dropped,
        }
