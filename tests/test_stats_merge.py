"""Summing workers' stats (the supervisor's ``/api/v1/stats``), and histograms."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mosnpy.admin import metrics
from mosnpy.net.stats import LATENCY_BOUNDS, Histogram
from mosnpy.runtime.control import merge_stats


def worker(requests: int, latency: float, *, healthy: bool = True, pool: str = "p") -> dict[str, object]:
    hist = Histogram()
    for _ in range(requests):
        hist.observe(latency)
    return {
        "listeners": {
            "http": {
                "address": "127.0.0.1:80",
                "connections": 1,
                "request_total": requests,
                "response_total": {"200": requests},
                "traffic": {"read": 100 * requests, "written": 10},
                "request_time": hist.snapshot(),
            }
        },
        "clusters": {
            "c": {
                "hosts": [{"address": "h1", "weight": 3, "healthy": healthy, "ejected": not healthy}],
                "pools": [pool],
                "request_duration_time": hist.snapshot(),
            }
        },
    }


def test_counters_add_up_and_facts_stay() -> None:
    merged = merge_stats([worker(2, 0.002), worker(3, 0.2, healthy=False, pool="q")])
    http = merged["listeners"]["http"]
    assert http["address"] == "127.0.0.1:80"
    assert http["connections"] == 2
    assert http["request_total"] == 5
    assert http["response_total"] == {"200": 5}
    assert http["traffic"] == {"read": 500, "written": 20}
    hist = http["request_time"]
    assert hist["count"] == 5 and sum(hist["counts"]) == 5
    assert hist["bounds"] == list(Histogram().bounds)
    assert hist["min"] == 0.002 and hist["max"] == 0.2
    [host] = merged["clusters"]["c"]["hosts"]
    assert host == {"address": "h1", "weight": 3, "healthy": False, "ejected": True}
    assert merged["clusters"]["c"]["pools"] == ["p", "q"]


def test_one_worker_is_its_own_sum() -> None:
    one = worker(1, 0.01)
    assert merge_stats([one]) == one
    assert merge_stats([]) is None


def test_histograms_render_as_prometheus_histograms() -> None:
    stats = merge_stats([worker(2, 0.002), worker(3, 0.2)])
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(stats).decode())}
    hist = families["downstream_request_time"]
    assert hist.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in hist.samples}
    assert samples[("downstream_request_time_count", None)] == 5
    assert samples[("downstream_request_time_bucket", "0.0025")] == 2
    assert samples[("downstream_request_time_bucket", "+Inf")] == 5
    assert abs(samples[("downstream_request_time_sum", None)] - (2 * 0.002 + 3 * 0.2)) < 1e-9
    assert families["downstream_request_time_max"].samples[0].value == 0.2
    assert families["upstream_request_duration_time"].type == "histogram"
    assert families["downstream_bytes_read"].samples[0].value == 500
    glob = metrics.render_glob(stats).decode().splitlines()
    assert "request_total:5" in glob and "bytes_read_total:500" in glob
    assert "request_time_max:200000000" in glob


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.sampled_from(LATENCY_BOUNDS), max_size=30
    )
)
def test_histogram_buckets_are_bisect_left(values: list[float]) -> None:
    # counts[i]: values <= bounds[i] and above the one before; the last is +Inf.
    hist = Histogram()
    expected = [0] * (len(LATENCY_BOUNDS) + 1)
    for value in values:
        hist.observe(value)
        expected[bisect.bisect_left(LATENCY_BOUNDS, value)] += 1
    assert hist.counts == expected
    assert hist.count == len(values)
