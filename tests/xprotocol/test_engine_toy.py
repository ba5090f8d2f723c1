"""The xprotocol engine end to end with the toy plugin: real sockets, real tasks.

A toy consumer multiplexes calls over one connection to mosnpy, which routes on the
frame's header view and forwards to a toy provider through its multiplexing pool.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

import mosnpy
from tests.support import free_port, start_py_backend
from tests.support.toy import ToyClient, ToyProvider


@asynccontextmanager
async def toy_proxy(
    provider_port: int, *, timeout: float = 5.0, protocol: str = "toy", extra_cluster: str | None = None
) -> AsyncIterator[tuple[mosnpy.MosnServer, int]]:
    builder = (
        mosnpy.ProxyBuilder(graceful_timeout=1)
        .cluster("provider", [f"127.0.0.1:{provider_port}"], connect_timeout=1)
        .route(headers={"service": "echo.Service"}, cluster="provider", timeout=timeout)
        .listener("toy", "127.0.0.1:0", protocol=protocol)
    )
    if extra_cluster:
        builder.cluster("web", [extra_cluster]).route(prefix="/", cluster="web")
    server = builder.server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server, server.listener("toy").port
        server.shutdown()


@asynccontextmanager
async def client(port: int) -> AsyncIterator[ToyClient]:
    c = await ToyClient.connect(port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.reader)
        yield c
        await c.stream.aclose()


ECHO = {"service": "echo.Service", "method": "echo"}


async def test_one_call_and_many_multiplexed_calls_each_get_their_own_answer() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port) as (_, port), client(port) as c:
            first = await c.call(ECHO, b"hello")
            assert (first.status, first.body) == (0, b"hello")
            assert first.headers["served-by"] == "provider"
            results: dict[int, bytes] = {}
            limiter = trio.CapacityLimiter(20)

            async def one(i: int) -> None:
                async with limiter:
                    resp = await c.call(
                        {**ECHO, "method": "slow", "delay_ms": str(i % 7)}, f"call-{i}".encode()
                    )
                    results[i] = resp.body

            with trio.fail_after(20):
                async with trio.open_nursery() as calls:
                    for i in range(200):
                        calls.start_soon(one, i)
            assert results == {i: f"call-{i}".encode() for i in range(200)}
            # the provider saw mosnpy's own ids (1, 2, ...), not the client's (1000+)
            assert min(provider.seen_ids) < 1000
        provider.kill()


async def test_big_payload_and_provider_error_pass_through() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port) as (_, port), client(port) as c:
            big = bytes(range(256)) * 4096
            assert (await c.call(ECHO, big)).body == big
            failed = await c.call({**ECHO, "method": "fail"})
            assert (failed.status, failed.headers) == (1, {"error": "provider failed"})
        provider.kill()


async def test_heartbeat_answered_by_mosnpy_itself() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port) as (_, port), client(port) as c:
            answer = await c.call({}, kind=3)
            assert answer.kind == 4
            assert provider.heartbeats == 0
        provider.kill()


async def test_framework_errors_are_protocol_replies() -> None:
    dead = free_port()
    async with toy_proxy(dead) as (_, port), client(port) as c:
        no_route = await c.call({"service": "other.Service"})
        assert no_route.kind == 2 and no_route.status == 6
        assert "no route" in no_route.headers["error"]
        started = time.monotonic()
        down = await c.call(ECHO)
        assert down.status == 6 and "connect" in down.headers["error"]
        assert time.monotonic() - started < 3


async def test_timeouts_route_and_frame() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port, timeout=0.3) as (server, port), client(port) as c:
            started = time.monotonic()
            resp = await c.call({**ECHO, "method": "silent"})
            assert resp.status == 7
            assert 0.25 < time.monotonic() - started < 2
            # the timed-out call left nothing behind in the pool
            await trio.sleep(0.05)
            pools = list(server.clusters.get("provider")._pools.values())
            assert pools and all(not mc.listeners for p in pools for mc in p.connections)
        # the frame's own timeout wins over the route's (10 s here)
        async with toy_proxy(provider.port, timeout=10) as (server, port), client(port) as c:
            started = time.monotonic()
            resp = await c.call({**ECHO, "method": "silent"}, timeout_ms=100)
            assert resp.status == 7
            assert time.monotonic() - started < 3
        provider.kill()


async def test_oneway_is_forwarded_without_answer() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port) as (_, port), client(port) as c:
            await c.send(mosnpy_toy_frame(1, 77, ECHO, b"fire and forget"))
            with trio.fail_after(5):
                while not provider.oneways:
                    await trio.sleep(0.01)
            assert provider.oneways[0].body == b"fire and forget"
        provider.kill()


def mosnpy_toy_frame(kind: int, rid: int, headers: dict[str, str], body: bytes) -> object:
    from mosnpy_toy.codec import ToyFrame

    return ToyFrame(kind, rid, dict(headers), body)


async def test_provider_killed_mid_calls_then_back() -> None:
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        provider_port = provider.port
        async with toy_proxy(provider_port, timeout=10) as (_, port), client(port) as c:
            assert (await c.call(ECHO, b"up")).status == 0
            statuses: list[int] = []

            async def slow_call() -> None:
                resp = await c.call({**ECHO, "method": "slow", "delay_ms": "5000"})
                statuses.append(resp.status)

            started = time.monotonic()
            async with trio.open_nursery() as calls:
                for _ in range(10):
                    calls.start_soon(slow_call)
                await trio.sleep(0.2)
                provider.kill()
            assert statuses == [6] * 10  # every caller got an error reply (502 → 6)
            assert time.monotonic() - started < 3
            # the provider comes back on the same port: calls work again, no restart
            back = ToyProvider()
            await nursery.start(functools.partial(back.serve, port=provider_port))
            with trio.fail_after(5):
                resp = await c.call(ECHO, b"back")
            assert (resp.status, resp.body) == (0, b"back")
            back.kill()


async def test_auto_listener_serves_http1_and_toy_on_one_port() -> None:
    provider = ToyProvider()
    with start_py_backend("web") as web:
        async with trio.open_nursery() as nursery:
            await nursery.start(provider.serve)
            async with toy_proxy(provider.port, protocol="Auto", extra_cluster=f"127.0.0.1:{web.port}") as (
                _,
                port,
            ):
                async with client(port) as c:
                    assert (await c.call(ECHO, b"rpc")).body == b"rpc"

                def http_get() -> str:
                    return httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text

                assert await trio.to_thread.run_sync(http_get) == "backend web\n"
            provider.kill()


async def test_requests_in_flight_per_connection_are_capped() -> None:
    """Past the cap the proxy stops reading the client: no unbounded tasks, no loss."""
    provider = ToyProvider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        async with toy_proxy(provider.port) as (server, port):
            for factory in server.listener("toy").filter_factories:
                factory.ctx.max_requests_in_flight = 5  # type: ignore[attr-defined]
            async with client(port) as c:
                bodies: list[bytes] = []

                async def one(i: int) -> None:
                    resp = await c.call({**ECHO, "method": "slow", "delay_ms": "50"}, f"{i}".encode())
                    bodies.append(resp.body)

                with trio.fail_after(10):
                    async with trio.open_nursery() as calls:
                        for i in range(40):
                            calls.start_soon(one, i)
                assert sorted(bodies) == sorted(f"{i}".encode() for i in range(40))
                assert provider.max_in_flight <= 5
                assert provider.max_in_flight >= 2  # still multiplexed, just bounded
        provider.kill()
