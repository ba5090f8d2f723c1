"""The listener's idle timeout, timed exactly on trio's MockClock (no real waiting)."""

from __future__ import annotations

import trio
import trio.testing

from mosnpy.net import Connection, ConnectionEvent, FilterManager, FilterStatus, Listener

LOCALHOST = "127.0.0.1"
#: The sweeper looks every min(1 s, timeout / 4): for 8 s, once a second, so an idle
#: connection closes more than 8 s and at most 9 s after it last moved a byte.
IDLE = 8.0
SWEEP = 1.0


class Echo:
    """Echoes what it reads and records when (virtual time) and why its connection closed."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.closed = trio.Event()
        self.closed_at = -1.0
        self.close_event: ConnectionEvent | None = None

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.conn = connection
        connection.add_event_listener(self._on_event)
        return FilterStatus.CONTINUE

    def _on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.closed.is_set():
            self.closed_at = trio.current_time()
            self.close_event = event
            self.closed.set()

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        assert self.conn is not None
        data = bytes(buffer)
        del buffer[:]
        await self.conn.send_all(data)
        return FilterStatus.CONTINUE


class Factory:
    def __init__(self) -> None:
        self.filters: list[Echo] = []

    def create_filter_chain(self, manager: FilterManager) -> None:
        self.filters.append(Echo())
        manager.add_read_filter(self.filters[-1])


async def ping(client: trio.SocketStream, factory: Factory) -> tuple[Echo, float, float]:
    """Echo 4 bytes: the server side's filter and the (virtual) times just before the
    send and just after the echo came back (the same instant, unless the clock jumped)."""
    sent = trio.current_time()
    await client.send_all(b"ping")
    got = b""
    while len(got) < 4:
        got += await client.receive_some(4 - len(got))
    assert got == b"ping"
    (echo,) = factory.filters
    return echo, sent, trio.current_time()


async def test_idle_connection_closes_after_the_idle_timeout_and_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Catches an idle timeout enforced at twice (or half) the configured value, or an
    idle clock that traffic does not restart: the close must come in (IDLE, IDLE + one
    sweep] after the last byte moved, as IDLE_TIMEOUT, and the client must see EOF."""
    factory = Factory()
    lst = Listener("idle", f"{LOCALHOST}:0", [factory], idle_timeout=IDLE)
    # Virtual time: the test takes no real time, and this bound is virtual too.
    with trio.fail_after(10 * IDLE):
        async with trio.open_nursery() as nursery:
            await nursery.start(lst.serve)
            client = await trio.open_tcp_stream(LOCALHOST, lst.port)
            echo, sent, done = await ping(client, factory)
            # Traffic half-way through the timeout restarts the idle clock.
            await trio.sleep_until(done + IDLE / 2)
            if not echo.closed.is_set():
                echo, sent, done = await ping(client, factory)
            with trio.move_on_after(4 * IDLE):
                await echo.closed.wait()
            eof = await client.receive_some(1) if echo.closed.is_set() else None
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert echo.closed.is_set(), f"idle timeout {IDLE} s: still open {4 * IDLE:.0f} s after the last byte"
    assert echo.closed_at - sent > IDLE, (
        f"idle timeout {IDLE} s: closed {echo.closed_at - sent:.2f} s after the last byte"
    )
    assert echo.closed_at - done <= IDLE + SWEEP, (
        f"idle timeout {IDLE} s: closed {echo.closed_at - done:.2f} s after the last byte"
    )
    assert echo.close_event is ConnectionEvent.IDLE_TIMEOUT
    assert eof == b""
