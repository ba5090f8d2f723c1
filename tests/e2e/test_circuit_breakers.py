"""Circuit breakers end to end on 127.0.0.1, with real clients.

* HTTP/1 with ``max_connections: 1`` and ``max_pending_requests: 1`` before a stalled
  upstream: the first request holds the connection, the second waits in the pending
  queue, the third gets 503 at once; once the upstream answers, the first two are
  served on the one connection.
* Multiplexed RPC (the toy protocol, one client connection) with ``max_requests: 2``:
  the third concurrent call gets the protocol's overflow reply (toy status 4, busy)
  at once, and calls go through again when the first two are done.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

import mosnpy
from mosnpy import MosnServer
from mosnpy.config.loader import parse_config
from tests.e2e.test_http1_cli import http_config, to
from tests.support.switch_backend import SwitchBackend
from tests.support.toy import ToyClient, ToyProvider

#: the longest an overflow may take to come back ("at once")
AT_ONCE = 1.0


@asynccontextmanager
async def serving(server: MosnServer) -> AsyncIterator[MosnServer]:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            server.shutdown()
            nursery.cancel_scope.cancel()


async def get(port: int, *, timeout: float = 10) -> tuple[httpx.Response, float]:
    """One GET on a fresh httpx client in a worker thread, and how long it took."""

    def call() -> tuple[httpx.Response, float]:
        start = time.monotonic()
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            response = client.get(f"http://127.0.0.1:{port}/")
            response.read()
        return response, time.monotonic() - start

    return await trio.to_thread.run_sync(call)


async def wait_until(check: Any, what: str, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.005)


async def test_http1_second_request_waits_in_the_queue_third_gets_503_at_once() -> None:
    backend = SwitchBackend("slow")
    backend.stall()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.serve)
            doc = http_config(0, {"c": [backend.address]}, [to("c")])
            doc["cluster_manager"]["clusters"][0]["circuit_breakers"] = [
                {"max_connections": 1, "max_pending_requests": 1}
            ]
            async with serving(MosnServer(parse_config(doc))) as server:
                port = server.listener("http").port
                cluster = server.clusters.get("c")
                results: dict[str, httpx.Response] = {}

                async def request(name: str) -> None:
                    results[name], _ = await get(port)

                async with trio.open_nursery() as clients:
                    clients.start_soon(request, "first")
                    await wait_until(lambda: backend.requests == 1, "the first request upstream")
                    clients.start_soon(request, "second")
                    await wait_until(lambda: cluster.pending.waiting == 1, "the second request queued")
                    assert cluster.stats()["pending_requests"] == 1

                    third, took = await get(port)
                    assert third.status_code == 503, third.text
                    assert took < AT_ONCE
                    assert third.headers["x-mosnpy-error"] == "UpstreamOverflow"
                    assert "max_pending_requests 1" in third.text
                    assert not results  # the first two still wait for the stalled upstream
                    assert backend.requests == 1

                    backend.release()
                assert results["first"].status_code == 200
                assert results["second"].status_code == 200
                assert results["first"].headers["x-backend"] == "slow"
                assert backend.accepted == 1  # the second went on the first one's connection
                assert cluster.counters.overflows == 1
                assert cluster.pending.waiting == 0
                after, _ = await get(port)
                assert after.status_code == 200
            nursery.cancel_scope.cancel()


async def test_http1_a_queued_client_that_leaves_gives_up_its_place() -> None:
    backend = SwitchBackend("slow")
    backend.stall()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.serve)
            doc = http_config(0, {"c": [backend.address]}, [to("c")])
            doc["cluster_manager"]["clusters"][0]["circuit_breakers"] = [
                {"max_connections": 1, "max_pending_requests": 1}
            ]
            async with serving(MosnServer(parse_config(doc))) as server:
                port = server.listener("http").port
                cluster = server.clusters.get("c")
                results: list[int] = []

                async def request() -> None:
                    response, _ = await get(port)
                    results.append(response.status_code)

                async with trio.open_nursery() as clients:
                    clients.start_soon(request)
                    await wait_until(lambda: backend.requests == 1, "the first request upstream")
                    try:
                        await get(port, timeout=0.3)  # queued, then the client gives up
                    except httpx.TimeoutException:
                        pass
                    else:
                        raise AssertionError("the queued request was answered")
                    await wait_until(lambda: cluster.pending.waiting == 0, "the place freed")
                    clients.start_soon(request)  # takes the place
                    await wait_until(lambda: cluster.pending.waiting == 1, "queued again")
                    backend.release()
                assert results == [200, 200]
                assert cluster.counters.overflows == 0
            nursery.cancel_scope.cancel()


ECHO = {"service": "echo.Service", "method": "echo"}
SLOW = {"service": "echo.Service", "method": "slow", "delay_ms": "1500"}


async def test_rpc_third_concurrent_call_gets_the_overflow_reply_at_once() -> None:
    provider = ToyProvider()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(provider.serve)
            builder = (
                mosnpy.ProxyBuilder(graceful_timeout=1)
                .cluster("provider", [f"127.0.0.1:{provider.port}"], connect_timeout=1, max_requests=2)
                .route(headers={"service": "echo.Service"}, cluster="provider", timeout=10)
                .listener("toy", "127.0.0.1:0", protocol="toy")
            )
            async with serving(builder.server()) as server:
                client = await ToyClient.connect(server.listener("toy").port)
                async with trio.open_nursery() as calls:
                    calls.start_soon(client.reader)
                    slow: list[Any] = []

                    async def slow_call(i: int) -> None:
                        slow.append(await client.call(SLOW, f"slow-{i}".encode()))

                    calls.start_soon(slow_call, 1)
                    calls.start_soon(slow_call, 2)
                    await wait_until(lambda: provider.in_flight == 2, "two calls at the provider")

                    start = trio.current_time()
                    third = await client.call(ECHO, b"third")
                    assert trio.current_time() - start < AT_ONCE
                    assert third.status == 4  # the toy protocol's "busy": its overflow reply
                    assert "max_requests 2" in third.headers["error"]
                    assert not slow and provider.requests == 2

                    await wait_until(lambda: len(slow) == 2, "the slow calls", timeout=10)
                    assert sorted((r.status, r.body) for r in slow) == [(0, b"slow-1"), (0, b"slow-2")]
                    again = await client.call(ECHO, b"again")
                    assert (again.status, again.body) == (0, b"again")
                    assert server.clusters.get("provider").counters.overflows == 1
                    await client.stream.aclose()
            provider.kill()
            nursery.cancel_scope.cancel()


async def test_http1_a_queued_request_waits_no_longer_than_its_own_timeout() -> None:
    """A request queued behind a slow one of another route (one connection) gets 504
    when its own route timeout is up, not after the slow one's answer."""
    backend = SwitchBackend("slow")
    backend.stall()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.serve)
            routes = [to("c", "/fast", timeout="500ms"), to("c", "/", timeout="20s")]
            doc = http_config(0, {"c": [backend.address]}, routes)
            doc["cluster_manager"]["clusters"][0]["circuit_breakers"] = [{"max_connections": 1}]
            async with serving(MosnServer(parse_config(doc))) as server:
                port = server.listener("http").port
                cluster = server.clusters.get("c")
                results: dict[str, tuple[httpx.Response, float]] = {}

                async def request(name: str, path: str) -> None:
                    def call() -> tuple[httpx.Response, float]:
                        start = time.monotonic()
                        with httpx.Client(trust_env=False, timeout=25) as client:
                            response = client.get(f"http://127.0.0.1:{port}{path}")
                        return response, time.monotonic() - start

                    results[name] = await trio.to_thread.run_sync(call)

                async with trio.open_nursery() as clients:
                    clients.start_soon(request, "slow", "/")
                    await wait_until(lambda: backend.requests == 1, "the slow request upstream")
                    clients.start_soon(request, "fast", "/fast")
                    await wait_until(lambda: cluster.pending.waiting == 1, "the fast one queued")
                    await wait_until(lambda: "fast" in results, "the fast one answered", timeout=5)
                    fast, took = results["fast"]
                    assert fast.status_code == 504, fast.text
                    assert 0.4 < took < 3.0, took
                    assert "no upstream connection free" in fast.text
                    assert cluster.pending.waiting == 0
                    backend.release()
                slow, _ = results["slow"]
                assert slow.status_code == 200
                assert backend.requests == 1  # the timed-out one never went upstream
            nursery.cancel_scope.cancel()
