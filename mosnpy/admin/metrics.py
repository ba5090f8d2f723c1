"""``/metrics``: the stats snapshot in Prometheus' text format, with MOSN's names.

The proxy keeps plain integer counters on its hot path; this module turns a snapshot
of them into metric families only when Prometheus scrapes, through prometheus_client's
collector interface, so the exposition format is the library's (escaping, types,
ordering), not hand-written.  Names follow MOSN's ``<type>_<name>{labels}``:
``downstream_*{listener}`` and ``upstream_*{cluster}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: snapshot counter key -> (metric name, help)
_UPSTREAM_COUNTERS = {
    "requests": ("upstream_request_total", "Requests sent to the cluster (first tries)"),
    "retries": ("upstream_request_retry", "Retries"),
    "connect_failures": ("upstream_connection_con_fail", "Failed connects"),
    "timeouts": ("upstream_request_timeout", "Requests that timed out (global or per try)"),
    "resets": ("upstream_request_reset", "Upstream resets and lost connections"),
    "overflows": ("upstream_request_pending_overflow", "Requests refused by max_requests"),
}


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot()
        listeners: dict[str, dict[str, Any]] = stats.get("listeners", {})
        clusters: dict[str, dict[str, Any]] = stats.get("clusters", {})

        conn_total = CounterMetricFamily("downstream_connection", "Accepted connections", labels=["listener"])
        conn_active = GaugeMetricFamily(
            "downstream_connection_active", "Open connections", labels=["listener"]
        )
        req_total = CounterMetricFamily("downstream_request", "Requests received", labels=["listener"])
        req_active = GaugeMetricFamily("downstream_request_active", "Requests in flight", labels=["listener"])
        responses = CounterMetricFamily(
            "downstream_response", "Requests by response status (0: none sent)", labels=["listener", "code"]
        )
        for name, s in listeners.items():
            conn_total.add_metric([name], s.get("connection_total", 0))
            conn_active.add_metric([name], s.get("connections", 0))
            req_total.add_metric([name], s.get("request_total", 0))
            req_active.add_metric([name], s.get("request_active", 0))
            for code, n in s.get("response_total", {}).items():
                responses.add_metric([name, code], n)
        yield from (conn_total, conn_active, req_total, req_active, responses)

        active = GaugeMetricFamily("upstream_request_active", "Requests in flight", labels=["cluster"])
        healthy = GaugeMetricFamily(
            "upstream_host_healthy", "1 if the host is healthy", labels=["cluster", "host"]
        )
        families = {
            key: CounterMetricFamily(name.removesuffix("_total"), help_, labels=["cluster"])
            for key, (name, help_) in _UPSTREAM_COUNTERS.items()
        }
        for name, c in clusters.items():
            active.add_metric([name], c.get("active_requests", 0))
            for host in c.get("hosts", []):
                healthy.add_metric([name, host["address"]], 1 if host["healthy"] else 0)
            for key, value in c.get("counters", {}).items():
                if key in families:
                    families[key].add_metric([name], value)
        yield active
        yield healthy
        yield from families.values()


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of ``snapshot()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
