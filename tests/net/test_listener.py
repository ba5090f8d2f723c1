"""The NET/IO layer over real sockets: Listener, network and listener filters, Connection."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from mosnpy.net import (
    AcceptedSocket,
    Connection,
    ConnectionClosedError,
    ConnectionEvent,
    FilterManager,
    FilterStatus,
    Listener,
    ListenerFilter,
    connect,
)

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- filters


class LineEcho:
    """Echoes complete lines; a partial line stays in the buffer for the next read."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.new_calls = 0
        self.seen: list[bytes] = []
        self.events: list[ConnectionEvent] = []
        self.close_on_shutdown = False

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.new_calls += 1
        self.conn = connection
        connection.add_event_listener(self._on_event)
        return FilterStatus.CONTINUE

    def _on_event(self, event: ConnectionEvent) -> None:
        self.events.append(event)
        if event is ConnectionEvent.SHUTDOWN and self.close_on_shutdown and self.conn is not None:
            self.conn.close()

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        assert self.conn is not None
        self.seen.append(bytes(buffer))
        end = buffer.rfind(b"\n")
        if end >= 0:
            lines = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            await self.conn.send_all(lines)
        return FilterStatus.CONTINUE


class UpperCase:
    """A write filter that upper-cases outbound bytes in place."""

    def on_write(self, data: bytearray) -> FilterStatus:
        data[:] = data.upper()
        return FilterStatus.CONTINUE


class DropSecrets:
    """A write filter that drops any write containing ``secret``."""

    def on_write(self, data: bytearray) -> FilterStatus:
        return FilterStatus.STOP if b"secret" in data else FilterStatus.CONTINUE


class Factory:
    """Gives each connection a fresh LineEcho (kept in ``filters``) plus write filters."""

    def __init__(
        self,
        write_filters: Sequence[Callable[[], object]] = (),
        *,
        close_on_shutdown: bool = False,
    ) -> None:
        self.filters: list[LineEcho] = []
        self.write_filters = write_filters
        self.close_on_shutdown = close_on_shutdown

    def create_filter_chain(self, manager: FilterManager) -> None:
        f = LineEcho()
        f.close_on_shutdown = self.close_on_shutdown
        self.filters.append(f)
        manager.add_read_filter(f)
        for make in self.write_filters:
            manager.add_write_filter(make())  # type: ignore[arg-type]


class Gate:
    """A listener filter: records what it saw, refuses or tags the connection."""

    def __init__(self, status: FilterStatus) -> None:
        self.status = status
        self.seen: list[AcceptedSocket] = []

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        self.seen.append(accepted)
        accepted.values["gate"] = "passed"
        return self.status


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def serving(listener: Listener) -> AsyncIterator[Listener]:
    """Serve ``listener`` for the block, then cancel it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve)
        try:
            yield listener
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def bounded_nursery(seconds: float = 4.0) -> AsyncIterator[trio.Nursery]:
    """A nursery whose whole life (its tasks included) must end within ``seconds``."""
    with trio.fail_after(seconds):
        async with trio.open_nursery() as nursery:
            yield nursery


async def open_client(listener: Listener) -> trio.SocketStream:
    return await trio.open_tcp_stream(LOCALHOST, listener.port)


async def read_exactly(stream: trio.abc.ReceiveStream, n: int, *, timeout: float = 2.0) -> bytes:
    """Read ``n`` bytes (fails on EOF or after ``timeout``)."""
    buf = bytearray()
    with trio.fail_after(timeout):
        while len(buf) < n:
            chunk = await stream.receive_some(n - len(buf))
            assert chunk, f"EOF after {bytes(buf)!r}"
            buf += chunk
    return bytes(buf)


async def assert_eof(stream: trio.abc.ReceiveStream, *, timeout: float = 2.0) -> None:
    """The peer closed the connection (EOF or reset) within ``timeout`` with no data."""
    with trio.fail_after(timeout):
        try:
            data = await stream.receive_some(1024)
        except trio.BrokenResourceError:
            return
    assert data == b""


async def echo_once(stream: trio.SocketStream, line: bytes = b"ping\n") -> bytes:
    await stream.send_all(line)
    return await read_exactly(stream, len(line))


async def tcp_pair(*, rcvbuf: int = 0) -> tuple[Connection, Connection]:
    """(client, server) Connections joined over 127.0.0.1; ``rcvbuf`` shrinks the server's."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
        if rcvbuf:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        lsock.bind((LOCALHOST, 0))
        lsock.listen(1)
        lsock.setblocking(False)
        client = await connect(f"{LOCALHOST}:{lsock.getsockname()[1]}", timeout=2.0)
        with trio.fail_after(2):
            await trio.lowlevel.wait_readable(lsock)
        sock, _ = lsock.accept()
    return client, Connection(sock, server_side=True)


# --------------------------------------------------------------------------- listener


async def test_echo_read_filter_sees_accumulated_buffer_and_consumes_it() -> None:
    factory = Factory()
    async with serving(Listener("echo", f"{LOCALHOST}:0", [factory], idle_timeout=None)) as lst:
        assert lst.port > 0
        assert lst.address == f"{LOCALHOST}:{lst.port}"
        stream = await open_client(lst)
        assert await echo_once(stream, b"hello\n") == b"hello\n"
        f = factory.filters[0]
        # A partial line stays buffered; the next read sees it plus the new bytes.
        await stream.send_all(b"par")
        with trio.fail_after(2):
            while len(f.seen) < 2:
                await trio.sleep(0.01)
        await stream.send_all(b"tial\n")
        assert await read_exactly(stream, 8) == b"partial\n"
        assert f.seen == [b"hello\n", b"par", b"partial\n"]
        assert f.conn is not None and f.conn.read_buffer == b""
        assert f.conn.remote_address == "{}:{}".format(*stream.socket.getsockname())
        assert len(factory.filters) == 1
        assert f.new_calls == 1
        await stream.aclose()


async def test_each_connection_gets_its_own_chain_and_one_on_new_connection() -> None:
    factory = Factory()
    async with serving(Listener("echo", f"{LOCALHOST}:0", [factory], idle_timeout=None)) as lst:
        streams = [await open_client(lst) for _ in range(3)]
        for i, s in enumerate(streams):
            assert await echo_once(s, b"n%d\n" % i) == b"n%d\n" % i
        assert len(factory.filters) == 3
        assert [f.new_calls for f in factory.filters] == [1, 1, 1]
        assert len({id(f.conn) for f in factory.filters}) == 3
        assert len(lst.connections) == 3
        for s in streams:
            await s.aclose()


async def test_write_filter_upper_cases_outbound_bytes() -> None:
    factory = Factory([UpperCase])
    async with serving(Listener("up", f"{LOCALHOST}:0", [factory], idle_timeout=None)) as lst:
        stream = await open_client(lst)
        assert await echo_once(stream, b"hello World\n") == b"HELLO WORLD\n"
        await stream.aclose()


async def test_write_filter_stop_drops_the_bytes() -> None:
    factory = Factory([DropSecrets])
    async with serving(Listener("drop", f"{LOCALHOST}:0", [factory], idle_timeout=None)) as lst:
        stream = await open_client(lst)
        await stream.send_all(b"my secret\n")
        with trio.fail_after(2):
            while not factory.filters or not factory.filters[0].seen:
                await trio.sleep(0.01)
        await stream.send_all(b"fine\n")
        # Only the second line comes back: the first write was dropped.
        assert await read_exactly(stream, 5) == b"fine\n"
        await stream.aclose()


async def test_listener_filter_stop_refuses_the_connection() -> None:
    factory = Factory()
    gate = Gate(FilterStatus.STOP)
    lst = Listener("gate", f"{LOCALHOST}:0", [factory], listener_filters=[gate], idle_timeout=None)
    async with serving(lst):
        stream = await open_client(lst)
        await stream.send_all(b"hello\n")
        await assert_eof(stream)
        assert len(gate.seen) == 1
        assert gate.seen[0].remote_address == "{}:{}".format(*stream.socket.getsockname())
        assert gate.seen[0].local_address == lst.address
        assert factory.filters == []  # never became a connection
        assert not lst.connections


async def test_listener_filter_continue_passes_its_values_to_the_connection() -> None:
    factory = Factory()
    gate: ListenerFilter = Gate(FilterStatus.CONTINUE)
    lst = Listener("gate", f"{LOCALHOST}:0", [factory], listener_filters=[gate], idle_timeout=None)
    async with serving(lst):
        stream = await open_client(lst)
        assert await echo_once(stream) == b"ping\n"
        conn = factory.filters[0].conn
        assert conn is not None and conn.values["gate"] == "passed"
        await stream.aclose()


async def test_idle_timeout_closes_idle_but_not_active_connections() -> None:
    factory = Factory()
    lst = Listener("idle", f"{LOCALHOST}:0", [factory], idle_timeout=0.3)
    async with serving(lst), trio.open_nursery() as nursery:
        idle = await open_client(lst)
        active = await open_client(lst)
        start = trio.current_time()
        closed_after: list[float] = []

        async def watch_idle() -> None:
            await assert_eof(idle, timeout=1.5)
            closed_after.append(trio.current_time() - start)

        nursery.start_soon(watch_idle)
        # Keep the other one busy well past the idle timeout.
        for i in range(12):
            assert await echo_once(active, b"%d\n" % (i % 10)) == b"%d\n" % (i % 10)
            await trio.sleep(0.1)
        assert closed_after, "idle connection still open"
        assert 0.25 <= closed_after[0] <= 1.5
        assert await echo_once(active) == b"ping\n"
        closes = [f.conn.close_event for f in factory.filters if f.conn is not None and f.conn.closed]
        assert closes == [ConnectionEvent.IDLE_TIMEOUT]
        await active.aclose()


async def test_max_connections_refuses_the_extra_connection_at_once() -> None:
    factory = Factory()
    lst = Listener("max", f"{LOCALHOST}:0", [factory], max_connections=1, idle_timeout=None)
    async with serving(lst):
        first = await open_client(lst)
        assert await echo_once(first) == b"ping\n"
        second = await open_client(lst)
        await assert_eof(second, timeout=1.0)
        assert lst.refused == 1
        assert await echo_once(first, b"still\n") == b"still\n"
        assert len(factory.filters) == 1
        # Once the first one leaves, a new connection is admitted.
        await first.aclose()
        with trio.fail_after(2):
            while lst.connections:
                await trio.sleep(0.01)
        third = await open_client(lst)
        assert await echo_once(third) == b"ping\n"
        assert lst.refused == 1
        await third.aclose()


class Hold:
    """A listener filter that holds every accepted socket until ``release`` is set."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.calls = 0

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        self.calls += 1
        await self.release.wait()
        return FilterStatus.CONTINUE


async def test_max_connections_counts_sockets_still_in_listener_filters() -> None:
    factory = Factory()
    hold = Hold()
    lst = Listener("max", f"{LOCALHOST}:0", [factory], listener_filters=[hold], max_connections=1)
    async with serving(lst):
        first = await open_client(lst)
        with trio.fail_after(2):
            while hold.calls < 1:
                await trio.sleep(0.01)
        extra = [await open_client(lst) for _ in range(4)]
        with trio.fail_after(2):  # the listener has accepted (and refused) them all
            while lst.refused < 4:
                await trio.sleep(0.01)
        hold.release.set()
        assert await echo_once(first) == b"ping\n"
        assert (hold.calls, lst.refused, len(lst.connections)) == (1, 4, 1)
        for stream in extra:
            await assert_eof(stream, timeout=1.0)
        for stream in [first, *extra]:
            await stream.aclose()


async def test_unix_socket_listener_serves_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    factory = Factory()
    lst = Listener("unix", path, [factory], idle_timeout=None)
    async with bounded_nursery() as nursery:
        await nursery.start(lst.serve)
        assert lst.address == path
        stream = await trio.open_unix_socket(path)
        assert await echo_once(stream, b"over unix\n") == b"over unix\n"
        await stream.aclose()
        await lst.drain(1.0)
    assert not os.path.exists(path)


async def test_drain_refuses_new_connections_and_closes_idle_ones() -> None:
    factory = Factory()  # ignores SHUTDOWN: drain must force-close at its deadline
    lst = Listener("drain", f"{LOCALHOST}:0", [factory], idle_timeout=None)
    async with bounded_nursery() as nursery:
        await nursery.start(lst.serve)
        port = lst.port
        idle = await open_client(lst)
        assert await echo_once(idle) == b"ping\n"
        start = trio.current_time()
        with trio.fail_after(3):
            await lst.drain(0.4)
        assert 0.3 <= trio.current_time() - start < 2.0
        await assert_eof(idle)
        assert factory.filters[0].events[0] is ConnectionEvent.SHUTDOWN
        with pytest.raises(OSError):
            await trio.open_tcp_stream(LOCALHOST, port)
    # serve() returned: the nursery could close.


async def test_drain_is_quick_when_connections_honour_shutdown() -> None:
    factory = Factory(close_on_shutdown=True)
    lst = Listener("drain", f"{LOCALHOST}:0", [factory], idle_timeout=5.0)
    async with bounded_nursery() as nursery:
        await nursery.start(lst.serve)
        idle = await open_client(lst)
        assert await echo_once(idle) == b"ping\n"
        start = trio.current_time()
        await lst.drain(10.0)
        assert trio.current_time() - start < 1.0
        await assert_eof(idle)
        assert not lst.connections


# --------------------------------------------------------------------------- connection


async def test_receive_some_returns_empty_on_peer_close() -> None:
    client, server = await tcp_pair()
    await server.send_all(b"bye")
    server.close()
    got = b""
    with trio.fail_after(2):
        for _ in range(10):
            data = await client.receive_some()
            if not data:
                break
            got += data
    assert got == b"bye"
    assert data == b""
    assert not client.closed  # the peer closing does not close our side
    client.close()


async def test_receive_some_raises_after_local_close_and_close_fires_once() -> None:
    client, server = await tcp_pair()
    events: list[ConnectionEvent] = []
    client.add_event_listener(events.append)
    client.close()
    client.close()
    assert events == [ConnectionEvent.LOCAL_CLOSE]
    assert client.close_event is ConnectionEvent.LOCAL_CLOSE
    with pytest.raises(ConnectionClosedError):
        await client.receive_some()
    with pytest.raises(ConnectionClosedError):
        await client.send_all(b"x")
    assert client.peer_closed_while_idle()
    server.close()


async def test_close_wakes_a_task_parked_in_receive_some() -> None:
    client, server = await tcp_pair()
    outcome: list[BaseException | bytes] = []

    async def reader() -> None:
        try:
            outcome.append(await client.receive_some())
        except ConnectionClosedError as exc:
            outcome.append(exc)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            client.close()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConnectionClosedError)
    server.close()


async def test_send_all_of_4mib_to_a_slow_reader_applies_backpressure() -> None:
    client, server = await tcp_pair(rcvbuf=64 * 1024)
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    received = bytearray()
    done = trio.Event()

    async def writer() -> None:
        await client.send_all(payload)
        done.set()

    with trio.fail_after(4):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            # the writer has sent what the socket buffers take and is parked (or done)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set(), "4 MiB cannot fit in the socket buffers: send_all must wait"
            while len(received) < len(payload):
                data = await server.receive_some()
                assert data, "EOF before the whole payload"
                received += data
                await trio.lowlevel.checkpoint()
    assert done.is_set()
    assert received == payload
    client.close()
    server.close()


async def test_a_backlog_of_clients_is_accepted_in_a_few_scheduler_turns() -> None:
    """Clients waiting in the backlog are all accepted at once, not one per scheduler
    turn: under load a turn lasts as long as every connection's batch, so one accept per
    turn left new clients waiting seconds for their first answer."""
    factory = Factory()
    lst = Listener("burst", f"{LOCALHOST}:0", [factory], idle_timeout=None)
    clients: list[socket.socket] = []
    async with serving(lst):
        turns = 0
        try:
            for _ in range(40):  # connected by the kernel, waiting in the backlog
                c = socket.create_connection((LOCALHOST, lst.port))
                clients.append(c)
            with trio.fail_after(5):
                while lst.connections_total < 40:
                    await trio.lowlevel.checkpoint()  # one per scheduler turn
                    turns += 1
            assert turns <= 5, f"{turns} scheduler turns to accept 40 waiting clients"
        finally:
            for c in clients:
                c.close()
