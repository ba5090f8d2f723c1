"""The ``original_dst`` listener filter and ``use_original_dst`` hand-over, on 127.0.0.1.

No iptables here: a stand-in listener filter plays the redirect (it records an original
destination as the real filter would), and the sockaddr parsing is fed crafted bytes.
The real ``REDIRECT`` + ``SO_ORIGINAL_DST`` path runs in a network namespace in
tests/e2e/test_sidecar.py.
"""

from __future__ import annotations

import socket
from typing import cast

import trio

from mosnpy.config import parse_config
from mosnpy.net import AcceptedSocket, Connection, FilterStatus, Listener
from mosnpy.net.original_dst import (
    ORIGINAL_DST,
    SO_ORIGINAL_DST,
    OriginalDstFilter,
    current_original_dst,
    original_destination,
)
from mosnpy.net.registry import LISTENER_FILTERS
from mosnpy.runtime import MosnServer
from tests.net.test_listener import Factory, echo_once, open_client, serving

LOCALHOST = "127.0.0.1"


class FakeRedirect:
    """A listener filter that says every connection was going to ``dst``."""

    def __init__(self, dst: str) -> None:
        self.dst = dst

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        accepted.values[ORIGINAL_DST] = self.dst
        accepted.local_address = self.dst
        return FilterStatus.CONTINUE


class FakeSocket:
    """Answers getsockopt from a table ``{(level, option): bytes or OSError}``."""

    def __init__(self, family: int, answers: dict[tuple[int, int], bytes | OSError]) -> None:
        self.family = family
        self.answers = answers
        self.asked: list[tuple[int, int]] = []

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        self.asked.append((level, option))
        answer = self.answers.get((level, option), OSError(92, "Protocol not available"))
        if isinstance(answer, OSError):
            raise answer
        return answer


def sockaddr_in(ip: str, port: int) -> bytes:
    return socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + socket.inet_aton(ip) + bytes(8)


def sockaddr_in6(ip: str, port: int) -> bytes:
    addr = socket.inet_pton(socket.AF_INET6, ip)
    return socket.AF_INET6.to_bytes(2, "little") + port.to_bytes(2, "big") + bytes(4) + addr + bytes(4)


# --------------------------------------------------------------------------- the filter


def test_sockaddr_in_and_in6_are_read_as_host_port() -> None:
    v4 = FakeSocket(socket.AF_INET, {(socket.SOL_IP, SO_ORIGINAL_DST): sockaddr_in("10.1.2.3", 8080)})
    assert original_destination(cast(socket.socket, v4)) == "10.1.2.3:8080"
    v6 = FakeSocket(socket.AF_INET6, {(socket.IPPROTO_IPV6, 80): sockaddr_in6("fd00::1", 443)})
    assert original_destination(cast(socket.socket, v6)) == "[fd00::1]:443"
    # An IPv4 client of a dual-stack socket: the IPv6 ask fails, the IPv4 one answers.
    mapped = FakeSocket(socket.AF_INET6, {(socket.SOL_IP, SO_ORIGINAL_DST): sockaddr_in("10.0.0.9", 80)})
    assert original_destination(cast(socket.socket, mapped)) == "10.0.0.9:80"
    assert mapped.asked == [(socket.IPPROTO_IPV6, 80), (socket.SOL_IP, SO_ORIGINAL_DST)]
    untracked = FakeSocket(socket.AF_INET, {})
    assert original_destination(cast(socket.socket, untracked)) is None
    unix = FakeSocket(socket.AF_UNIX, {})
    assert original_destination(cast(socket.socket, unix)) is None and unix.asked == []


async def test_filter_records_a_redirected_destination_only() -> None:
    redirected = FakeSocket(
        socket.AF_INET, {(socket.SOL_IP, SO_ORIGINAL_DST): sockaddr_in("127.0.0.1", 9000)}
    )
    accepted = AcceptedSocket("127.0.0.1:15001", "127.0.0.1:40000", cast(socket.socket, redirected))
    assert await OriginalDstFilter({}).on_accept(accepted) is FilterStatus.CONTINUE
    assert accepted.values == {ORIGINAL_DST: "127.0.0.1:9000"}
    assert accepted.local_address == "127.0.0.1:9000"
    # Not redirected: the kernel names the listener's own address; recording it would
    # make an ORIGINAL_DST cluster connect back to this listener.
    direct = FakeSocket(socket.AF_INET, {(socket.SOL_IP, SO_ORIGINAL_DST): sockaddr_in("127.0.0.1", 15001)})
    accepted = AcceptedSocket("127.0.0.1:15001", "127.0.0.1:40001", cast(socket.socket, direct))
    assert await OriginalDstFilter({}).on_accept(accepted) is FilterStatus.CONTINUE
    assert accepted.values == {} and accepted.local_address == "127.0.0.1:15001"


async def test_filter_on_a_real_connection_that_was_not_redirected() -> None:
    factory = Factory()
    lst = Listener(
        "od", f"{LOCALHOST}:0", [factory], listener_filters=[OriginalDstFilter()], idle_timeout=None
    )
    async with serving(lst):
        stream = await open_client(lst)
        assert await echo_once(stream) == b"ping\n"
        conn = factory.filters[0].conn
        assert conn is not None
        assert ORIGINAL_DST not in conn.values
        assert conn.local_address == lst.address
        await stream.aclose()


def test_original_dst_is_a_registered_listener_filter() -> None:
    assert LISTENER_FILTERS.get("original_dst") is OriginalDstFilter
    assert LISTENER_FILTERS.origin("original_dst") == "mosnpy"


# --------------------------------------------------------------------------- hand-over


class SeesOriginalDst:
    """A read filter that records what the connection's tasks see."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.seen: list[str | None] = []

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.conn = connection
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        assert self.conn is not None
        self.seen.append(current_original_dst.get())
        await self.conn.send_all(bytes(buffer))
        del buffer[:]
        return FilterStatus.CONTINUE


class SeesFactory:
    def __init__(self) -> None:
        self.filters: list[SeesOriginalDst] = []

    def create_filter_chain(self, manager: object) -> None:
        f = SeesOriginalDst()
        self.filters.append(f)
        manager.add_read_filter(f)  # type: ignore[attr-defined]


async def test_use_original_dst_hands_the_connection_to_the_owner() -> None:
    outbound_factory, virtual_factory = Factory(), SeesFactory()
    virtual = Listener("virtual", "0.0.0.0:9999", [virtual_factory], bind_port=False, idle_timeout=None)
    outbound = Listener(
        "outbound",
        f"{LOCALHOST}:0",
        [outbound_factory],
        listener_filters=[FakeRedirect("127.0.0.1:9999")],
        use_original_dst=True,
        idle_timeout=None,
    )
    outbound.find_listener = lambda address: virtual if address.endswith(":9999") else None
    async with serving(virtual), serving(outbound):
        assert virtual.address == "0.0.0.0:9999"  # nothing bound
        stream = await open_client(outbound)
        assert await echo_once(stream) == b"ping\n"
        assert outbound_factory.filters == [] and not outbound.connections
        (conn,) = virtual.connections
        assert conn.values[ORIGINAL_DST] == "127.0.0.1:9999"
        assert conn.local_address == "127.0.0.1:9999"
        assert virtual_factory.filters[0].seen == ["127.0.0.1:9999"]  # the tasks know it too
        assert (virtual.connections_total, outbound.connections_total) == (1, 1)
        await stream.aclose()
        with trio.fail_after(2):
            while virtual.connections or virtual.admitted:
                await trio.sleep(0.01)


async def test_without_an_owner_the_connection_stays() -> None:
    factory = Factory()
    stopped = Listener("stopped", "0.0.0.0:9998", [Factory()], bind_port=False)
    outbound = Listener(
        "outbound",
        f"{LOCALHOST}:0",
        [factory],
        listener_filters=[FakeRedirect("127.0.0.1:9998")],
        use_original_dst=True,
        idle_timeout=None,
    )
    owners = {"none": None, "stopped": stopped}
    async with serving(outbound):
        for case in ("none", "stopped"):  # no listener there; one that is not serving
            outbound.find_listener = lambda address, case=case: owners[case]
            stream = await open_client(outbound)
            assert await echo_once(stream) == b"ping\n", case
            conn = factory.filters[-1].conn
            assert conn is not None and conn.values[ORIGINAL_DST] == "127.0.0.1:9998"
            await stream.aclose()
        assert len(factory.filters) == 2


async def test_a_listener_without_use_original_dst_keeps_its_connections() -> None:
    factory = Factory()
    other = Listener("other", "0.0.0.0:9997", [Factory()], bind_port=False)
    lst = Listener(
        "plain",
        f"{LOCALHOST}:0",
        [factory],
        listener_filters=[FakeRedirect("127.0.0.1:9997")],
        idle_timeout=None,
    )
    lst.find_listener = lambda address: other
    async with serving(other), serving(lst):
        stream = await open_client(lst)
        assert await echo_once(stream) == b"ping\n"
        assert len(lst.connections) == 1 and not other.connections
        await stream.aclose()


async def test_a_virtual_listener_stops_when_drained() -> None:
    virtual = Listener("virtual", "0.0.0.0:9996", [Factory()], bind_port=False)
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(virtual.serve)
            await virtual.drain(1.0)
    with socket.socket() as sock:
        assert not virtual.adopt(sock, AcceptedSocket("", ""))  # no longer accepting


# --------------------------------------------------------------------------- the server


def sidecar_config() -> dict[str, object]:
    def listener(name: str, address: str, **extra: object) -> dict[str, object]:
        return {
            "name": name,
            "address": address,
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}],
            **extra,
        }

    return {
        "servers": [
            {
                "listeners": [
                    listener("outbound", f"{LOCALHOST}:0", use_original_dst=True),
                    listener("any_8080", "0.0.0.0:8080", bind_port=False),
                    listener("lo_8081", "127.0.0.1:8081", bind_port=False),
                    listener("any_8081", "0.0.0.0:8081", bind_port=False),
                ]
            }
        ],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]},
    }


def test_server_finds_the_listener_that_owns_an_address() -> None:
    server = MosnServer(parse_config(sidecar_config()))
    assert server.find_listener("127.0.0.1:8080") is server.listener("any_8080")
    assert server.find_listener("10.0.0.1:8080") is server.listener("any_8080")
    assert server.find_listener("127.0.0.1:8081") is server.listener("lo_8081")  # exact first
    assert server.find_listener("10.0.0.1:8081") is server.listener("any_8081")
    assert server.find_listener("127.0.0.1:9000") is None
    outbound = server.listener("outbound")
    assert outbound.use_original_dst and outbound.find_listener == server.find_listener
    # MOSN runs the original_dst filter on a use_original_dst listener unasked.
    assert [type(f) for f in outbound.listener_filters] == [OriginalDstFilter]
    assert not server.listener("any_8080").bind_port
    server.bind()  # binds the outbound listener only
    assert server.listener("any_8080").address == "0.0.0.0:8080"
    server.listener("outbound").stop_accepting()
