"""ProxyContext: what a reload carries over to the live connections, and what it keeps."""

from __future__ import annotations

from typing import cast

from mosnpy.config.models import ProxyConfig
from mosnpy.proxy.accesslog import AccessLog
from mosnpy.proxy.context import DownstreamStats, ProxyContext
from mosnpy.router import RouteTable
from mosnpy.upstream.cluster import ClusterManager

#: every setting of a context (all but ``stats``)
SETTINGS = (
    "config",
    "routes",
    "clusters",
    "stream_filters",
    "listener_name",
    "retry_buffer_limit",
    "max_requests_in_flight",
    "route_protocols",
    "access_logs",
)


def test_a_reload_takes_every_setting_and_keeps_the_counters() -> None:
    old = ProxyContext(
        config=ProxyConfig(downstream_protocol="Http1"), routes=None, clusters=ClusterManager([])
    )
    old.stats.requests_total = 7
    stats = old.stats
    new = ProxyContext(
        config=ProxyConfig(downstream_protocol="Http1", upstream_protocol="Http1"),
        routes=RouteTable("reloaded", []),
        clusters=ClusterManager([]),
        stream_filters=[],
        listener_name="reloaded",
        retry_buffer_limit=5,
        max_requests_in_flight=3,
        route_protocols={},
        access_logs=cast("tuple[AccessLog, ...]", (object(),)),
    )
    for name in SETTINGS:
        assert getattr(old, name) is not getattr(new, name), name
    old.take_settings(new)
    for name in SETTINGS:
        assert getattr(old, name) is getattr(new, name), name
    assert old.stats is stats and stats.requests_total == 7


def test_fresh_contexts_count_apart() -> None:
    a = ProxyContext(config=ProxyConfig(), routes=None, clusters=ClusterManager([]))
    b = ProxyContext(config=ProxyConfig(), routes=None, clusters=ClusterManager([]))
    assert isinstance(a.stats, DownstreamStats) and a.stats is not b.stats
    assert a.route_protocols is not b.route_protocols
    a.stats.responses[200] = 1
    assert a.stats.snapshot()["response_total"] == {"200": 1} and b.stats.snapshot()["response_total"] == {}
