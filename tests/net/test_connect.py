"""connect(): IP literals, host names looked up off the event loop, unix paths."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import trio

from mosnpy.net.connection import _lookup, connect
from mosnpy.net.listener import Listener


async def test_host_name_lookup_gives_a_loopback_address() -> None:
    addresses = await _lookup("localhost", 8080)
    assert addresses
    for _family, sockaddr in addresses:
        assert isinstance(sockaddr, tuple)
        assert ipaddress.ip_address(sockaddr[0]).is_loopback
        assert sockaddr[1] == 8080


async def test_connect_by_ip_and_unix_path(tmp_path: Path) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(await stream.receive_some())

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo, listeners)
        conn = await connect(f"127.0.0.1:{port}", timeout=2)
        await conn.send_all(b"hi")
        assert await conn.receive_some() == b"hi"
        conn.close()
        nursery.cancel_scope.cancel()


async def test_unix_listener_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        Listener("u", str(path), []).bind()
    assert path.read_text() == "precious"
