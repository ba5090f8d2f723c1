"""``/metrics``: the stats snapshot in Prometheus' text format, with MOSN's names.

The proxy keeps plain integer counters on its hot path; this module turns a snapshot
of them into metric families only when Prometheus scrapes, through prometheus_client's
collector interface, so the exposition format is the library's (escaping, types,
ordering), not hand-written.  Names follow MOSN's ``<type>_<name>{labels}``:
``downstream_*{listener}`` and ``upstream_*{cluster}``.

Latencies are Prometheus histograms in seconds: ``downstream_request_time`` (from a
request's head to the end of its exchange, per listener) and
``upstream_request_duration_time`` (from the request fully sent upstream to the end of
the exchange, per cluster), each with MOSN's ``_min`` / ``_max`` gauges beside it.
Bytes: ``downstream_bytes_read_total`` / ``downstream_bytes_write_total`` and
``upstream_connection_bytes_read_total`` / ``upstream_connection_bytes_write_total``
(MOSN's ``connection_bytes_write``; prometheus_client ends every counter in
``_total``).

:func:`render_glob` is MOSN's ``/api/v1/stats_glob``: the proxy-wide downstream totals
as ``key:value`` lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "render", "render_glob"]

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
    def __init__(self, stats: Mapping[str, Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
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
        bytes_read = CounterMetricFamily("downstream_bytes_read", "Bytes read", labels=["listener"])
        bytes_write = CounterMetricFamily("downstream_bytes_write", "Bytes written", labels=["listener"])
        for name, s in listeners.items():
            traffic = s.get("traffic", {})
            bytes_read.add_metric([name], traffic.get("read", 0))
            bytes_write.add_metric([name], traffic.get("written", 0))
        yield from (bytes_read, bytes_write)
        yield from _histograms(
            "downstream_request_time",
            "Seconds from a request's head to the end of its exchange",
            "listener",
            {name: s.get("request_time") for name, s in listeners.items()},
        )

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
        up_read = CounterMetricFamily(
            "upstream_connection_bytes_read", "Bytes read from the cluster's hosts", labels=["cluster"]
        )
        up_write = CounterMetricFamily(
            "upstream_connection_bytes_write", "Bytes written to the cluster's hosts", labels=["cluster"]
        )
        for name, c in clusters.items():
            traffic = c.get("traffic", {})
            up_read.add_metric([name], traffic.get("read", 0))
            up_write.add_metric([name], traffic.get("written", 0))
        yield from (up_read, up_write)
        yield from _histograms(
            "upstream_request_duration_time",
            "Seconds from a request fully sent upstream to the end of its exchange",
            "cluster",
            {name: c.get("request_duration_time") for name, c in clusters.items()},
        )


def _histograms(
    name: str, help_: str, label: str, snapshots: Mapping[str, Mapping[str, Any] | None]
) -> Iterator[Metric]:
    """A histogram family (cumulative buckets) plus MOSN's ``_min`` / ``_max`` gauges."""
    family = HistogramMetricFamily(name, help_, labels=[label])
    low = GaugeMetricFamily(f"{name}_min", f"{help_} (smallest)", labels=[label])
    high = GaugeMetricFamily(f"{name}_max", f"{help_} (largest)", labels=[label])
    for owner, snap in snapshots.items():
        if not snap:
            continue
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip([*snap["bounds"], "+Inf"], snap["counts"], strict=False):
            running += n
            buckets.append((bound if isinstance(bound, str) else repr(float(bound)), running))
        family.add_metric([owner], buckets, snap.get("sum", 0.0))
        if snap.get("min") is not None:
            low.add_metric([owner], snap["min"])
        if snap.get("max") is not None:
            high.add_metric([owner], snap["max"])
    yield from (family, low, high)


def render_glob(stats: Mapping[str, Any]) -> bytes:
    """MOSN's ``stats_glob``: the downstream totals over every listener, ``key:value``
    lines (counters and gauges; ``request_time_min`` / ``_max`` in nanoseconds, as MOSN
    records them)."""
    listeners: Mapping[str, Mapping[str, Any]] = stats.get("listeners", {})
    totals: dict[str, int] = {
        "connection_total": 0,
        "connection_active": 0,
        "bytes_read_total": 0,
        "bytes_write_total": 0,
        "request_total": 0,
        "request_active": 0,
    }
    codes: dict[str, int] = {}
    low: float | None = None
    high: float | None = None
    for s in listeners.values():
        totals["connection_total"] += s.get("connection_total", 0)
        totals["connection_active"] += s.get("connections", 0)
        traffic = s.get("traffic", {})
        totals["bytes_read_total"] += traffic.get("read", 0)
        totals["bytes_write_total"] += traffic.get("written", 0)
        totals["request_total"] += s.get("request_total", 0)
        totals["request_active"] += s.get("request_active", 0)
        for code, n in s.get("response_total", {}).items():
            codes[code] = codes.get(code, 0) + n
        hist = s.get("request_time") or {}
        if hist.get("min") is not None:
            low = hist["min"] if low is None else min(low, hist["min"])
        if hist.get("max") is not None:
            high = hist["max"] if high is None else max(high, hist["max"])
    lines = [f"{key}:{value}" for key, value in totals.items()]
    lines += [f"request_{code}_total:{n}" for code, n in sorted(codes.items())]
    lines.append(f"request_time_min:{round((low or 0.0) * 1e9)}")
    lines.append(f"request_time_max:{round((high or 0.0) * 1e9)}")
    return ("\n".join(lines) + "\n").encode()


def render(stats: Mapping[str, Any]) -> bytes:
    """The Prometheus text exposition of a stats snapshot (``/api/v1/stats``' data)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(stats))
    return generate_latest(registry)
