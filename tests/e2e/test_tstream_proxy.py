"""A third party's whole protocol family, proxied end to end with no change to the core.

``tstream`` lives in the ``mosnpy_toy`` distribution (examples/custom_protocol) and
arrives through the ``mosnpy.protocols`` entry point; a real tstream client talks to
mosnpy on 127.0.0.1, which forwards to a real tstream backend: streamed bodies and
trailers both ways, many streams on one connection, and the proxy's own answers in
tstream's language.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import entry_points

import trio
from mosnpy_toy.tstream import TStreamHeaders

import mosnpy
from mosnpy.protocol.api import ResetReason
from mosnpy.protocol.registry import PROTOCOLS, lookup
from tests.support import free_port
from tests.support.tstream import TStreamBackend, TStreamClient

MiB = 1 << 20


@asynccontextmanager
async def tstream_proxy(
    backend_port: int, *, timeout: float = 5.0, protocol: str = "tstream"
) -> AsyncIterator[tuple[mosnpy.MosnServer, int]]:
    """mosnpy with a ``protocol`` listener: ``/echo``, ``/slow`` (timeout 0.3 s) and
    ``/retry`` (2 retries on 503) to the backend, ``/dead`` to a port nobody listens on,
    nothing else routed."""
    server = (
        mosnpy.ProxyBuilder(graceful_timeout=1)
        .cluster("backend", [f"127.0.0.1:{backend_port}"], connect_timeout=1)
        .cluster("dead", [f"127.0.0.1:{free_port()}"], connect_timeout=1)
        .route(prefix="/echo", cluster="backend", timeout=timeout)
        .route(prefix="/slow", cluster="backend", timeout=0.3)
        .route(prefix="/dead", cluster="dead", timeout=timeout)
        .route(prefix="/retry", cluster="backend", timeout=timeout, retries=2, retry_on_status=[503])
        .listener("ts", "127.0.0.1:0", protocol=protocol)
        .server()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server, server.listener("ts").port
        server.shutdown()


@asynccontextmanager
async def backend_and_client(
    protocol: str = "tstream",
) -> AsyncIterator[tuple[TStreamBackend, mosnpy.MosnServer, TStreamClient]]:
    backend = TStreamBackend()
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.serve)
        async with tstream_proxy(backend.port, protocol=protocol) as (server, port):
            client = await TStreamClient.connect(port)
            async with trio.open_nursery() as readers:
                readers.start_soon(client.reader)
                yield backend, server, client
                await client.aclose()
        backend.kill()


def test_tstream_is_found_through_the_entry_point_of_the_mosnpy_toy_distribution() -> None:
    (ep,) = [ep for ep in entry_points(group="mosnpy.protocols") if ep.name == "tstream"]
    assert ep.value == "mosnpy_toy.tstream:DESCRIPTOR"
    assert ep.dist is not None and ep.dist.name.replace("_", "-") == "mosnpy-toy"
    assert "tstream" in PROTOCOLS.names()
    descriptor = PROTOCOLS.get("tstream")
    assert descriptor is ep.load() and lookup("tstream") is descriptor
    assert descriptor.server_stream_connection is not None
    assert descriptor.server_stream_connection.__module__ == "mosnpy_toy.tstream"


async def test_streamed_1mib_body_and_trailers_both_ways() -> None:
    with trio.fail_after(20):
        async with backend_and_client() as (backend, _, client):
            # a bodiless request first: head in, streamed answer (no body) with trailers out
            small = await client.request("/echo/get", method="GET", headers={"x-custom": "v"})
            assert small.reset is None and small.status == 200
            assert (small.headers["x-method"], small.headers["x-path"], small.headers["x-authority"]) == (
                "GET",
                "/echo/get",
                "svc",
            )
            assert small.headers["x-request-x-custom"] == "v"
            assert small.data == b"" and small.trailers is not None
            assert small.trailers.get("x-echo-bytes") == "0"

            body = bytes(range(256)) * (MiB // 256)
            pieces = [body[i : i + 64 * 1024] for i in range(0, MiB, 64 * 1024)]
            digest = hashlib.sha256(body).hexdigest()
            resp = await client.request(
                "/echo/big?q=1",
                headers={"x-pieces": "8"},
                body=pieces,
                trailers={"x-sha256": digest, "x-note": "last"},
            )
            assert resp.reset is None, resp.reset
            assert resp.status == 200
            assert resp.headers["x-path"] == "/echo/big?q=1" and resp.headers["x-method"] == "POST"
            assert len(resp.data) == MiB and resp.data == body
            assert len(resp.body) >= 2  # the answer streamed in several DATA frames
            assert resp.trailers is not None
            assert resp.trailers.get("x-echo-bytes") == str(MiB)
            assert int(resp.trailers["x-echo-count"]) >= 2  # the request streamed too
            # request trailers reached the backend, response trailers reached the client
            assert resp.trailers.get("x-trailer-x-sha256") == digest
            assert resp.trailers.get("x-trailer-x-note") == "last"
            (big,) = [r for r in backend.requests if r.path == "/echo/big?q=1"]
            assert big.trailers is not None and big.trailers.get("x-sha256") == digest
            assert big.headers.get("x-pieces") == "8" and b"".join(big.body) == body


async def test_fifty_concurrent_streams_on_one_connection_each_get_their_own_answer() -> None:
    with trio.fail_after(20):
        async with backend_and_client() as (backend, _, client):
            results: dict[int, tuple[int, bytes, str | None, str | None]] = {}

            async def one(i: int) -> None:
                payload = f"stream-{i}-".encode() * (i + 1)
                resp = await client.request(
                    f"/echo/{i}",
                    headers={"slow": str(i % 5 * 20), "x-pieces": str(i % 3 + 1)},
                    body=[payload[: len(payload) // 2], payload[len(payload) // 2 :]],
                    trailers={"x-i": str(i)} if i % 2 else None,
                )
                trailers = resp.trailers
                results[i] = (
                    resp.status,
                    resp.data,
                    resp.headers.get("x-path"),
                    trailers.get("x-trailer-x-i") if trailers is not None else None,
                )

            async with trio.open_nursery() as calls:
                for i in range(50):
                    calls.start_soon(one, i)
            assert results == {
                i: (200, f"stream-{i}-".encode() * (i + 1), f"/echo/{i}", str(i) if i % 2 else None)
                for i in range(50)
            }
            # upstream they were multiplexed too: one connection, stream ids of mosnpy's own
            assert backend.connections == 1
            assert sorted(r.stream_id for r in backend.requests) == list(range(1, 51))


async def test_no_route_is_a_tstream_local_reply_404() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (backend, _, client):
            resp = await client.request("/nowhere", body=[b"ignored"], trailers={"x": "y"})
            assert resp.reset is None and resp.status == 404
            assert resp.headers.get("x-mosnpy-error") == "NoRoute"
            assert resp.headers.get("content-type", "").startswith("text/plain")
            assert b"no route" in resp.data
            assert resp.trailers is None and not backend.requests
            # the connection still serves
            assert (await client.request("/echo/after", body=[b"ok"])).data == b"ok"


async def test_backend_down_is_502() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (_, _, client):
            started = time.monotonic()
            resp = await client.request("/dead/x", body=[b"a", b"b"])
            assert resp.reset is None and resp.status == 502
            assert resp.data  # a reason
            assert time.monotonic() - started < 3


async def test_route_timeout_is_504_and_the_upstream_stream_is_reset() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (backend, server, client):
            started = time.monotonic()
            resp = await client.request("/slow/x", headers={"slow": "3000"}, body=[b"zzz"])
            assert resp.reset is None and resp.status == 504
            assert 0.25 < time.monotonic() - started < 2.5
            # mosnpy gave the upstream stream up with a RESET and left nothing in the pool
            while not backend.resets:
                await trio.sleep(0.01)
            assert [r.path for r in backend.resets] == ["/slow/x"]
            cluster = server.clusters.get("backend")
            (host,) = cluster.hosts
            pool = cluster.pool(host, PROTOCOLS.get("tstream"))
            assert pool.connections and all(not mc.listeners for mc in pool.connections)
            assert host.active_requests == 0 and cluster.active_requests == 0
            assert (await client.request("/echo/after", body=[b"ok"])).data == b"ok"


async def test_client_reset_reaches_the_backend() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (backend, _, client):
            sc = client.sc
            sid = sc.new_stream()
            sc.send_headers(
                sid,
                TStreamHeaders([("slow", "3000")], method="POST", target="/echo/r", authority="svc"),
                end_stream=False,
            )
            sc.send_data(sid, b"part", False)
            await client.wire.flush()
            while not backend.requests:
                await trio.sleep(0.01)
            sc.reset(sid, ResetReason.LOCAL_RESET)
            await client.wire.flush()
            while not backend.resets:
                await trio.sleep(0.01)
            assert backend.resets[0].path == "/echo/r"


async def test_retry_on_503_replays_the_streamed_body_and_trailers() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (backend, _, client):
            body = [b"a" * 1000, b"b" * 1000, b"c" * 1000]
            resp = await client.request(
                "/retry/x", headers={"x-fail-first": "1"}, body=body, trailers={"x-t": "1"}
            )
            assert resp.reset is None and resp.status == 200
            assert resp.headers.get("x-seen") == "2"
            assert resp.data == b"".join(body)
            assert resp.trailers is not None and resp.trailers.get("x-trailer-x-t") == "1"
            attempts = [r for r in backend.requests if r.path == "/retry/x"]
            assert len(attempts) == 2
            for attempt in attempts:
                assert b"".join(attempt.body) == b"".join(body)
                assert attempt.trailers is not None and attempt.trailers.get("x-t") == "1"


async def test_upstream_resets_before_and_during_the_response() -> None:
    with trio.fail_after(10):
        async with backend_and_client() as (_, _, client):
            before = await client.request("/echo/b", headers={"x-reset": "before"}, body=[b"x"])
            assert before.reset is None and before.status == 502
            assert before.headers.get("x-mosnpy-error") is not None
            # the response already started: all mosnpy can do is reset the stream downstream
            mid = await client.request(
                "/echo/m", headers={"x-reset": "mid", "x-pieces": "4"}, body=[b"0123456789ab"]
            )
            assert mid.status == 200 and mid.data == b"012"
            assert mid.reset is not None and mid.trailers is None
            # the connection still serves
            assert (await client.request("/echo/after", body=[b"ok"])).data == b"ok"


async def test_auto_detection_finds_tstream_by_its_matcher() -> None:
    with trio.fail_after(10):
        async with backend_and_client("Auto") as (_, _, client):
            resp = await client.request("/echo/auto", body=[b"sniffed"], trailers={"x": "1"})
            assert (resp.status, resp.data) == (200, b"sniffed")
            assert resp.trailers is not None and resp.trailers.get("x-trailer-x") == "1"
