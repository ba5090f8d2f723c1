"""The ``tcp_proxy`` network filter with real sockets on 127.0.0.1.

Most tests run mosnpy in the test's own trio loop (``MosnServer`` from a config dict)
with tiny trio backends in the same loop.  The bounded-memory test runs mosnpy and an
echo backend as subprocesses, so mosnpy's peak RSS (``VmHWM``) is its own, and drives
them from blocking sockets in threads.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from mosnpy import MosnServer
from mosnpy.config import parse_config
from tests.support import free_port, run_mosnpy, stop_process, wait_for_port

pytestmark = pytest.mark.timeout(60)

LOCALHOST = "127.0.0.1"
Handler = Callable[[trio.SocketStream], Awaitable[None]]


# --------------------------------------------------------------------------- helpers


def tcp_config(
    listeners: Mapping[str, Mapping[str, Any]],
    clusters: Mapping[str, Sequence[str]],
    *,
    ports: Mapping[str, int] | None = None,
    lb: str = "LB_ROUNDROBIN",
) -> dict[str, Any]:
    """Listeners ``{name: tcp_proxy config}`` (port 0 unless in ``ports``) and clusters
    ``{name: [host:port, ...]}``."""
    return {
        "servers": [
            {
                "default_log_level": "WARN",
                "graceful_timeout": "1s",
                "listeners": [
                    {
                        "name": name,
                        "address": f"{LOCALHOST}:{(ports or {}).get(name, 0)}",
                        "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": dict(cfg)}]}],
                    }
                    for name, cfg in listeners.items()
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": name,
                    "lb_type": lb,
                    "connect_timeout": "1s",
                    "hosts": [{"address": h} for h in hosts],
                }
                for name, hosts in clusters.items()
            ]
        },
    }


@asynccontextmanager
async def mosnpy_server(doc: Mapping[str, Any]) -> AsyncIterator[MosnServer]:
    server = MosnServer(parse_config(doc))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            server.shutdown()


def port_of(server: MosnServer, name: str) -> int:
    return server.listener(name).port


@asynccontextmanager
async def backend(handler: Handler) -> AsyncIterator[int]:
    """A trio TCP server on 127.0.0.1 running ``handler`` per connection; its port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=LOCALHOST))
        try:
            yield int(listeners[0].socket.getsockname()[1])
        finally:
            nursery.cancel_scope.cancel()


async def echo(stream: trio.SocketStream) -> None:
    """Echo until EOF, then half-close back."""
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass


def greeter(name: bytes) -> Handler:
    """Say ``name`` first (a server-first protocol), then echo."""

    async def handler(stream: trio.SocketStream) -> None:
        await stream.send_all(name + b"\n")
        await echo(stream)

    return handler


async def read_all(stream: trio.SocketStream, limit: float = 5.0) -> bytes:
    """Everything until EOF (a reset counts as EOF)."""
    out = bytearray()
    with trio.fail_after(limit):
        try:
            while data := await stream.receive_some(65536):
                out += data
        except trio.BrokenResourceError:
            pass
    return bytes(out)


async def read_exactly(stream: trio.SocketStream, n: int, limit: float = 5.0) -> bytes:
    out = bytearray()
    with trio.fail_after(limit):
        while len(out) < n:
            data = await stream.receive_some(n - len(out))
            assert data, f"EOF after {len(out)} of {n} bytes"
            out += data
    return bytes(out)


async def read_line(stream: trio.SocketStream, limit: float = 5.0) -> bytes:
    """Up to and including the first newline, or what came before EOF."""
    out = bytearray()
    with trio.fail_after(limit):
        try:
            while not out.endswith(b"\n") and (data := await stream.receive_some(1)):
                out += data
        except trio.BrokenResourceError:
            pass
    return bytes(out)


async def open_client(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream(LOCALHOST, port)


# --------------------------------------------------------------------------- bytes both ways


async def test_echo_both_ways_and_stats() -> None:
    async with backend(echo) as up:
        doc = tcp_config({"tcp": {"cluster": "echo"}}, {"echo": [f"{LOCALHOST}:{up}"]})
        async with mosnpy_server(doc) as server:
            payload = os.urandom(3 * 1024 * 1024 + 17)
            async with await open_client(port_of(server, "tcp")) as client, trio.open_nursery() as nursery:

                async def send() -> None:
                    for i in range(0, len(payload), 100_000):
                        await client.send_all(payload[i : i + 100_000])
                    await client.send_eof()

                nursery.start_soon(send)
                got = await read_all(client, limit=20)
            assert got == payload
            cluster = server.stats()["clusters"]["echo"]
            assert cluster["counters"]["requests"] == 1
            assert cluster["traffic"] == {"read": len(payload), "written": len(payload)}
            with trio.fail_after(5):
                while server.stats()["clusters"]["echo"]["active_requests"]:
                    await trio.sleep(0.01)
            assert server.stats()["clusters"]["echo"]["hosts"][0]["active_requests"] == 0


# --------------------------------------------------------------------------- half-close


async def test_client_half_close_backend_still_answers() -> None:
    seen: list[bytes] = []

    async def count_then_answer(stream: trio.SocketStream) -> None:
        async with stream:
            body = await read_all(stream)  # until the client's FIN
            seen.append(body)
            await trio.sleep(0.2)  # answer well after the EOF
            await stream.send_all(b"got %d bytes\n" % len(body))

    async with backend(count_then_answer) as up:
        doc = tcp_config({"tcp": {"cluster": "c"}}, {"c": [f"{LOCALHOST}:{up}"]})
        async with mosnpy_server(doc) as server:
            async with await open_client(port_of(server, "tcp")) as client:
                await client.send_all(b"x" * 100_000)
                await client.send_eof()
                assert await read_all(client) == b"got 100000 bytes\n"
            assert seen == [b"x" * 100_000]


async def test_backend_half_close_client_still_sends() -> None:
    """A server-first backend: greets, half-closes, then still reads the client."""
    received: list[bytes] = []
    done = trio.Event()

    async def greet_and_listen(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hello\n")
            await stream.send_eof()
            received.append(await read_all(stream))
            done.set()

    async with backend(greet_and_listen) as up:
        doc = tcp_config({"tcp": {"cluster": "c"}}, {"c": [f"{LOCALHOST}:{up}"]})
        async with mosnpy_server(doc) as server:
            async with await open_client(port_of(server, "tcp")) as client:
                # nothing sent yet: mosnpy connected on accept, so the greeting arrives
                assert await read_all(client) == b"hello\n"
                await client.send_all(b"bye after your EOF\n")
                await client.send_eof()
                with trio.fail_after(5):
                    await done.wait()
                assert await read_all(client) == b""
            assert received == [b"bye after your EOF\n"]


async def test_client_fin_before_any_byte_is_a_half_close() -> None:
    async def slow_greeter(stream: trio.SocketStream) -> None:
        await trio.sleep(0.3)  # after the client's FIN reached mosnpy
        await greeter(b"hello")(stream)

    async with backend(slow_greeter) as up:
        doc = tcp_config({"tcp": {"cluster": "c"}}, {"c": [f"{LOCALHOST}:{up}"]})
        async with mosnpy_server(doc) as server, await open_client(port_of(server, "tcp")) as client:
            await client.send_eof()
            assert await read_all(client) == b"hello\n"


# --------------------------------------------------------------------------- idle timeout


async def test_idle_timeout_closes_both_sides() -> None:
    backend_saw_close = trio.Event()

    async def echo_and_note(stream: trio.SocketStream) -> None:
        await echo(stream)
        backend_saw_close.set()

    async with backend(echo_and_note) as up:
        doc = tcp_config({"tcp": {"cluster": "c", "idle_timeout": "300ms"}}, {"c": [f"{LOCALHOST}:{up}"]})
        async with mosnpy_server(doc) as server, await open_client(port_of(server, "tcp")) as client:
            # traffic every 100 ms keeps the pair open past the timeout
            for i in range(8):
                if i:
                    await trio.sleep(0.1)
                await client.send_all(b"ping")
                assert await read_exactly(client, 4) == b"ping"
            last_active = trio.current_time()
            assert await read_all(client, limit=5) == b""
            waited = trio.current_time() - last_active
            assert 0.25 <= waited < 2.0, waited
            with trio.fail_after(5):
                await backend_saw_close.wait()


# --------------------------------------------------------------------------- connecting


async def test_connect_failure_closes_the_client() -> None:
    dead = free_port()
    doc = tcp_config({"tcp": {"cluster": "dead"}}, {"dead": [f"{LOCALHOST}:{dead}"]})
    async with mosnpy_server(doc) as server:
        async with await open_client(port_of(server, "tcp")) as client:
            try:
                await client.send_all(b"anyone?")
            except trio.BrokenResourceError:
                pass
            assert await read_all(client, limit=5) == b""
        stats = server.stats()["clusters"]["dead"]
        assert stats["counters"]["connect_failures"] == 1
        with trio.fail_after(5):
            while server.stats()["clusters"]["dead"]["active_requests"]:
                await trio.sleep(0.01)


@pytest.mark.parametrize("attempts", [1, 2])
async def test_max_connect_attempts_tries_another_host(attempts: int) -> None:
    dead = free_port()
    async with backend(greeter(b"live")) as live:
        doc = tcp_config(
            {"tcp": {"cluster": "c", "max_connect_attempts": attempts}},
            {"c": [f"{LOCALHOST}:{dead}", f"{LOCALHOST}:{live}"]},
        )
        async with mosnpy_server(doc) as server:
            answers = []
            for _ in range(4):
                async with await open_client(port_of(server, "tcp")) as client:
                    answers.append(await read_line(client))
            counters = server.stats()["clusters"]["c"]["counters"]
    if attempts == 1:  # round robin: every other connection meets the dead host
        assert sorted(answers) == [b"", b"", b"live\n", b"live\n"]
        assert counters["connect_failures"] == 2 and counters["retries"] == 0
    else:  # round robin meets the dead host first every time, then the live one
        assert answers == [b"live\n"] * 4
        assert counters["connect_failures"] == 4 and counters["retries"] == 4


# --------------------------------------------------------------------------- routes


async def test_routes_pick_the_cluster_by_address_and_port() -> None:
    async with (
        backend(greeter(b"a")) as a,
        backend(greeter(b"b")) as b,
        backend(greeter(b"c")) as c,
    ):
        port_b, port_c = free_port(), free_port()
        cfg = {
            "cluster": "a",
            "routes": [
                # MOSN v1.6's spelling: Go field names, CIDR objects, port strings
                {
                    "cluster": "b",
                    "DestinationAddrs": [{"address": "127.0.0.1", "length": 32}],
                    "DestinationPort": f"{port_b}-{port_b},65535",
                },
                # never matches: the client is 127.0.0.1
                {"cluster": "b", "source_addrs": ["10.0.0.0/8"]},
                # the older spelling: "ip:port" strings
                {
                    "cluster": "c",
                    "source_addrs": ["127.0.0.0/8"],
                    "destination_addrs": [f"127.0.0.1:{port_c}"],
                },
            ],
        }
        doc = tcp_config(
            {"any": cfg, "to_b": cfg, "to_c": cfg},
            {"a": [f"{LOCALHOST}:{a}"], "b": [f"{LOCALHOST}:{b}"], "c": [f"{LOCALHOST}:{c}"]},
            ports={"to_b": port_b, "to_c": port_c},
        )
        async with mosnpy_server(doc) as server:
            got = {}
            for name in ("any", "to_b", "to_c"):
                async with await open_client(port_of(server, name)) as client:
                    got[name] = await read_line(client)
    assert got == {"any": b"a\n", "to_b": b"b\n", "to_c": b"c\n"}


async def test_no_route_and_no_default_closes() -> None:
    async with backend(greeter(b"b")) as b:
        cfg = {"routes": [{"cluster": "b", "source_addrs": ["10.0.0.0/8"]}]}
        doc = tcp_config({"tcp": cfg}, {"b": [f"{LOCALHOST}:{b}"]})
        async with mosnpy_server(doc) as server:
            async with await open_client(port_of(server, "tcp")) as client:
                assert await read_all(client) == b""
            assert server.stats()["clusters"]["b"]["counters"]["requests"] == 0


# --------------------------------------------------------------------------- bounded memory

ECHO_BACKEND = r"""
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(16)

def serve(conn):
    buf = bytearray(65536)
    with conn:
        while n := conn.recv_into(buf):
            conn.sendall(memoryview(buf)[:n])
        conn.shutdown(socket.SHUT_WR)

while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

MiB = 1024 * 1024
TOTAL = 256 * MiB
CHUNK = MiB


@contextmanager
def echo_process() -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mosnpy-echo-") as tmp:
        log_path = Path(tmp) / "echo.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", ECHO_BACKEND, str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(port, timeout=10, proc=proc)
            yield port
        finally:
            stop_process(proc, timeout=5)


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def client_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.settimeout(30)
    sock.connect((LOCALHOST, port))
    return sock


@pytest.mark.timeout(180)
def test_256_mib_both_ways_in_bounded_memory() -> None:
    """256 MiB to an echo backend and 256 MiB back through one mosnpy connection; the
    client first reads slowly, so both directions stall on backpressure.  mosnpy's
    peak RSS must grow by less than 32 MiB."""
    block = os.urandom(CHUNK)
    with echo_process() as echo_port:
        port = free_port()
        doc = tcp_config(
            {"tcp": {"cluster": "echo"}}, {"echo": [f"{LOCALHOST}:{echo_port}"]}, ports={"tcp": port}
        )
        with run_mosnpy(doc, ready_port=port) as proc:
            with client_socket(port) as warm:  # load the code paths once
                warm.sendall(b"warm up")
                warm.shutdown(socket.SHUT_WR)
                assert warm.recv(100) == b"warm up"
            time.sleep(0.2)
            baseline = vm_hwm(proc.pid)

            sock = client_socket(port)
            sent = 0
            sent_hash = hashlib.sha256()
            errors: list[BaseException] = []

            def sender() -> None:
                nonlocal sent
                try:
                    while sent < TOTAL:
                        sock.sendall(block)
                        sent_hash.update(block)
                        sent += len(block)
                    sock.shutdown(socket.SHUT_WR)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            thread = threading.Thread(target=sender, daemon=True)
            thread.start()
            received = 0
            got_hash = hashlib.sha256()
            # slow reader: 32 KiB every 20 ms for 3 s (about 5 MiB)
            slow_until = time.monotonic() + 3.0
            most_in_flight = 0
            while time.monotonic() < slow_until:
                data = sock.recv(32 * 1024)
                assert data
                got_hash.update(data)
                received += len(data)
                most_in_flight = max(most_in_flight, sent - received)
                time.sleep(0.02)
            assert sent < TOTAL, "the sender was never held back"
            slow_phase = received
            # then at full speed
            while data := sock.recv(CHUNK):
                got_hash.update(data)
                received += len(data)
            thread.join(30)
            sock.close()
            assert not errors, errors
            assert received == TOTAL
            assert got_hash.digest() == sent_hash.digest()
            peak = vm_hwm(proc.pid)
            assert proc.returncode is None
    growth = peak - baseline
    print(
        f"baseline VmHWM {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
        f"(+{growth / MiB:.1f} MiB); slow phase read {slow_phase / MiB:.1f} MiB, "
        f"at most {most_in_flight / MiB:.1f} MiB in flight"
    )
    # what the kernel buffers hold, not mosnpy: far below the 256 MiB sent
    assert most_in_flight < 96 * MiB
    assert growth < 32 * MiB, f"mosnpy's peak RSS grew by {growth / MiB:.1f} MiB"
