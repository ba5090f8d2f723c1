"""Outlier detection on a MockClock: consecutive failures eject a host for a time that
grows with repeated ejections, bounded by max_ejection_percent; ejected hosts come back
by themselves; the load balancers skip them; the config loads from MOSN-style JSON."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from mosnpy.config import ConfigError
from mosnpy.config.loader import parse_config
from mosnpy.config.models import ClusterConfig, HealthCheckConfig, HostConfig, OutlierDetectionConfig
from mosnpy.protocol.api import ResetReason
from mosnpy.upstream.cluster import Cluster, ClusterManager, UpstreamStats
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import RoundRobin
from mosnpy.upstream.outlier import OutlierDetector

BASE = 10.0


def detector(n: int = 2, **config: Any) -> tuple[OutlierDetector, list[Host], UpstreamStats]:
    config.setdefault("consecutive_5xx", 3)
    config.setdefault("base_ejection_time", BASE)
    config.setdefault("interval", 1.0)
    config.setdefault("max_ejection_percent", 50)
    hosts = [Host(f"10.0.0.{i + 1}:80") for i in range(n)]
    counters = UpstreamStats()
    od = OutlierDetector("c", hosts, OutlierDetectionConfig(**config), lambda: counters, rng=random.Random(7))
    return od, hosts, counters


@asynccontextmanager
async def running(od: OutlierDetector) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        od.start(nursery)
        await trio.testing.wait_all_tasks_blocked()
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


def fail(od: OutlierDetector, host: Host, n: int, status: int = 500) -> None:
    for _ in range(n):
        od.put_status(host, status)


async def sleep_until(t: float) -> None:
    await trio.sleep_until(t)
    await trio.testing.wait_all_tasks_blocked()


def picks(hosts: Sequence[Host], n: int = 6) -> set[str]:
    lb = RoundRobin(hosts)
    chosen = [lb.choose() for _ in range(n)]
    return {h.address for h in chosen if h is not None}


# --------------------------------------------------------------------------- ejection


async def test_consecutive_5xx_eject_and_the_balancer_skips_the_host() -> None:
    od, (a, b), counters = detector()
    fail(od, a, 2)
    assert not a.ejected and a.healthy
    od.put_status(a, 503)
    assert a.ejected and not a.healthy and od.ejected == 1
    assert picks([a, b]) == {b.address}
    assert counters.ejections_enforced_total == 1
    assert counters.ejections_detected_consecutive_5xx == 1
    assert counters.ejections_enforced_consecutive_5xx == 1
    assert "ejected" in repr(a)


async def test_a_success_resets_the_consecutive_count() -> None:
    od, (a, _), counters = detector()
    fail(od, a, 2)
    od.put_status(a, 200)
    fail(od, a, 2)
    od.put_status(a, 404)  # a 4xx is the client's problem, not the host's
    fail(od, a, 2)
    assert not a.ejected and counters.ejections_enforced_total == 0
    od.put_status(a, 500)
    assert a.ejected


async def test_the_host_comes_back_after_the_base_time_and_longer_each_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    od, (a, b), _ = detector()
    async with running(od):
        t0 = trio.current_time()
        fail(od, a, 3)
        assert a.ejected
        await sleep_until(t0 + BASE - 0.01)
        assert a.ejected
        await sleep_until(t0 + BASE + 0.01)
        assert not a.ejected and a.healthy
        assert picks([a, b]) == {a.address, b.address}
        assert od.host_stats(a) == {"ejections": 1, "ejection_multiplier": 1}

        # Fails again at once: twice the base time now.
        t1 = trio.current_time()
        fail(od, a, 3)
        assert a.ejected and od.host_stats(a)["ejection_multiplier"] == 2
        await sleep_until(t1 + 2 * BASE - 0.01)
        assert a.ejected
        await sleep_until(t1 + 2 * BASE + 0.01)
        assert not a.ejected
        assert od.host_stats(a) == {"ejections": 2, "ejection_multiplier": 2}


async def test_the_multiplier_decays_while_the_host_stays_in_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    od, (a, _), _ = detector(interval=1.0)
    async with running(od):
        for _ in range(3):  # ejected three times in a row: multiplier 3
            fail(od, a, 3)
            while a.ejected:
                await trio.sleep(0.5)
        assert od.host_stats(a)["ejection_multiplier"] == 3
        await trio.sleep(5)  # one interval per step down
        assert od.host_stats(a)["ejection_multiplier"] == 0
        t = trio.current_time()
        fail(od, a, 3)  # back to the base time
        await sleep_until(t + BASE + 0.01)
        assert not a.ejected


async def test_max_ejection_time_caps_the_growth(autojump_clock: trio.testing.MockClock) -> None:
    od, (a, _), _ = detector(max_ejection_time=15.0)
    async with running(od):
        for _ in range(4):
            t = trio.current_time()
            fail(od, a, 3)
            while a.ejected:
                await trio.sleep(0.25)
            assert trio.current_time() - t <= 15.0 + 0.25
        assert trio.current_time() - t >= 15.0


async def test_max_ejection_percent_is_respected() -> None:
    od, (a, b, c, d), counters = detector(4, max_ejection_percent=25)
    fail(od, a, 3)
    fail(od, b, 3)
    assert a.ejected and not b.ejected
    assert counters.ejections_enforced_total == 1
    assert counters.ejections_overflow == 1
    assert counters.ejections_detected_consecutive_5xx == 2
    assert picks([a, b, c, d], 9) == {b.address, c.address, d.address}


async def test_the_default_percent_ejects_nothing_in_a_small_cluster_unless_one_may_go() -> None:
    od, (a, _), counters = detector(max_ejection_percent=10)
    fail(od, a, 3)
    assert not a.ejected and counters.ejections_overflow == 1
    od, (a, b), _ = detector(max_ejection_percent=10, always_eject_one_host=True)
    fail(od, a, 3)
    fail(od, b, 3)
    assert a.ejected and not b.ejected


async def test_gateway_failures_are_detected_and_enforced_only_when_asked() -> None:
    od, (a, _), counters = detector(consecutive_5xx=0, consecutive_gateway_failure=2)
    fail(od, a, 4, 502)
    assert not a.ejected  # Envoy's default: enforcing_consecutive_gateway_failure 0
    assert counters.ejections_detected_consecutive_gateway_failure == 2
    assert counters.ejections_enforced_consecutive_gateway_failure == 0

    od, (a, _), counters = detector(
        consecutive_5xx=0, consecutive_gateway_failure=2, enforcing_consecutive_gateway_failure=100
    )
    od.put_status(a, 502)
    od.put_status(a, 500)  # not a gateway error: the run starts again
    od.put_status(a, 504)
    assert not a.ejected
    od.put_status(a, 503)
    assert a.ejected
    assert counters.ejections_enforced_consecutive_gateway_failure == 1


async def test_local_failures_count_as_5xx_without_the_split() -> None:
    od, (a, _), counters = detector(consecutive_5xx=3)
    od.put_failure(a, ResetReason.CONNECTION_FAILED)
    od.put_failure(a, ResetReason.GLOBAL_TIMEOUT)
    od.put_failure(a, ResetReason.OVERFLOW)  # refused locally: not the host's doing
    assert not a.ejected
    od.put_failure(a, ResetReason.UPSTREAM_RESET)
    assert a.ejected
    assert counters.ejections_enforced_consecutive_5xx == 1


async def test_local_failures_have_their_own_count_with_the_split() -> None:
    od, (a, _), counters = detector(
        consecutive_5xx=3, split_external_local_origin_errors=True, consecutive_local_origin_failure=2
    )
    od.put_failure(a, ResetReason.CONNECTION_FAILED)
    fail(od, a, 2)  # 5xx: a count of their own, and the connection worked
    od.put_failure(a, ResetReason.CONNECTION_FAILED)
    assert not a.ejected
    od.put_failure(a, ResetReason.PER_TRY_TIMEOUT)
    assert a.ejected
    assert counters.ejections_enforced_consecutive_local_origin_failure == 1
    assert counters.ejections_detected_consecutive_5xx == 0


async def test_enforcing_is_a_probability() -> None:
    od, hosts, counters = detector(
        200, consecutive_5xx=1, enforcing_consecutive_5xx=50, max_ejection_percent=100
    )
    for h in hosts:
        od.put_status(h, 500)
    assert counters.ejections_detected_consecutive_5xx == 200
    assert 60 < counters.ejections_enforced_total < 140


async def test_a_passed_health_check_returns_an_ejected_host() -> None:
    od, (a, _), _ = detector()
    fail(od, a, 3)
    assert a.ejected
    od.on_health_check(a, False)
    assert a.ejected
    od.on_health_check(a, True)
    assert not a.ejected and a.healthy and od.ejected == 0

    od, (a, _), _ = detector(successful_active_health_check_uneject_host=False)
    fail(od, a, 3)
    od.on_health_check(a, True)
    assert a.ejected


async def test_ejection_and_health_check_flags_combine() -> None:
    od, (a, _), _ = detector()
    a.set_check_failed(True)
    fail(od, a, 3)
    assert a.ejected and not a.healthy
    od.on_health_check(a, True)  # still failing active checks: stays out
    assert a.ejected
    a.set_check_failed(False)
    assert not a.healthy  # still ejected
    od.sweep(trio.current_time() + BASE + 1)
    assert a.healthy


# --------------------------------------------------------------------------- cluster and config


def cluster_config(**outlier: Any) -> ClusterConfig:
    return ClusterConfig(
        name="c",
        hosts=[HostConfig(address="127.0.0.1:1"), HostConfig(address="127.0.0.1:2")],
        outlier_detection=OutlierDetectionConfig(**outlier),
        health_check=HealthCheckConfig(interval=3600),
    )


async def test_the_cluster_runs_its_detector_and_reports_ejections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = Cluster(cluster_config(consecutive_5xx=1, base_ejection_time=2.0, max_ejection_percent=50))
    assert cluster.outlier is not None and cluster.health is not None
    assert cluster.health.on_check == cluster.outlier.on_health_check
    a, b = cluster.hosts
    async with trio.open_nursery() as nursery:
        ClusterManager([cluster]).start(nursery)
        await trio.testing.wait_all_tasks_blocked()
        cluster.outlier.put_status(a, 500)
        assert all(cluster.choose_host() is b for _ in range(4))
        stats = cluster.stats()
        assert stats["ejections_active"] == 1
        assert stats["counters"]["ejections_enforced_total"] == 1
        assert stats["hosts"][0]["ejected"] is True and stats["hosts"][0]["healthy"] is False
        assert stats["hosts"][0]["ejections"] == 1
        await trio.sleep(2.01)
        assert {cluster.choose_host().address for _ in range(4)} == {a.address, b.address}
        assert cluster.stats()["ejections_active"] == 0
        nursery.cancel_scope.cancel()


async def test_ejections_go_to_the_counters_the_cluster_has_now() -> None:
    """A reload hands the new cluster its predecessor's counters."""
    cluster = Cluster(cluster_config(consecutive_5xx=1, max_ejection_percent=50))
    assert cluster.outlier is not None
    carried = UpstreamStats(requests=7)
    cluster.counters = carried
    cluster.outlier.put_status(cluster.hosts[0], 500)
    assert carried.ejections_enforced_total == 1


def test_a_cluster_without_outlier_detection_has_none() -> None:
    cluster = Cluster(ClusterConfig(name="c", hosts=[HostConfig(address="127.0.0.1:1")]))
    assert cluster.outlier is None
    assert cluster.stats()["ejections_active"] == 0


def _doc(outlier: Any) -> dict[str, Any]:
    return {
        "cluster_manager": {
            "clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}], "outlier_detection": outlier}]
        }
    }


def test_outlier_detection_loads_with_envoy_names_and_go_durations() -> None:
    config = parse_config(
        _doc(
            {
                "consecutive_5xx": 3,
                "consecutive_gateway_failure": 2,
                "enforcing_consecutive_gateway_failure": 100,
                "interval": "1s",
                "base_ejection_time": "500ms",
                "max_ejection_time": "1m",
                "max_ejection_time_jitter": 0.1,
                "max_ejection_percent": 50,
                "always_eject_one_host": True,
                "split_external_local_origin_errors": True,
                "consecutive_local_origin_failure": 4,
            }
        )
    )
    od = config.cluster_manager.clusters[0].outlier_detection
    assert od is not None
    assert (od.consecutive_5xx, od.interval, od.base_ejection_time, od.max_ejection_time) == (
        3,
        1.0,
        0.5,
        60.0,
    )
    assert od.ejection_time_cap == 60.0
    assert (od.max_ejection_time_jitter, od.max_ejection_percent, od.consecutive_local_origin_failure) == (
        0.1,
        50,
        4,
    )
    defaults = parse_config(_doc({})).cluster_manager.clusters[0].outlier_detection
    assert defaults == OutlierDetectionConfig()
    assert (defaults.consecutive_5xx, defaults.base_ejection_time, defaults.max_ejection_percent) == (
        5,
        30.0,
        10,
    )
    assert defaults.ejection_time_cap == 300.0
    assert OutlierDetectionConfig(base_ejection_time=400).ejection_time_cap == 400


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"max_ejection_percent": 101}, "'max_ejection_percent' must be <= 100: 101"),
        ({"consecutive_5xx": -1}, "'consecutive_5xx' must be >= 0: -1"),
        ({"interval": "0s"}, "'interval' must be > 0: 0.0"),
        ({"base_ejection_time": "5s", "max_ejection_time": "1s"}, "must not be less than base_ejection_time"),
        ({"interval": "soon"}, "interval"),
        ({"success_rate_stdev_factor": 1900}, "unknown key 'success_rate_stdev_factor'"),
    ],
)
def test_bad_outlier_detection_is_refused_with_its_path(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(given))
    text = str(info.value)
    assert "cluster_manager.clusters[0].outlier_detection" in text
    assert problem in text, text
