"""Regressions from a review of the multiplexing pool: each test failed before its fix."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from mosnpy_toy.codec import ToyCodec, ToyFrame

import mosnpy.upstream.dial as dial_module
from mosnpy.protocol.xprotocol import DecodeError
from mosnpy.upstream.errors import ConnectFailedError
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import UpstreamResetError
from tests.support.toy import call, toy_pool

LOCALHOST = "127.0.0.1"


async def test_call_cancelled_mid_send_does_not_poison_the_connection() -> None:
    seen: list[object] = []

    async def provider(stream: trio.SocketStream) -> None:
        await trio.sleep(0.3)  # not reading yet: the big frame stalls half way
        codec, buf = ToyCodec(), bytearray()
        try:
            async for data in stream:
                buf += data
                while (frame := codec.decode(buf)) is not None:
                    seen.append(frame.request_id)
                    await stream.send_all(codec.encode(ToyFrame(2, frame.request_id, {}, b"ok")))
        except DecodeError as exc:
            seen.append(exc)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, provider, 0, host=LOCALHOST))
        port = listeners[0].socket.getsockname()[1]
        pool = toy_pool(Host(f"{LOCALHOST}:{port}"), nursery, keepalive_interval=0)
        with trio.move_on_after(0.15):  # e.g. the request's timeout
            await call(pool, ToyFrame(0, 1, {"method": "echo"}, b"x" * (8 << 20)))
        answer = None
        with trio.move_on_after(1.5):
            try:
                answer = await call(pool, ToyFrame(0, 2, {"method": "echo"}, b"small"))
            except UpstreamResetError:
                answer = ToyFrame(2, 2)  # acceptable: a fast reset, which the proxy retries
        nursery.cancel_scope.cancel()
    # Either the poisoned connection was dropped (the second call got an answer on a
    # fresh one) or the call failed fast; hanging until the timeout is the bug.
    assert answer is not None, seen


async def test_calls_waiting_on_a_failing_connect_fail_together(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Five calls queued behind one connect that fails: they share its outcome at once
    (one dial, all failed when it did), instead of dialing again one after another.
    Virtual time, so a loaded machine cannot stretch it."""
    dials = 0

    async def slow_refused(address: str, *, timeout: float) -> object:
        nonlocal dials
        dials += 1
        await trio.sleep(0.3)
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(dial_module, "connect", slow_refused)
    failed_at: list[float] = []
    async with trio.open_nursery() as nursery:
        pool = toy_pool(Host(f"{LOCALHOST}:1"), nursery, keepalive_interval=0)
        start = trio.current_time()

        async def one(i: int) -> None:
            with pytest.raises(ConnectFailedError):
                await call(pool, ToyFrame(0, i, {}))
            failed_at.append(trio.current_time() - start)

        with trio.fail_after(4):
            async with trio.open_nursery() as calls:
                for i in range(5):
                    calls.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert dials == 1, dials
    assert failed_at == [pytest.approx(0.3)] * 5, failed_at
