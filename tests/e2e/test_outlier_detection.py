"""Outlier detection end to end on 127.0.0.1: a MOSN JSON config with Envoy's
``outlier_detection`` keys, mosnpy in the test's trio loop, two real HTTP/1.1 backends
(one answering 503), httpx as the client and the admin API for the counters.

The failing host stops getting traffic after three 503 in a row, comes back by itself
after ``base_ejection_time`` (0.5 s), and when it fails again stays out twice as long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from mosnpy import MosnServer
from mosnpy.config.loader import parse_config
from mosnpy.upstream.host import Host
from tests.e2e.test_http1_cli import http_config, to
from tests.support import free_port
from tests.support.switch_backend import SwitchBackend

BASE = 0.5
#: the outlier_detection section, as a user writes it
OUTLIER = {
    "consecutive_5xx": 3,
    "base_ejection_time": "500ms",
    "max_ejection_percent": 50,
    "interval": "10s",
}


@asynccontextmanager
async def proxy(a: SwitchBackend, b: SwitchBackend, admin: int) -> AsyncIterator[tuple[MosnServer, int]]:
    doc: dict[str, Any] = http_config(0, {"c": [a.address, b.address]}, [to("c")])
    doc["cluster_manager"]["clusters"][0]["outlier_detection"] = OUTLIER
    doc["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    server = MosnServer(parse_config(doc))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server, server.listener("http").port
        finally:
            server.shutdown()


async def send(port: int, n: int) -> list[tuple[str, int]]:
    """``n`` GETs in a row on one kept-alive httpx client: (x-backend, status) each."""

    def call() -> list[tuple[str, int]]:
        with httpx.Client(trust_env=False, timeout=5) as client:
            out = []
            for _ in range(n):
                r = client.get(f"http://127.0.0.1:{port}/")
                out.append((r.headers.get("x-backend", "-"), r.status_code))
            return out

    return await trio.to_thread.run_sync(call)


async def admin_stats(admin: int) -> dict[str, Any]:
    def call() -> dict[str, Any]:
        with httpx.Client(trust_env=False, timeout=5) as client:
            stats: dict[str, Any] = client.get(f"http://127.0.0.1:{admin}/api/v1/stats").json()
            return stats

    return await trio.to_thread.run_sync(call)


async def fail_until_ejected(port: int, host: Host) -> int:
    """Send until ``host`` is ejected; the number of 503 the client saw."""
    failures = 0
    for _ in range(20):
        [(_, status)] = await send(port, 1)
        failures += status == 503
        if host.ejected:
            return failures
    raise AssertionError("the failing host was never ejected")


async def test_a_failing_host_is_ejected_and_comes_back_by_itself() -> None:
    a, b = SwitchBackend("a"), SwitchBackend("b", status=503)
    admin = free_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as backends:
            await backends.start(a.serve)
            await backends.start(b.serve)
            async with proxy(a, b, admin) as (server, port):
                cluster = server.clusters.get("c")
                _, host_b = cluster.hosts

                # Round robin: b answers 503 three times in a row, then it is out.
                assert await send(port, 6) == [("a", 200), ("b", 503)] * 3
                assert host_b.ejected and not host_b.healthy
                ejected_at = trio.current_time()
                assert await send(port, 10) == [("a", 200)] * 10
                assert b.requests == 3  # no traffic while ejected
                stats = (await admin_stats(admin))["clusters"]["c"]
                assert stats["ejections_active"] == 1
                assert stats["counters"]["ejections_enforced_total"] == 1
                assert stats["counters"]["ejections_detected_consecutive_5xx"] == 1
                assert stats["hosts"][1]["ejected"] is True and stats["hosts"][1]["ejections"] == 1

                # Fixed meanwhile; back by itself once the base time is up.
                b.status = 200
                await trio.sleep_until(ejected_at + BASE + 0.1)
                assert not host_b.ejected and host_b.healthy
                back = await send(port, 4)
                assert sorted(back) == [("a", 200), ("a", 200), ("b", 200), ("b", 200)]
                assert (await admin_stats(admin))["clusters"]["c"]["ejections_active"] == 0

                # Fails again: ejected for twice the base time now.
                b.status = 503
                assert await fail_until_ejected(port, host_b) == 3
                ejected_at = trio.current_time()
                b.status = 200
                await trio.sleep_until(ejected_at + BASE + 0.2)
                assert host_b.ejected  # past the base time, still out
                assert await send(port, 4) == [("a", 200)] * 4
                await trio.sleep_until(ejected_at + 2 * BASE + 0.1)
                assert not host_b.ejected
                assert {backend for backend, _ in await send(port, 4)} == {"a", "b"}
                counters = (await admin_stats(admin))["clusters"]["c"]["counters"]
                assert counters["ejections_enforced_total"] == 2
            backends.cancel_scope.cancel()


async def test_max_ejection_percent_keeps_the_last_host_in() -> None:
    """Both hosts fail: with max_ejection_percent 50 only one of the two may go."""
    a, b = SwitchBackend("a", status=503), SwitchBackend("b", status=503)
    admin = free_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as backends:
            await backends.start(a.serve)
            await backends.start(b.serve)
            async with proxy(a, b, admin) as (server, port):
                cluster = server.clusters.get("c")
                answers = await send(port, 12)
                assert all(status == 503 for _, status in answers)
                assert sum(h.ejected for h in cluster.hosts) == 1
                counters = (await admin_stats(admin))["clusters"]["c"]["counters"]
                assert counters["ejections_enforced_total"] == 1
                assert counters["ejections_overflow"] >= 1
            backends.cancel_scope.cancel()
