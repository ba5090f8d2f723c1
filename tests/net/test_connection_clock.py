"""Connection.now(): the run's clock, read inline when it is trio's own."""

from __future__ import annotations

import socket

import trio
from trio.testing import MockClock

from mosnpy.net.connection import Connection


def _connection() -> tuple[Connection, socket.socket]:
    a, b = socket.socketpair()
    return Connection(a, server_side=True), b


async def test_now_reads_trios_own_clock() -> None:
    conn, peer = _connection()
    try:
        before = trio.current_time()
        now = conn.now()
        after = trio.current_time()
        assert before <= now <= after  # the same clock, offset and all, not perf_counter()
    finally:
        conn.close()
        peer.close()


async def test_now_follows_a_mock_clock(autojump_clock: MockClock) -> None:
    conn, peer = _connection()
    try:
        assert conn.now() == trio.current_time()
        await trio.sleep(30)  # autojumped: no real time passes
        assert conn.now() == trio.current_time() >= 30
    finally:
        conn.close()
        peer.close()
