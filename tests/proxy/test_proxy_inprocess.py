"""In-process proxies built with ProxyBuilder, real backends and real clients.

The proxy runs in the test's own trio loop; clients are httpx (sync, in a worker thread
via ``trio.to_thread``) or raw trio sockets.  Backends are the subprocess Python backend
(:func:`tests.support.start_py_backend`) or, where a test needs to misbehave on purpose,
a tiny trio server in the same loop.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager
from functools import partial
from typing import Any

import attrs
import httpx
import pytest
import trio

import mosnpy
from mosnpy import ConfigError, MosnConfig, MosnServer, ProxyBuilder
from mosnpy.config.models import RetryPolicyConfig
from mosnpy.protocol.http1 import HTTP1
from mosnpy.proxy.phases import MAX_JUMPS
from mosnpy.stream import FilterPhase, Stream, StreamFilterChain, StreamFilterStatus
from mosnpy.upstream.multiplex import MultiplexPool
from tests.support import PyBackend, start_py_backend

LOCALHOST = "127.0.0.1"
LISTENER = "http"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[PyBackend, PyBackend]]:
    """Two Python backends, ``a`` and ``b``, shared by this module's tests."""
    with ExitStack() as stack:
        a = stack.enter_context(start_py_backend("a"))
        b = stack.enter_context(start_py_backend("b"))
        yield a, b


@pytest.fixture
def backend(backends: tuple[PyBackend, PyBackend]) -> PyBackend:
    return backends[0]


# --------------------------------------------------------------------------- helpers


def builder_for(
    hosts: Sequence[str],
    *,
    stream_filters: Sequence[tuple[str, Mapping[str, Any]]] = (),
    graceful_timeout: float = 5.0,
    cluster: Mapping[str, Any] | None = None,
    route: Mapping[str, Any] | None = None,
) -> ProxyBuilder:
    """One listener on 127.0.0.1:0, one cluster ``c`` of ``hosts``, one catch-all route."""
    return (
        ProxyBuilder(graceful_timeout=graceful_timeout)
        .cluster("c", list(hosts), connect_timeout=1.0, **(cluster or {}))
        .route(cluster="c", **(route or {}))
        .listener(LISTENER, f"{LOCALHOST}:0", stream_filters=stream_filters)
    )


@asynccontextmanager
async def running(proxy: ProxyBuilder | MosnConfig) -> AsyncIterator[tuple[MosnServer, int]]:
    """Serve ``proxy`` in this loop for the block: ``(server, port)``."""
    server = MosnServer(proxy) if isinstance(proxy, MosnConfig) else proxy.server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server, server.listener(LISTENER).port
        finally:
            nursery.cancel_scope.cancel()


async def get(
    port: int, path: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> httpx.Response:
    """One GET through a fresh httpx client in a worker thread."""

    def call() -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            response = client.get(f"http://{LOCALHOST}:{port}{path}", headers=headers)
            response.read()
            return response

    return await trio.to_thread.run_sync(call)


async def get_many(port: int, path: str, n: int) -> list[httpx.Response]:
    """``n`` sequential GETs on one kept-alive httpx client in a worker thread."""

    def call() -> list[httpx.Response]:
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            return [client.get(f"http://{LOCALHOST}:{port}{path}") for _ in range(n)]

    return await trio.to_thread.run_sync(call)


async def read_until_eof(stream: trio.SocketStream, *, timeout: float = 3.0) -> bytes:
    data = bytearray()
    with trio.fail_after(timeout):
        for _ in range(10_000):
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


def with_route_policy(config: MosnConfig, *, timeout: float, policy: RetryPolicyConfig) -> MosnConfig:
    """``config`` with its first route's timeout and retry policy replaced."""
    server = config.servers[0]
    router = server.routers[0]
    vhost = router.virtual_hosts[0]
    route = vhost.routers[0]
    assert route.route is not None
    route = attrs.evolve(route, route=attrs.evolve(route.route, timeout=timeout, retry_policy=policy))
    vhost = attrs.evolve(vhost, routers=[route, *vhost.routers[1:]])
    router = attrs.evolve(router, virtual_hosts=[vhost, *router.virtual_hosts[1:]])
    server = attrs.evolve(server, routers=[router, *server.routers[1:]])
    return attrs.evolve(config, servers=[server, *config.servers[1:]])


class Scripted:
    """What a scripted backend saw: its port and each request line."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[bytes] = []


@asynccontextmanager
async def scripted_backend(statuses: Sequence[int]) -> AsyncIterator[Scripted]:
    """A trio backend in this loop answering request i with ``statuses[i]`` and body
    ``answer {i+1}``, one request per connection (``Connection: close``)."""
    seen = Scripted()

    async def handler(stream: trio.SocketStream) -> None:
        buf = b""
        with trio.move_on_after(3):
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        if b"\r\n\r\n" in buf:
            seen.requests.append(buf.split(b"\r\n", 1)[0])
            n = len(seen.requests)
            body = b"answer %d" % n
            status = statuses[min(n, len(statuses)) - 1]
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=LOCALHOST))
        seen.port = listeners[0].socket.getsockname()[1]
        try:
            yield seen
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def registered(factory: type) -> AsyncIterator[str]:
    """Register ``factory`` under a unique stream filter name for the block."""
    name = f"test-{factory.__name__.lower()}-{uuid.uuid4().hex[:8]}"
    mosnpy.STREAM_FILTERS.register(name, factory)
    try:
        yield name
    finally:
        mosnpy.STREAM_FILTERS.unregister(name)


def requests_logged(backend: PyBackend, request_line: str) -> int:
    return backend.output().count(f'"{request_line} HTTP/1.1"')


# --------------------------------------------------------------------------- stream filters


class _Counting:
    """Base of the test filter factories: counts the streams the filter saw."""

    seen: list[Stream]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        type(self).seen = []


class Teapot(_Counting):
    """Answers every request locally with 418 before routing."""

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(self, FilterPhase.BEFORE_ROUTE)

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        type(self).seen.append(stream)
        stream.send_local_reply(418, self.config.get("body", "teapot"))
        return StreamFilterStatus.STOP


class Terminator(_Counting):
    """Drops every request with no response."""

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(self, FilterPhase.BEFORE_ROUTE)

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        type(self).seen.append(stream)
        return StreamFilterStatus.TERMINATE


class Rematcher(_Counting):
    """Asks for a route re-match forever (after route)."""

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(self, FilterPhase.AFTER_ROUTE)

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        type(self).seen.append(stream)
        return StreamFilterStatus.REMATCH_ROUTE


# --------------------------------------------------------------------------- fault filter


async def test_fault_abort_100_percent(free_port: int) -> None:
    # The cluster points at a closed port: a 503 (not 502) proves upstream was never tried.
    fault = ("fault", {"abort": {"status": 503, "percentage": 100}})
    async with running(builder_for([f"{LOCALHOST}:{free_port}"], stream_filters=[fault])) as (_, port):
        r = await get(port, "/anything")
    assert r.status_code == 503
    assert "fault filter abort (503)" in r.text


@pytest.mark.parametrize(
    "config",
    [
        {"delay": {"fixed_delay": "300ms", "percentage": 100}},
        {"delay": {"fixed_delay": 0.3, "percentage": 100}},
        {"delay_percent": 100, "delay_duration": "300ms"},
    ],
    ids=["nested-duration", "nested-seconds", "flat-duration"],
)
async def test_fault_delay_100_percent(backend: PyBackend, config: dict[str, Any]) -> None:
    fault = ("fault", config)
    async with running(builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[fault])) as (_, port):
        start = trio.current_time()
        r = await get(port, "/")
        elapsed = trio.current_time() - start
    assert r.status_code == 200
    assert r.text == "backend a\n"
    assert 0.3 <= elapsed < 2.0


async def test_fault_flat_keys_abort_with_custom_status(free_port: int) -> None:
    fault = ("fault", {"abort_percent": 100, "abort_status": 429})
    async with running(builder_for([f"{LOCALHOST}:{free_port}"], stream_filters=[fault])) as (_, port):
        r = await get(port, "/")
    assert r.status_code == 429
    assert "(429)" in r.text


async def test_fault_percentage_zero_passes_through(backend: PyBackend) -> None:
    fault = (
        "fault",
        {"abort": {"status": 503, "percentage": 0}, "delay": {"fixed_delay": 5, "percentage": 0}},
    )
    async with running(builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[fault])) as (_, port):
        start = trio.current_time()
        responses = await get_many(port, "/health", 20)
        elapsed = trio.current_time() - start
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.text for r in responses} == {"ok"}
    assert elapsed < 3.0


async def test_fault_only_for_its_upstream_cluster(backend: PyBackend, free_port: int) -> None:
    fault = ("fault", {"abort": {"status": 503, "percentage": 100}, "upstream_cluster": "other"})
    async with running(builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[fault])) as (_, port):
        r = await get(port, "/health")
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"abort": {"status": 503, "percentage": 200}}, "percentage"),
        ({"abort_percent": 200, "abort_status": 503}, "abort_percent"),
        ({"delay": {"fixed_delay": 0.1, "percentage": -1}}, "percentage"),
        ({"abort_percent": 50, "abort_status": 42}, "abort status"),
    ],
)
def test_fault_config_error_names_path_and_field(config: dict[str, Any], field: str) -> None:
    proxy = builder_for([f"{LOCALHOST}:1"], stream_filters=[("header_mutation", {}), ("fault", config)])
    with pytest.raises(ConfigError) as info:
        MosnServer(proxy.build())
    message = str(info.value)
    assert "servers[0].listeners[0].stream_filters[1].config" in message
    assert field in message


def test_unknown_stream_filter_is_a_config_error() -> None:
    proxy = builder_for([f"{LOCALHOST}:1"], stream_filters=[("falut", {})])
    with pytest.raises(ConfigError, match=r"stream_filters\[0\]\.type.*falut.*fault"):
        MosnServer(proxy.build())


# --------------------------------------------------------------------------- header mutation


async def test_header_mutation_edits_request_and_response(backend: PyBackend) -> None:
    mutation = (
        "header_mutation",
        {
            "request_headers_to_add": [{"header": {"key": "x-injected", "value": "in"}}],
            "request_headers_to_remove": ["x-secret"],
            "response_headers_to_add": [{"header": {"key": "x-added", "value": "yes"}}],
            "response_headers_to_remove": ["x-backend"],
        },
    )
    async with running(builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[mutation])) as (_, port):
        r = await get(port, "/echo", headers={"x-secret": "s3cr3t", "x-keep": "kept"})
    assert r.status_code == 200
    assert r.headers["x-added"] == "yes"
    assert "x-backend" not in r.headers
    assert r.headers["x-echo-x-keep"] == "kept"
    assert r.headers["x-echo-x-injected"] == "in"
    assert "x-echo-x-secret" not in r.headers


# --------------------------------------------------------------------------- user stream filters


async def test_own_stream_filter_answers_locally(free_port: int) -> None:
    async with registered(Teapot) as name:
        mutation = (
            "header_mutation",
            {"response_headers_to_add": [{"header": {"key": "x-m", "value": "1"}}]},
        )
        filters: list[tuple[str, Mapping[str, Any]]] = [(name, {"body": "short and stout"}), mutation]
        # Upstream is a closed port: had the proxy gone there, this would be a 502.
        async with running(builder_for([f"{LOCALHOST}:{free_port}"], stream_filters=filters)) as (_, port):
            r = await get(port, "/brew")
    assert r.status_code == 418
    assert r.text == "short and stout"
    assert r.headers["x-m"] == "1"  # the local reply went through the sender filters
    assert len(Teapot.seen) == 1
    assert Teapot.seen[0].path == "/brew"
    assert Teapot.seen[0].upstream_host is None
    assert name not in mosnpy.STREAM_FILTERS


async def test_terminate_closes_the_connection_without_a_response(backend: PyBackend) -> None:
    async with registered(Terminator) as name:
        proxy = builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[(name, {})])
        async with running(proxy) as (_, port):
            stream = await trio.open_tcp_stream(LOCALHOST, port)
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_until_eof(stream) == b""
            await stream.aclose()
    assert len(Terminator.seen) == 1


async def test_endless_rematch_gives_up_after_max_jumps(backend: PyBackend) -> None:
    async with registered(Rematcher) as name:
        proxy = builder_for([f"{LOCALHOST}:{backend.port}"], stream_filters=[(name, {})])
        async with running(proxy) as (_, port):
            r = await get(port, "/health")
    assert r.status_code == 500
    assert "too many" in r.text
    assert len(Rematcher.seen) == MAX_JUMPS + 1


# --------------------------------------------------------------------------- timeouts and retries


async def test_per_try_timeout_retries_then_504() -> None:
    with start_py_backend("slow", verbose=True) as slow:
        policy = RetryPolicyConfig(retry_on=True, retry_timeout=0.3, num_retries=1)
        config = with_route_policy(
            builder_for([f"{LOCALHOST}:{slow.port}"]).build(), timeout=1.0, policy=policy
        )
        async with running(config) as (_, port):
            start = trio.current_time()
            r = await get(port, "/slow?ms=1200")
            elapsed = trio.current_time() - start
        assert r.status_code == 504
        assert r.headers["x-mosnpy-error"] == "UpstreamPerTryTimeout"
        # Two tries of 0.3 s each (the header says which timeout fired; the upper
        # bound only leaves room for a loaded machine).
        assert 0.55 <= elapsed < 3.0
        # The backend logs each request when it answers (after its 1.2 s sleep).
        with trio.fail_after(3):
            while requests_logged(slow, "GET /slow?ms=1200") < 2:
                await trio.sleep(0.05)
        await trio.sleep(0.2)
        assert requests_logged(slow, "GET /slow?ms=1200") == 2


async def test_global_timeout_504(backend: PyBackend) -> None:
    async with running(builder_for([f"{LOCALHOST}:{backend.port}"], route={"timeout": 0.4})) as (_, port):
        start = trio.current_time()
        r = await get(port, "/slow?ms=1500")
        elapsed = trio.current_time() - start
    assert r.status_code == 504
    assert r.headers["x-mosnpy-error"] == "UpstreamGlobalTimeout"
    assert 0.35 <= elapsed < 3.0


async def test_retry_on_status_resends_and_returns_the_retry_answer() -> None:
    statuses = [503, 200]
    async with scripted_backend(statuses) as seen:
        proxy = builder_for([f"{LOCALHOST}:{seen.port}"], route={"retries": 1, "retry_on_status": [503]})
        async with running(proxy) as (_, port):
            r = await get(port, "/flaky")
    assert (r.status_code, r.text) == (200, "answer 2")
    assert [line.split(b" ")[1] for line in seen.requests] == [b"/flaky", b"/flaky"]


async def test_retry_budget_spent_passes_the_last_answer_through() -> None:
    async with scripted_backend([503, 503, 200]) as seen:
        proxy = builder_for([f"{LOCALHOST}:{seen.port}"], route={"retries": 1, "retry_on_status": [503]})
        async with running(proxy) as (_, port):
            r = await get(port, "/flaky")
    assert (r.status_code, r.text) == (503, "answer 2")
    assert len(seen.requests) == 2


async def test_five_retries_fit_the_jump_budget() -> None:
    async with scripted_backend([503] * 10) as seen:
        proxy = builder_for([f"{LOCALHOST}:{seen.port}"], route={"retries": 5, "retry_on_status": [503]})
        async with running(proxy) as (_, port):
            r = await get(port, "/flaky")
    assert (r.status_code, r.text) == (503, "answer 6")
    assert len(seen.requests) == 6


async def test_six_retries_are_honoured() -> None:
    async with scripted_backend([503] * 10) as seen:
        proxy = builder_for([f"{LOCALHOST}:{seen.port}"], route={"retries": 6, "retry_on_status": [503]})
        async with running(proxy) as (_, port):
            r = await get(port, "/flaky")
    assert (r.status_code, r.text) == (503, "answer 7")
    assert len(seen.requests) == 7


async def test_status_not_in_retry_on_status_is_not_retried() -> None:
    async with scripted_backend([500, 200]) as seen:
        proxy = builder_for([f"{LOCALHOST}:{seen.port}"], route={"retries": 1, "retry_on_status": [503]})
        async with running(proxy) as (_, port):
            r = await get(port, "/flaky")
    assert (r.status_code, r.text) == (500, "answer 1")
    assert len(seen.requests) == 1


async def test_connect_failure_is_502_with_reason(free_port: int) -> None:
    async with running(builder_for([f"{LOCALHOST}:{free_port}"])) as (_, port):
        r = await get(port, "/")
    assert r.status_code == 502
    assert r.headers["x-mosnpy-error"] == "ConnectionFailed"


# --------------------------------------------------------------------------- clusters


async def test_weighted_clusters_split_traffic(backends: tuple[PyBackend, PyBackend]) -> None:
    a, b = backends
    proxy = (
        ProxyBuilder()
        .cluster("ca", [f"{LOCALHOST}:{a.port}"])
        .cluster("cb", [f"{LOCALHOST}:{b.port}"])
        .route(weighted={"ca": 80, "cb": 20})
        .listener(LISTENER, f"{LOCALHOST}:0")
    )
    n = 200
    async with running(proxy) as (_, port):
        responses = await get_many(port, "/health", n)
    assert all(r.status_code == 200 for r in responses)
    counts = Counter(r.headers["x-backend"] for r in responses)
    assert counts["a"] + counts["b"] == n
    assert counts["a"] > 0 and counts["b"] > 0
    sd = math.sqrt(n * 0.8 * 0.2)
    assert abs(counts["a"] - n * 0.8) <= 6 * sd, counts


async def test_max_requests_circuit_breaker(backend: PyBackend) -> None:
    proxy = builder_for([f"{LOCALHOST}:{backend.port}"], cluster={"max_requests": 1})
    async with running(proxy) as (server, port):
        results: list[httpx.Response] = []

        async def one() -> None:
            results.append(await get(port, "/slow?ms=500"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
        assert server.clusters.get("c").active_requests == 0
        # With the first one done, the breaker lets requests through again.
        after = await get(port, "/health")
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 503]
    rejected = next(r for r in results if r.status_code == 503)
    assert rejected.headers["x-mosnpy-error"] == "UpstreamOverflow"
    assert "max_requests" in rejected.text
    assert after.status_code == 200


async def test_stale_kept_alive_connection_is_resent_on_a_fresh_one() -> None:
    """The backend closes each connection right after its response; the proxy reuses the
    dead (recently idle, so not probed) connection, gets nothing back, and resends."""
    connections: list[int] = []
    requests: list[bytes] = []

    async def one_shot(stream: trio.SocketStream) -> None:
        connections.append(1)
        buf = b""
        with trio.move_on_after(3):
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        if b"\r\n\r\n" in buf:
            requests.append(buf.split(b"\r\n", 1)[0])
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, one_shot, 0, host=LOCALHOST))
        backend_port = listeners[0].socket.getsockname()[1]
        async with running(builder_for([f"{LOCALHOST}:{backend_port}"])) as (_, port):
            first = await get(port, "/one")
            await trio.sleep(0.05)  # the backend's FIN reaches the pooled connection
            second = await get(port, "/two")
        nursery.cancel_scope.cancel()
    assert (first.status_code, first.text) == (200, "ok")
    assert (second.status_code, second.text) == (200, "ok")
    assert requests[0].startswith(b"GET /one ")
    assert requests[-1].startswith(b"GET /two ")
    assert len(connections) >= 2


# --------------------------------------------------------------------------- graceful drain


async def test_graceful_drain_lets_the_in_flight_request_finish(backend: PyBackend) -> None:
    server = builder_for([f"{LOCALHOST}:{backend.port}"], graceful_timeout=5.0).server()
    stopped = trio.Event()
    results: list[httpx.Response] = []

    async def serve(task_status: trio.TaskStatus[MosnServer] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve(task_status=task_status)
        stopped.set()

    with trio.fail_after(4):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            port = server.listener(LISTENER).port

            async def client() -> None:
                results.append(await get(port, "/slow?ms=800"))

            nursery.start_soon(client)
            while not server.listener(LISTENER).connections:
                await trio.sleep(0.01)
            await trio.sleep(0.2)  # the request is with the backend now
            start = trio.current_time()
            server.shutdown()
            await stopped.wait()
            drained_in = trio.current_time() - start
    assert [r.status_code for r in results] == [200]
    assert results[0].text == "slow"
    assert drained_in < 2.0  # not the 5 s graceful timeout
    with pytest.raises(OSError):
        await trio.open_tcp_stream(LOCALHOST, port)


async def test_graceful_drain_closes_idle_keep_alive_connections_at_once(backend: PyBackend) -> None:
    server = builder_for([f"{LOCALHOST}:{backend.port}"], graceful_timeout=5.0).server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        port = server.listener(LISTENER).port
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(2):
            head = b""
            while not head.endswith(b"ok"):
                head += await stream.receive_some(4096)
        start = trio.current_time()
        server.shutdown()
        assert await read_until_eof(stream, timeout=2.0) == b""
        with trio.fail_after(2):
            await server.wait_stopped()
        assert trio.current_time() - start < 1.0
        await stream.aclose()


async def test_graceful_drain_closes_a_busy_keep_alive_connection_after_its_request(
    backend: PyBackend,
) -> None:
    server = builder_for([f"{LOCALHOST}:{backend.port}"], graceful_timeout=3.0).server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        port = server.listener(LISTENER).port
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        await stream.send_all(b"GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.2)
        start = trio.current_time()
        server.shutdown()
        # The in-flight response arrives whole, then the proxy closes the connection.
        data = await read_until_eof(stream, timeout=1.5)
        closed_after = trio.current_time() - start
        await stream.aclose()
        with trio.fail_after(1.5):
            await server.wait_stopped()  # well before the 3 s graceful timeout
        nursery.cancel_scope.cancel()
    assert data.startswith(b"HTTP/1.1 200")
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head
    assert data.endswith(b"slow")
    assert closed_after < 1.5


async def test_upstream_connection_close_is_not_pooled() -> None:
    """A backend answering ``Connection: close`` must not have its connection reused."""
    with start_py_backend("closer") as backend:
        server = (
            mosnpy.ProxyBuilder()
            .cluster("c", [f"127.0.0.1:{backend.port}"])
            .route(prefix="/", cluster="c")
            .listener("l", "127.0.0.1:0")
            .server()
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            port = server.listener("l").port

            def get(path: str) -> int:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code

            cluster = server.clusters.get("c")
            pool = cluster.pool(cluster.hosts[0], HTTP1)
            assert await trio.to_thread.run_sync(get, "/close") == 200
            assert isinstance(pool, MultiplexPool)
            assert pool.idle == [] and pool.connections == []  # dropped, not pooled
            assert await trio.to_thread.run_sync(get, "/") == 200
            assert len(pool.idle) == 1 and not pool.idle[0].listeners  # a keep-alive answer is pooled
            server.shutdown()


async def test_refused_upload_still_reaches_a_client_that_reads_only_after_sending() -> None:
    """http.client sends its whole body before reading: a close with unread data
    would reset the connection and destroy the 403 before the client reads it."""
    import http.client

    server = (
        mosnpy.ProxyBuilder()
        .route(prefix="/", direct_response=(403, "forbidden"))
        .listener("l", "127.0.0.1:0")
        .server()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        port = server.listener("l").port

        def post() -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("POST", "/upload", body=b"x" * (4 << 20))
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        for _ in range(3):
            assert await trio.to_thread.run_sync(post) == (403, b"forbidden")
        server.shutdown()


async def test_malformed_chunked_body_gets_400() -> None:
    with start_py_backend("b") as backend:
        server = (
            mosnpy.ProxyBuilder()
            .cluster("c", [f"127.0.0.1:{backend.port}"])
            .route(prefix="/", cluster="c")
            .listener("l", "127.0.0.1:0")
            .server()
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            stream = await trio.open_tcp_stream("127.0.0.1", server.listener("l").port)
            await stream.send_all(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n"
            )
            reply = b""
            with trio.fail_after(5):
                async for data in stream:
                    reply += data
            assert reply.startswith(b"HTTP/1.1 400 "), reply
            await stream.aclose()
            server.shutdown()


async def test_garbage_after_a_good_pipelined_request_is_refused() -> None:
    server = (
        mosnpy.ProxyBuilder()
        .route(prefix="/", direct_response=(200, "ok"))
        .listener("l", "127.0.0.1:0")
        .server()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", server.listener("l").port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        reply = b""
        with trio.fail_after(5):
            async for data in stream:
                reply += data
        assert reply.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 400 " in reply, reply
        await stream.aclose()
        server.shutdown()


async def test_sender_filter_can_change_the_status() -> None:
    class Teapot:
        async def append(self, stream: mosnpy.Stream) -> mosnpy.StreamFilterStatus:
            stream.response_status = 418
            return mosnpy.StreamFilterStatus.CONTINUE

    class TeapotFactory:
        def __init__(self, config: Mapping[str, Any]) -> None:
            pass

        def create_filter_chain(self, chain: mosnpy.StreamFilterChain) -> None:
            chain.add_sender(Teapot())

    name = f"teapot-{uuid.uuid4().hex}"
    mosnpy.STREAM_FILTERS.register(name, TeapotFactory)
    try:
        with start_py_backend("b") as backend:
            server = (
                mosnpy.ProxyBuilder()
                .cluster("c", [f"127.0.0.1:{backend.port}"])
                .route(path="/local", direct_response=(200, "local"))
                .route(prefix="/", cluster="c")
                .listener("l", "127.0.0.1:0", stream_filters=[(name, {})])
                .server()
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                port = server.listener("l").port

                def statuses() -> list[int]:
                    return [
                        httpx.get(f"http://127.0.0.1:{port}{p}", timeout=5).status_code
                        for p in ("/", "/local")
                    ]

                assert await trio.to_thread.run_sync(statuses) == [418, 418]
                server.shutdown()
    finally:
        mosnpy.STREAM_FILTERS.unregister(name)
