"""HTTP/2 abuse against a real mosnpy, over real sockets on 127.0.0.1.

mosnpy runs in-process with an ``Http2`` listener routed to the stdlib HTTP/1.1 test
backend (Http2 → Http1 conversion, so the backend needs no HTTP/2).  Each test mounts one
attack from a raw socket — frames built with h2 and hyperframe, read back with
hyperframe — and checks two things: the abusive connection is told off (GOAWAY, or
RST_STREAM for a stalled stream) and closed; and a well-behaved HTTP/2 client on
another connection to the same listener keeps getting correct answers during the attack
and after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import attrs
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import trio
import trio.lowlevel
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

import mosnpy
from mosnpy.config.models import MosnConfig
from mosnpy.runtime.server import MosnServer
from tests.support import PyBackend

pytestmark = pytest.mark.timeout(60)

Codes = h2.errors.ErrorCodes
SC = h2.settings.SettingCodes
LOCALHOST = "127.0.0.1"


# -- mosnpy ------------------------------------------------------------------------------------


def h2_config(backend_port: int, **h2_options: object) -> MosnConfig:
    """An ``Http2`` listener, everything routed to the HTTP/1 backend; ``h2_options`` go
    to ``extend_config.Http2`` (the stream connection's :class:`H2Settings`)."""
    config = (
        mosnpy.ProxyBuilder(graceful_timeout=1)
        .cluster("backend", [f"{LOCALHOST}:{backend_port}"], connect_timeout=2)
        .route(prefix="/", cluster="backend", timeout=10)
        .listener("h2", f"{LOCALHOST}:0", protocol="Http2")
        .build()
    )
    (server,) = config.servers
    (listener,) = server.listeners
    (chain,) = listener.filter_chains
    *others, proxy = chain.filters
    assert proxy.type == "proxy"
    proxy = attrs.evolve(
        proxy,
        config={**proxy.config, "upstream_protocol": "Http1", "extend_config": {"Http2": dict(h2_options)}},
    )
    chain = attrs.evolve(chain, filters=(*others, proxy))
    listener = attrs.evolve(listener, filter_chains=(chain,))
    return attrs.evolve(config, servers=(attrs.evolve(server, listeners=(listener,)),))


@asynccontextmanager
async def h2_proxy(backend: PyBackend, **h2_options: object) -> AsyncIterator[int]:
    """A serving mosnpy; yields the listener's port."""
    server = MosnServer(h2_config(backend.port, **h2_options))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server.listener("h2").port
        server.shutdown()


# -- a well-behaved client -------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class H2Client:
    """A plain HTTP/2 client: one request at a time, flow control honoured."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()

    @classmethod
    async def connect(cls, port: int) -> H2Client:
        client = cls(await trio.open_tcp_stream(LOCALHOST, port))
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def request(self, path: str, *, method: str = "GET", body: bytes = b"") -> Response:
        conn = self.conn
        sid = conn.get_next_available_stream_id()
        head = [(":method", method), (":scheme", "http"), (":authority", "backend.test"), (":path", path)]
        if body:
            head.append(("content-length", str(len(body))))
        conn.send_headers(sid, head, end_stream=not body)
        if body:
            conn.send_data(sid, body, end_stream=True)  # small bodies: within any window
        await self.flush()
        status, headers, received = 0, {}, bytearray()
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("the proxy closed a well-behaved client's connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"GOAWAY to a well-behaved client: {event}")
                if getattr(event, "stream_id", None) != sid:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers or ())
                    status = int(headers[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    received += event.data or b""
                    conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"stream reset for a well-behaved client: {event}")
                elif isinstance(event, h2.events.StreamEnded):
                    await self.flush()
                    return Response(status, headers, bytes(received))
            await self.flush()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def echo_check(client: H2Client, i: int) -> None:
    """One POST /echo, checked to the byte."""
    body = b"ping %d " % i * (1 + i % 7)
    resp = await client.request(f"/echo?n={i}", method="POST", body=body)
    assert resp.status == 200, resp
    assert resp.body == body
    assert resp.headers[b"x-echo-path"] == f"/echo?n={i}".encode()
    assert resp.headers[b"x-backend"] == b"default"


@dataclass
class Bystander:
    """A normal client on its own connection, asking while an attack runs."""

    port: int
    answered: int = 0
    started: trio.Event = field(default_factory=trio.Event)
    stop: trio.Event = field(default_factory=trio.Event)

    async def progress(self, n: int = 3, timeout: float = 10.0) -> None:
        """Wait until ``n`` more correct answers came back."""
        target = self.answered + n
        with trio.fail_after(timeout):
            while self.answered < target:
                await trio.sleep(0.005)

    async def run(self) -> None:
        client = await H2Client.connect(self.port)
        try:
            while not self.stop.is_set():
                await echo_check(client, self.answered)
                self.answered += 1
                self.started.set()
                await trio.sleep(0.005)
            # the same connection still works after the attack
            for _ in range(3):
                await echo_check(client, self.answered)
                self.answered += 1
        finally:
            await client.aclose()


# -- the attacker --------------------------------------------------------------------------------


class Attacker:
    """A raw HTTP/2 connection that records every frame the proxy sends back."""

    def __init__(self, stream: trio.SocketStream, settings: dict[int, int] | None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.frames: list[Frame] = []
        self.closed = trio.Event()
        self.arrived = trio.Event()
        self.broken_pipe = False
        self._buf = bytearray()

    async def send(self, data: bytes) -> None:
        """Send, unless the proxy has already hung up."""
        if self.closed.is_set() or self.broken_pipe:
            return
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken_pipe = True

    async def read(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self._buf += data
                self._parse()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a reset after what the proxy sent is still a close
        finally:
            self.closed.set()
            self.arrived.set()

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
            if len(buf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(buf[9 : 9 + length])))
            del buf[: 9 + length]
            self.frames.append(frame)
            self.arrived.set()
            self.arrived = trio.Event()

    def of_type(self, kind: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if isinstance(f, kind)]

    @property
    def goaway(self) -> GoAwayFrame | None:
        found = self.of_type(GoAwayFrame)
        assert len(found) <= 1, found
        return found[0] if found else None  # type: ignore[return-value]

    async def wait_for(self, found: Callable[[], object], timeout: float) -> None:
        with trio.fail_after(timeout):
            while not found():
                if self.closed.is_set():
                    return
                await self.arrived.wait()


@asynccontextmanager
async def attacker(port: int, settings: dict[int, int] | None = None) -> AsyncIterator[Attacker]:
    a = Attacker(await trio.open_tcp_stream(LOCALHOST, port), settings)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.read)
        await a.send(a.conn.data_to_send())
        try:
            yield a
        finally:
            await a.stream.aclose()


def request_head(path: str = "/", method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "backend.test"), (":path", path)]


async def assert_told_off_and_closed(a: Attacker, code: int, timeout: float = 10.0) -> GoAwayFrame:
    with trio.fail_after(timeout):
        await a.closed.wait()
    goaway = a.goaway
    assert goaway is not None, f"no GOAWAY; frames: {a.frames[-5:]}"
    assert goaway.error_code == code, goaway
    return goaway


@asynccontextmanager
async def under_attack(port: int) -> AsyncIterator[Bystander]:
    """A bystander asking all along; checked during (at least one answer) and after."""
    bystander = Bystander(port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bystander.run)
        with trio.fail_after(10):
            await bystander.started.wait()
        before = bystander.answered
        yield bystander
        # at least one more correct answer once the attack is over, on the old connection
        with trio.fail_after(10):
            while bystander.answered <= before:
                await trio.sleep(0.01)
        bystander.stop.set()
    # and a fresh connection is served as well
    client = await H2Client.connect(port)
    try:
        for i in range(3):
            await echo_check(client, 1000 + i)
    finally:
        await client.aclose()


# -- the attacks -------------------------------------------------------------------------------


async def test_normal_traffic_baseline(py_backend: PyBackend) -> None:
    with trio.fail_after(20):
        async with h2_proxy(py_backend) as port:
            client = await H2Client.connect(port)
            for i in range(5):
                await echo_check(client, i)
            big = await client.request("/chunked?n=20&size=10000")
            assert big.status == 200 and len(big.body) == 200_000
            await client.aclose()


async def test_rapid_reset(py_backend: PyBackend) -> None:
    """CVE-2023-44487: HEADERS + RST_STREAM, 1000 times, as fast as the socket takes it
    (the default limit: 200 resets a second)."""
    with trio.fail_after(40):
        async with h2_proxy(py_backend) as port, under_attack(port) as bystander, attacker(port) as a:
            conn, sid, sent = a.conn, 1, 0

            async def open_and_reset(n: int) -> None:
                nonlocal sid, sent
                for _ in range(n):
                    conn.send_headers(sid, request_head(f"/echo?rr={sid}"), end_stream=True)
                    conn.reset_stream(sid, Codes.CANCEL)
                    sid += 2
                    sent += 1
                await a.send(conn.data_to_send())

            # below the limit (~100 a second for 1.5 s): tolerated, and others are served
            for _ in range(15):
                await open_and_reset(10)
                await trio.sleep(0.1)
            assert a.goaway is None and not a.closed.is_set()
            await bystander.progress()
            # then the flood
            for _ in range(20):
                await open_and_reset(50)
                await trio.lowlevel.checkpoint()
            goaway = await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)
            assert b"rapid reset" in goaway.additional_data
            # the GOAWAY names a stream well short of the thousand opened
            assert 300 < goaway.last_stream_id < 2 * sent
            assert a.closed.is_set()


async def test_ping_flood(py_backend: PyBackend) -> None:
    with trio.fail_after(40):
        async with (
            h2_proxy(py_backend, max_control_frames_per_second=200) as port,
            under_attack(port) as bystander,
            attacker(port) as a,
        ):
            ping = PingFrame(0, b"floodme!").serialize()
            for _ in range(15):  # ~100 a second: fine
                await a.send(ping * 10)
                await trio.sleep(0.1)
            assert a.goaway is None and len(a.of_type(PingFrame)) == 150
            await bystander.progress()
            for _ in range(20):
                await a.send(ping * 100)
                await trio.lowlevel.checkpoint()
            await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)
            acks = a.of_type(PingFrame)
            assert all("ACK" in f.flags for f in acks)
            assert len(acks) < 2000  # cut off well before the end of the flood


async def test_settings_flood(py_backend: PyBackend) -> None:
    with trio.fail_after(40):
        async with (
            h2_proxy(py_backend, max_control_frames_per_second=200) as port,
            under_attack(port) as bystander,
            attacker(port) as a,
        ):
            settings = SettingsFrame(0, settings={SC.INITIAL_WINDOW_SIZE: 65535}).serialize()
            for _ in range(15):  # ~100 a second: fine
                await a.send(settings * 10)
                await trio.sleep(0.1)
            assert a.goaway is None
            assert len([f for f in a.of_type(SettingsFrame) if "ACK" in f.flags]) >= 150
            await bystander.progress()
            for _ in range(20):
                await a.send(settings * 100)
                await trio.lowlevel.checkpoint()
            await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)


async def test_ping_flood_at_the_default_limit(py_backend: PyBackend) -> None:
    """No extend_config: the default (1000 control frames a second) holds too."""
    with trio.fail_after(40):
        async with h2_proxy(py_backend) as port, under_attack(port), attacker(port) as a:
            ping = PingFrame(0, b"floodme!").serialize()
            for _ in range(10):
                await a.send(ping * 500)
            await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)


async def test_continuation_flood(py_backend: PyBackend) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block:
    first dripped (others are served meanwhile), then in a rush."""
    with trio.fail_after(40):
        async with h2_proxy(py_backend) as port, under_attack(port) as bystander, attacker(port) as a:
            block = Encoder().encode(request_head("/echo?cont"))
            head = HeadersFrame(1, block)
            head.flags.add("END_STREAM")  # no END_HEADERS
            filler = ContinuationFrame(1, b"\x40\x05x-pad\x0aaaaaaaaaaa" * 100).serialize()
            await a.send(head.serialize())
            for _ in range(30):
                await a.send(filler)
                await trio.sleep(0.02)
            assert a.goaway is None and not a.closed.is_set()
            await bystander.progress()
            for _ in range(20):
                await a.send(filler * 10)
            await assert_told_off_and_closed(a, Codes.PROTOCOL_ERROR)
            # no answer ever started on stream 1
            assert [f for f in a.frames if f.stream_id == 1] == []


async def test_hpack_bomb(py_backend: PyBackend) -> None:
    """A few KB on the wire that decode into ~300 KB of headers."""
    with trio.fail_after(40):
        async with (
            h2_proxy(py_backend, max_header_list_size=16384) as port,
            under_attack(port) as bystander,
            attacker(port) as a,
        ):
            encoder = Encoder()
            bomb = request_head("/echo?bomb") + [("x-bomb", "b" * 3000)] * 100
            block = encoder.encode(bomb)
            assert len(block) < 3300
            # the block in two frames, with a pause between them
            head = HeadersFrame(1, block[:1000])
            head.flags.add("END_STREAM")
            await a.send(head.serialize())
            await bystander.progress()
            assert a.goaway is None and not a.closed.is_set()
            rest = ContinuationFrame(1, block[1000:])
            rest.flags.add("END_HEADERS")
            await a.send(rest.serialize())
            await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)
            assert [f for f in a.frames if f.stream_id == 1] == []


def whole_request(sid: int, block: bytes) -> bytes:
    """A HEADERS frame that carries a whole request (END_HEADERS, END_STREAM)."""
    head = HeadersFrame(sid, block)
    head.flags.add("END_HEADERS")
    head.flags.add("END_STREAM")
    return head.serialize()


async def test_malformed_requests_are_stream_errors(py_backend: PyBackend) -> None:
    """Request heads HTTP/2 forbids (RFC 9113 §8.2/§8.3) get RST_STREAM(PROTOCOL_ERROR)
    on their own stream; a valid request on the same connection is still answered, and
    a flood of malformed heads is rapid reset by another name: GOAWAY."""
    malformed = [
        [*request_head(), ("X-Upper", "1")],
        [*request_head(), ("connection", "keep-alive")],
        [*request_head(), ("x-a", "split\r\nx-b: 1")],
        [(":method", "GET"), (":path", "/"), (":authority", "backend.test")],  # no :scheme
        [*request_head(), ("host", "other.test")],  # :authority and host differ
    ]
    with trio.fail_after(40):
        async with h2_proxy(py_backend) as port, under_attack(port), attacker(port) as a:
            encoder = Encoder()
            sid = 1
            for block in malformed:
                await a.send(whole_request(sid, encoder.encode(block)))
                sid += 2
            await a.send(whole_request(sid, encoder.encode(request_head("/echo?good"))))

            def answered() -> bool:
                return any(f.stream_id == sid and "END_STREAM" in f.flags for f in a.frames)

            await a.wait_for(answered, 10)
            resets = {f.stream_id: f.error_code for f in a.of_type(RstStreamFrame)}
            assert resets == {1 + 2 * i: Codes.PROTOCOL_ERROR for i in range(len(malformed))}
            assert a.goaway is None and not a.closed.is_set()
            head = Decoder().decode(
                next(f for f in a.of_type(HeadersFrame) if f.stream_id == sid).data, raw=True
            )
            assert (b":status", b"200") in head
            # the same, as a flood: told off like rapid reset
            for _ in range(20):
                burst = b""
                for _ in range(50):
                    sid += 2
                    burst += whole_request(sid, encoder.encode(malformed[0]))
                await a.send(burst)
            goaway = await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)
            assert b"malformed" in goaway.additional_data


async def test_zero_window_stall(py_backend: PyBackend) -> None:
    """A client that asks for a big answer and never opens its window: the stream is
    reset after stall_timeout; the connection itself stays up."""
    stall = 1.0
    with trio.fail_after(40):
        async with (
            h2_proxy(py_backend, stall_timeout=stall) as port,
            under_attack(port),
            attacker(port, settings={SC.INITIAL_WINDOW_SIZE: 0}) as a,
        ):
            a.conn.send_headers(1, request_head("/chunked?n=20&size=10000"), end_stream=True)
            await a.send(a.conn.data_to_send())
            started = trio.current_time()

            def reset_seen() -> bool:
                return any(f.stream_id == 1 for f in a.of_type(RstStreamFrame))

            await a.wait_for(reset_seen, timeout=stall + 8)
            elapsed = trio.current_time() - started
            (rst,) = [f for f in a.of_type(RstStreamFrame) if f.stream_id == 1]
            assert rst.error_code == Codes.CANCEL
            assert elapsed >= stall * 0.9, elapsed
            assert not a.closed.is_set()  # a stall costs the stream, not the connection
            # the answer had started (its head), and not one byte of body went out
            heads = [f for f in a.of_type(HeadersFrame) if f.stream_id == 1]
            assert len(heads) == 1 and "END_STREAM" not in heads[0].flags
            assert [f for f in a.frames if f.stream_id == 1 and f.type == 0] == []


async def test_every_attack_in_a_row_on_one_listener(py_backend: PyBackend) -> None:
    """All of them against one proxy, one bystander for the whole run."""
    with trio.fail_after(50):
        async with h2_proxy(
            py_backend, max_control_frames_per_second=200, max_header_list_size=16384
        ) as port:
            async with under_attack(port) as bystander:
                for attack in range(4):
                    async with attacker(port) as a:
                        if attack == 0:
                            for sid in range(1, 1001, 2):
                                a.conn.send_headers(sid, request_head(), end_stream=True)
                                a.conn.reset_stream(sid, Codes.CANCEL)
                            await a.send(a.conn.data_to_send())
                        elif attack == 1:
                            await a.send(PingFrame(0, b"12345678").serialize() * 1000)
                        elif attack == 2:
                            await a.send(SettingsFrame(0, settings={}).serialize() * 1000)
                        else:
                            block = Encoder().encode(request_head() + [("x-bomb", "c" * 3000)] * 100)
                            head = HeadersFrame(1, block)
                            head.flags.add("END_HEADERS")
                            await a.send(head.serialize())
                        await assert_told_off_and_closed(a, Codes.ENHANCE_YOUR_CALM)
                    answered = bystander.answered
                    with trio.fail_after(10):
                        while bystander.answered == answered:
                            await trio.sleep(0.01)
            assert bystander.answered >= 8


async def test_slow_but_steady_reader_is_not_a_stall(py_backend: PyBackend) -> None:
    """A client that reads slowly: it opens its window 2,000 bytes at a time, five times
    a second.  Its answer takes longer than stall_timeout but never stops moving, so
    it must not be reset as stalled."""
    stall = 1.0
    size = 40_000
    with trio.fail_after(40):
        async with h2_proxy(py_backend, stall_timeout=stall) as port:
            stream = await trio.open_tcp_stream(LOCALHOST, port)
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            conn.local_settings = h2.settings.Settings(
                client=True, initial_values={SC.INITIAL_WINDOW_SIZE: 0}
            )
            conn.initiate_connection()
            conn.send_headers(1, request_head(f"/chunked?n=1&size={size}"), end_stream=True)
            await stream.send_all(conn.data_to_send())
            received, ended, reset = 0, False, None
            started = trio.current_time()
            next_read = started
            while not ended and reset is None:
                with trio.move_on_at(next_read):
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                            received += len(event.data or b"")
                        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                            ended = True
                        elif isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                            reset = event
                    continue
                # the reader takes 2,000 more bytes
                next_read += 0.2
                conn.increment_flow_control_window(2000, 1)
                await stream.send_all(conn.data_to_send())
            elapsed = trio.current_time() - started
            await stream.aclose()
            assert reset is None, f"reset after {elapsed:.2f}s with {received} of {size} bytes read"
            assert ended and received == size
            assert elapsed > stall  # the answer really took longer than stall_timeout
