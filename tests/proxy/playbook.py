"""A playbook for the proxy's phase machine: feed events, assert the phase trace and the bytes out.

Theory of operation
-------------------
mitmproxy tests its layers with a ``Playbook``: feed an event, assert what comes out.
This is the same idea for :class:`~mosnpy.proxy.stream_downstream.StreamDownStream`,
with no socket anywhere:

* downstream, a real :class:`~mosnpy.proxy.stream_server.StreamServer` speaking the toy
  xprotocol (``examples/custom_protocol``) over a :class:`MemoryConnection`.  The test
  sends toy frames (:meth:`Playbook.send`) or neutral stream events
  (:meth:`Playbook.feed`) and reads back the toy frames the proxy wrote
  (:meth:`Playbook.replies`);
* upstream, real clusters, load balancers and
  :class:`~mosnpy.upstream.multiplex.MultiplexPool`\\ s whose only fake part is the dial:
  each connect is scripted (:attr:`Playbook.fail_connects`, :attr:`Playbook.connect_time`)
  and yields another :class:`MemoryConnection`.  The request frames sent upstream are
  real bytes (:meth:`Playbook.upstream_requests`); answers (:meth:`Playbook.respond`),
  raw events (:meth:`Playbook.deliver`) and a lost connection (:meth:`Playbook.drop`)
  reach the machine through the pool's own reader;
* every stream the server starts is a :class:`TracedDownStream`, which records the
  phases it walks (:meth:`Playbook.trace`) and, in :func:`recording_jumps`, every
  ``(src, dst)`` step;
* time is the test's ``autojump_clock``: after each step the playbook waits until every
  task is blocked (no time passes), and :meth:`Playbook.sleep` moves the clock, firing
  timeouts, retry back-offs and sleeping filters in deadline order, instantly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import trio
import trio.testing
from mosnpy_toy.codec import ToyCodec, ToyFrame

from mosnpy.config.models import (
    ClusterConfig,
    HeaderMatcherConfig,
    HostConfig,
    ProxyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    VirtualHostConfig,
)
from mosnpy.net.connection import ConnectionClosedError
from mosnpy.net.events import ConnectionEvent
from mosnpy.protocol.api import RequestReceived, StreamEvent
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.xprotocol.registry import descriptor
from mosnpy.proxy import stream_server
from mosnpy.proxy.context import ProxyContext
from mosnpy.proxy.downstream import _HANDLER_NAMES, Step
from mosnpy.proxy.phases import Phase, allowed
from mosnpy.proxy.stream_downstream import StreamDownStream
from mosnpy.proxy.stream_server import StreamServer
from mosnpy.router import RouteTable
from mosnpy.stream.chain import StreamFilterChain
from mosnpy.stream.filter import FilterPhase, StreamFilterStatus
from mosnpy.stream.io import flush_touched
from mosnpy.stream.stream import Stream
from mosnpy.upstream.cluster import Cluster, ClusterManager
from mosnpy.upstream.errors import ConnectFailedError
from mosnpy.upstream.host import Host
from mosnpy.upstream.multiplex import MultiplexConnection, MultiplexPool

P = Phase
TOY = descriptor("toy")
_CODEC = ToyCodec()

HOST1 = "10.0.0.1:20880"
HOST2 = "10.0.0.2:20880"

#: The walks most tests are made of.
HEAD = [
    P.INIT,
    P.DOWN_FILTER,
    P.MATCH_ROUTE,
    P.DOWN_FILTER_AFTER_ROUTE,
    P.CHOOSE_HOST,
    P.DOWN_FILTER_AFTER_CHOOSE_HOST,
]
SEND = [P.DOWN_RECV_HEADER, P.DOWN_RECV_DATA, P.DOWN_RECV_TRAILER, P.ONEWAY, P.WAIT_NOTIFY]
ANSWER = [P.UP_FILTER, P.UP_RECV_HEADER, P.UP_RECV_DATA, P.UP_RECV_TRAILER, P.END]
LOCAL_REPLY = [P.UP_FILTER, P.UP_RECV_HEADER, P.END]
CALL = HEAD + SEND + ANSWER


# -- toy frames -------------------------------------------------------------------------


def request(
    rid: int = 7, service: str = "svc", body: bytes = b"hi", *, oneway: bool = False, **headers: str
) -> ToyFrame:
    """A toy request (kind 1 when ``oneway``) from the client, with its own id ``rid``."""
    return ToyFrame(1 if oneway else 0, rid, {"service": service, "method": "m", **headers}, body)


def response(rid: int, body: bytes = b"", status: int = 0, **headers: str) -> ToyFrame:
    return ToyFrame(2, rid, dict(headers), body, status)


def hijack(rid: int, status: int, message: str) -> ToyFrame:
    """The toy codec's local reply (its ``hijack`` frame)."""
    return ToyFrame(2, rid, {"error": message}, b"", status)


def decode(data: bytes) -> list[ToyFrame]:
    buf = bytearray(data)
    frames = []
    while (frame := _CODEC.decode(buf)) is not None:
        frames.append(frame)
    assert not buf, f"half a frame: {bytes(buf)!r}"
    return frames


# -- config -----------------------------------------------------------------------------


def rpc_route(service: str, cluster: str, **action: Any) -> RouteConfig:
    """A route for toy requests to ``service`` (RPC routes match a header, not a path)."""
    return RouteConfig(
        match=RouteMatchConfig(headers=[HeaderMatcherConfig(name="service", value=service)]),
        route=RouteActionConfig(cluster_name=cluster, **action),
    )


def cluster(name: str, *addresses: str, **options: Any) -> ClusterConfig:
    return ClusterConfig(name=name, hosts=[HostConfig(address=a) for a in addresses], **options)


# -- stream filters ---------------------------------------------------------------------

Fn = Callable[[Stream], Any]


def local_reply(status: int, body: str) -> Fn:
    """A filter function that answers the request itself."""

    def answer(stream: Stream) -> StreamFilterStatus:
        stream.send_local_reply(status, body)
        return StreamFilterStatus.STOP

    return answer


class _Filter:
    def __init__(self, fn: Fn, may_wait: bool) -> None:
        self.fn = fn
        self.may_wait = may_wait

    async def _run(self, stream: Stream) -> StreamFilterStatus:
        status = self.fn(stream)
        if self.may_wait:
            status = await status
        return status or StreamFilterStatus.CONTINUE

    on_receive = _run
    append = _run


class Filters:
    """A stream filter factory from plain functions of the stream.

    ``Filters({FilterPhase.AFTER_ROUTE: fn}, send=fn2)``: each function returns a status
    (``None`` means CONTINUE).  With ``may_wait=True`` they are coroutine functions and
    the chain may wait.
    """

    def __init__(
        self,
        receivers: Mapping[FilterPhase, Fn] | None = None,
        *,
        send: Fn | None = None,
        may_wait: bool = False,
    ) -> None:
        self.receivers = dict(receivers or {})
        self.send = send
        self.may_wait = may_wait

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        for phase, fn in self.receivers.items():
            chain.add_receiver(_Filter(fn, self.may_wait), phase)
        if self.send is not None:
            chain.add_sender(_Filter(self.send, self.may_wait))


# -- the fakes --------------------------------------------------------------------------


class MemoryConnection:
    """What the stream server, the pool and StreamIO use of a net Connection, in memory."""

    _ids = itertools.count(1)

    def __init__(self, nursery: trio.Nursery | None, remote_address: str) -> None:
        self.id = next(self._ids)
        self.remote_address = remote_address
        self.nursery = nursery
        #: per-connection facts (the proxy reads ``original_dst`` for its balancer)
        self.values: dict[str, object] = {}
        self.closed = False
        self.write_backlog = 0
        self.now = trio.lowlevel.current_clock().current_time
        self.last_active = self.now()
        self.peer_closed = False
        self.sent = bytearray()
        self._listeners: list[Callable[[ConnectionEvent], None]] = []
        self._peer, self._inbox = trio.open_memory_channel[bytes](math.inf)

    def __repr__(self) -> str:
        return f"<MemoryConnection #{self.id} {self.remote_address}>"

    def add_event_listener(self, callback: Callable[[ConnectionEvent], None]) -> None:
        self._listeners.append(callback)

    def write_nowait(self, data: bytes | bytearray) -> None:
        if self.closed:
            raise ConnectionClosedError(f"{self!r} is closed")
        self.sent += data

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    def shutdown_write(self) -> None:
        pass

    def peer_closed_while_idle(self) -> bool:
        return self.peer_closed

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        try:
            return await self._inbox.receive()
        except trio.EndOfChannel:
            return b""
        except trio.ClosedResourceError:
            raise ConnectionClosedError(f"{self!r} was closed while reading") from None

    def close(self, event: ConnectionEvent = ConnectionEvent.LOCAL_CLOSE) -> None:
        if self.closed:
            return
        self.closed = True
        for callback in list(self._listeners):
            callback(event)

    # the peer's side
    def take(self) -> bytes:
        data = bytes(self.sent)
        self.sent.clear()
        return data

    def peer_sends(self, data: bytes) -> None:
        self._peer.send_nowait(data)

    def peer_closes(self) -> None:
        self.peer_closed = True
        self._peer.close()


class ScriptedPool(MultiplexPool):
    """A real stream pool whose dial the playbook scripts (no sockets)."""

    def __init__(self, pb: Playbook, host: Host, **options: Any) -> None:
        assert TOY.client_stream_connection is not None
        super().__init__(host, TOY.client_stream_connection, pb.nursery, **options)
        self.pb = pb

    async def dial(self) -> Any:
        self.connecting += 1
        try:
            return await self.pb._dial(self.host)
        finally:
            self.connecting -= 1


class PlaybookCluster(Cluster):
    """A real cluster (hosts, balancer, limits, counters) with scripted pools."""

    def __init__(self, config: ClusterConfig, pb: Playbook) -> None:
        super().__init__(config)
        self.pb = pb
        self.pools: dict[str, ScriptedPool] = {}

    def pool(self, host: Host, protocol: ProtocolDescriptor) -> ScriptedPool:
        assert protocol is TOY
        pool = self.pools.get(host.address)
        if pool is None:
            pool = self.pools[host.address] = ScriptedPool(
                self.pb,
                host,
                max_connections=self.limits.max_connections or 1,
                max_streams_per_connection=self.config.max_request_per_conn,
            )
        return pool


_recorders: list[set[tuple[Phase, Phase]]] = []


@contextmanager
def recording_jumps() -> Iterator[set[tuple[Phase, Phase]]]:
    """Collect every ``(src, dst)`` step any traced stream takes meanwhile."""
    seen: set[tuple[Phase, Phase]] = set()
    _recorders.append(seen)
    try:
        yield seen
    finally:
        _recorders.remove(seen)


class TracedDownStream(StreamDownStream):
    """A StreamDownStream that records its walk.

    ``trace`` is every phase the stream entered, in order: each phase handler is
    wrapped to note its phase, and END is noted when the stream completes there.  The
    machine checks only steps other than the normal successor against the table (the
    normal successor is always allowed), so every consecutive pair of ``trace`` is
    checked here once more: a step the table does not allow is listed in ``unchecked``.
    """

    def __init__(self, server: PlaybookServer, event: RequestReceived) -> None:
        self.trace = [P.INIT]
        self.unchecked: list[tuple[Phase, Phase]] = []
        super().__init__(server, event)
        server.pb.streams.append(self)

    def _entered(self, phase: Phase) -> None:
        src = self.trace[-1]
        if src is phase:
            return  # the walk went on in the phase it parked in
        self.trace.append(phase)
        if phase not in allowed(src):
            self.unchecked.append((src, phase))
        for seen in _recorders:
            seen.add((src, phase))

    def _complete(self, gone: bool) -> None:
        if self.phase is P.END:
            self._entered(P.END)
        super()._complete(gone)

    def _step(self, phase: Phase) -> Step:
        self._entered(phase)
        return super()._step(phase)


class RecordingDownStream(StreamDownStream):
    """Every phase handler notes its name and answers END: shows which handler
    :meth:`~mosnpy.proxy.downstream.DownStream._step` runs for a phase."""

    calls: list[str]


def _recording(name: str) -> Callable[[RecordingDownStream], Phase]:
    def note(self: RecordingDownStream) -> Phase:
        self.calls.append(name)
        return P.END

    return note


for _name in _HANDLER_NAMES.values():
    setattr(RecordingDownStream, _name, _recording(_name))


class PlaybookServer(StreamServer):
    __slots__ = ("pb",)


# -- the playbook -----------------------------------------------------------------------


class Playbook:
    """One downstream connection through the proxy, its upstreams, and its streams' walks.

    Use as ``async with Playbook(...) as pb:`` inside a test that has ``autojump_clock``.
    On a clean exit it checks that every stream completed and gave back what it held
    (set :attr:`check_quiet` to False to skip that).
    """

    def __init__(
        self,
        *,
        routes: Sequence[RouteConfig] = (rpc_route("svc", "c1"),),
        clusters: Sequence[ClusterConfig] = (cluster("c1", HOST1, HOST2),),
        filters: Sequence[Any] = (),
    ) -> None:
        table = RouteTable.from_config(
            RouterConfig(
                router_config_name="playbook",
                virtual_hosts=[VirtualHostConfig(name="all", routers=routes)],
            )
        )
        self.clusters = ClusterManager(PlaybookCluster(c, self) for c in clusters)
        self.ctx = ProxyContext(
            config=ProxyConfig(
                downstream_protocol="toy", upstream_protocol="toy", router_config_name="playbook"
            ),
            routes=table,
            clusters=self.clusters,
            stream_filters=list(filters),
            listener_name="playbook",
        )
        #: every stream the server started, in order
        self.streams: list[TracedDownStream] = []
        #: every dial: (host address, connected)
        self.dials: list[tuple[str, bool]] = []
        #: the next this many dials fail
        self.fail_connects = 0
        #: seconds each dial takes
        self.connect_time = 0.0
        self.check_quiet = True
        self.upstreams: list[MemoryConnection] = []
        self._sent_up: list[tuple[ToyFrame, MemoryConnection]] = []

    async def __aenter__(self) -> Playbook:
        self._saved = stream_server.StreamDownStream
        stream_server.StreamDownStream = TracedDownStream  # type: ignore[misc]
        self._nursery_cm = trio.open_nursery()
        self.nursery = await self._nursery_cm.__aenter__()
        self.down = MemoryConnection(self.nursery, "192.0.2.1:40000")
        self.server = PlaybookServer(self.ctx, self.down, TOY, TOY)  # type: ignore[arg-type]
        self.server.pb = self
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        try:
            if exc_info[1] is None and self.check_quiet:
                self.assert_quiet()
        finally:
            stream_server.StreamDownStream = self._saved  # type: ignore[misc]
            self.nursery.cancel_scope.cancel()
            try:
                suppress = await self._nursery_cm.__aexit__(*exc_info)
            except BaseException as group:  # show a failed assert as itself, not in a group
                inner = getattr(group, "exceptions", ())
                if len(inner) == 1:
                    raise inner[0] from None
                raise
        return bool(suppress)

    def assert_quiet(self) -> None:
        """Every stream completed and gave back its request counts and upstream streams."""
        assert self.server.streams == {}, self.server.streams
        assert self.ctx.stats.requests_active == 0
        for c in self.clusters.clusters.values():
            assert (c.active_requests, c.active_retries) == (0, 0), c
            for host in c.hosts:
                assert host.active_requests == 0, host

    # -- steps ---------------------------------------------------------------------------

    async def settle(self) -> None:
        """Run every task until all are blocked (the clock does not move)."""
        await trio.testing.wait_all_tasks_blocked()

    async def sleep(self, seconds: float) -> None:
        """Move the clock: whatever is due meanwhile happens, in deadline order."""
        await trio.sleep(seconds)
        await self.settle()

    async def send(self, *frames: ToyFrame, end_stream: bool = True) -> None:
        """The client sends ``frames`` in one batch.

        With ``end_stream=False`` the requests are reported as not ended yet (more body
        to come), as a streaming protocol would: end them with :meth:`feed`.
        """
        data = b"".join(_CODEC.encode(f) for f in frames)
        if end_stream:
            await self.server.on_data(bytearray(data))
            await self.settle()
            return
        events = self.server.sc.dispatch(data)
        for event in events:
            if isinstance(event, RequestReceived):
                event.end_stream = False
        await self.feed(*events)

    async def feed(self, *events: StreamEvent) -> None:
        """The server stream connection reports ``events`` (one batch of the reader)."""
        self.server._dispatch(list(events), 0)
        self.server.touch()
        flush_touched()
        await self.settle()

    def replies(self) -> list[ToyFrame]:
        """The frames the proxy wrote to the client since the last call."""
        return decode(self.down.take())

    def upstream_requests(self) -> list[ToyFrame]:
        """The frames the proxy wrote upstream since the last call (every connection)."""
        frames = []
        for conn in self.upstreams:
            for frame in decode(conn.take()):
                self._sent_up.append((frame, conn))
                frames.append(frame)
        return frames

    async def respond(self, req: ToyFrame, body: bytes = b"", status: int = 0, **headers: str) -> None:
        """The upstream answers ``req`` (a frame from :meth:`upstream_requests`)."""
        self._conn_of(req).peer_sends(_CODEC.encode(response(req.request_id, body, status, **headers)))
        await self.settle()

    async def deliver(self, req: ToyFrame, *events: StreamEvent) -> None:
        """The upstream stream connection carrying ``req`` reports ``events`` (for what the
        toy codec cannot say, e.g. a response in pieces)."""
        mc = self._multiplex_of(req)
        mc._deliver(list(events))
        mc.touch()
        flush_touched()
        await self.settle()

    async def drop(self, req: ToyFrame) -> None:
        """The upstream closes the connection that carries ``req``."""
        self._conn_of(req).peer_closes()
        await self.settle()

    def trace(self, i: int = 0) -> list[Phase]:
        return self.streams[i].trace

    def cluster(self, name: str = "c1") -> PlaybookCluster:
        c = self.clusters.get(name)
        assert isinstance(c, PlaybookCluster)
        return c

    # -- internals -------------------------------------------------------------------------

    def _conn_of(self, req: ToyFrame) -> MemoryConnection:
        for frame, conn in self._sent_up:
            if frame is req:
                return conn
        raise AssertionError(f"{req} was not sent upstream")

    def _multiplex_of(self, req: ToyFrame) -> MultiplexConnection:
        conn = self._conn_of(req)
        for c in self.clusters.clusters.values():
            assert isinstance(c, PlaybookCluster)
            for pool in c.pools.values():
                for mc in pool.connections:
                    if mc.conn is conn:
                        return mc
        raise AssertionError(f"{conn} is in no pool")

    async def _dial(self, host: Host) -> MemoryConnection:
        await trio.sleep(self.connect_time)
        if self.fail_connects:
            self.fail_connects -= 1
            self.dials.append((host.address, False))
            raise ConnectFailedError(f"connect to {host.address} failed: refused (scripted)")
        self.dials.append((host.address, True))
        conn = MemoryConnection(None, host.address)
        self.upstreams.append(conn)
        return conn
