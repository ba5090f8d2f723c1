"""The multiplexing pool (xprotocol): many requests in flight per connection, by id.

Theory of operation
-------------------
A :class:`MultiplexPool` keeps up to ``max_connections`` connections to one host
(MOSN: ``circuit_breakers[].max_connections``, default 1).  Each
:class:`MultiplexConnection` has its own request-id counter (within the protocol's id
width), a table ``id → waiting call``, and one reader task that decodes responses and
wakes the call whose id matches.  A request leaves with the connection's fresh id; the
caller restores its own id on the response (the proxy does, on the way back down).

Bookkeeping is synchronous and done around each ``await``: a call registers its slot
before it sends and removes it in ``finally``, so a caller cancelled at any point
leaves no slot behind and a late response for it is just a stray (dropped, counted).
When a connection is lost, every call waiting on it is woken with a reset.

Keepalive: when the codec can build heartbeats and ``keepalive_interval`` > 0, each
connection sends one every interval while idle; ``keepalive_failures`` consecutive
unanswered heartbeats (each given ``keepalive_timeout``) close the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from mosnpy.net.connection import Connection, ConnectionClosedError
from mosnpy.protocol.xprotocol import ClientSession, DecodeError, HeartbeatCodec, StreamType, XCodec, XFrame
from mosnpy.upstream.dial import Dialer
from mosnpy.upstream.errors import ConnectFailedError, OverflowError_, UpstreamError
from mosnpy.upstream.host import Host

__all__ = ["MultiplexConnection", "MultiplexPool", "UpstreamResetError"]

log = logging.getLogger("mosnpy.upstream")


class UpstreamResetError(UpstreamError):
    """The connection carrying a call was lost before its response arrived."""


class _Call:
    """One waiting request: woken with a response or a reset."""

    __slots__ = ("done", "error", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: XFrame | None = None
        self.error: str | None = None


class MultiplexConnection:
    """One upstream connection shared by many in-flight calls."""

    def __init__(self, pool: MultiplexPool, conn: Connection, codec: XCodec) -> None:
        self.pool = pool
        self.conn = conn
        self.codec = codec
        self.session = ClientSession(codec)
        self.calls: dict[int, _Call] = {}
        self.stray = 0
        self.heartbeat_failures = 0
        self.closed = False
        #: the connection's own tasks (reader, keepalive) end when it closes
        self._reader_scope = trio.CancelScope()
        self._keepalive_scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<MultiplexConnection #{self.conn.id} in_flight={len(self.calls)} stray={self.stray}>"

    async def call(self, frame: XFrame, *, oneway: bool) -> XFrame | None:
        """Send ``frame`` with a fresh id; return the response (None for oneway).

        Raises:
            UpstreamResetError: the connection was lost before the response.
        """
        rid = self.session.next_id()
        while rid in self.calls:  # a wrapped counter met a call still in flight
            rid = self.session.next_id()
        self.codec.set_request_id(frame, rid)
        data = self.codec.encode(frame)
        if oneway:
            try:
                await self.conn.send_all(data)
            except ConnectionClosedError as exc:
                raise UpstreamResetError(str(exc)) from exc
            return None
        pending = _Call()
        self.calls[rid] = pending
        try:
            await self.conn.send_all(data)
            await pending.done.wait()
        except ConnectionClosedError as exc:
            raise UpstreamResetError(str(exc)) from exc
        finally:
            if self.calls.get(rid) is pending:
                del self.calls[rid]
        if pending.error is not None:
            raise UpstreamResetError(pending.error)
        return pending.response

    async def read_loop(self) -> None:
        """The connection's reader task: match responses to calls until it breaks."""
        reason = "upstream closed the connection"
        try:
            with self._reader_scope:
                await self._read()
        except ConnectionClosedError as exc:
            reason = f"upstream connection lost: {exc}"
        except DecodeError as exc:
            reason = f"upstream sent an undecodable frame: {exc}"
            log.warning("upstream %s: %s", self.pool.host.address, reason)
        except Exception as exc:  # a plugin codec bug costs this connection, not the server
            reason = f"codec failed: {exc!r}"
            log.exception("upstream %s: %s", self.pool.host.address, reason)
        finally:
            self.close(reason)

    async def _read(self) -> None:
        while True:
            data = await self.conn.receive_some()
            if not data:
                return
            for frame in self.session.receive_data(data):
                self._dispatch(frame)

    def _dispatch(self, frame: XFrame) -> None:
        if frame.stream_type is not StreamType.RESPONSE:
            self.stray += 1  # an upstream request on a client connection: not supported
            return
        call = self.calls.pop(self.codec.get_request_id(frame), None)
        if call is None:
            self.stray += 1
            self.pool.stray += 1
            return
        call.response = frame
        call.done.set()

    async def keepalive(self, interval: float, timeout: float, failures: int) -> None:
        """Send a heartbeat every ``interval`` while idle; close after ``failures`` misses."""
        with self._keepalive_scope:
            await self._keepalive(interval, timeout, failures)

    async def _keepalive(self, interval: float, timeout: float, failures: int) -> None:
        codec = self.codec
        assert isinstance(codec, HeartbeatCodec)
        while not self.closed:
            await trio.sleep(interval)
            if self.closed or self.calls:
                continue  # busy connections prove themselves alive
            answered = False
            with trio.move_on_after(timeout):
                try:
                    await self.call(codec.trigger(0), oneway=False)
                    answered = True
                except UpstreamResetError:
                    return
            self.heartbeat_failures = 0 if answered else self.heartbeat_failures + 1
            if self.heartbeat_failures >= failures:
                log.warning(
                    "upstream %s: %d heartbeats unanswered, closing", self.pool.host.address, failures
                )
                self.close("heartbeats unanswered")
                return

    def close(self, reason: str) -> None:
        """Close and wake every waiting call with ``reason`` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._reader_scope.cancel()
        self._keepalive_scope.cancel()
        self.conn.close()
        calls = list(self.calls.values())
        self.calls.clear()
        for call in calls:
            call.error = reason
            call.done.set()
        self.pool.forget(self)


class MultiplexPool(Dialer):
    """Connections to one host shared by concurrent calls.

    Args:
        host: the upstream host.
        codec_factory: builds the protocol's codec (one per connection).
        nursery: where connection reader and keepalive tasks run.
        max_connections: connections to keep (1..); calls are spread round robin.
        max_requests_per_connection: cap on calls in flight per connection (0 = none);
            when every connection is full the call fails with overflow (503).
        connect_timeout: seconds allowed for a connect.
        keepalive_interval: heartbeat period when idle (0 = no heartbeats).
    """

    def __init__(
        self,
        host: Host,
        codec_factory: Callable[[], XCodec],
        nursery: trio.Nursery,
        *,
        max_connections: int = 1,
        max_requests_per_connection: int = 0,
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
        keepalive_timeout: float = 1.0,
        keepalive_failures: int = 6,
    ) -> None:
        super().__init__(host, connect_timeout)
        self.codec_factory = codec_factory
        self.nursery = nursery
        self.max_connections = max(1, max_connections)
        self.max_requests_per_connection = max_requests_per_connection
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_failures = keepalive_failures
        self.connections: list[MultiplexConnection] = []
        self.stray = 0
        self.closed = False
        self._next = 0
        self._connect_lock = trio.Lock()
        self._connect_failures = 0
        self._last_connect_error = ""

    def __repr__(self) -> str:
        in_flight = sum(len(c.calls) for c in self.connections)
        return (
            f"<MultiplexPool {self.host.address} connections={len(self.connections)} "
            f"connecting={self.connecting} in_flight={in_flight} stray={self.stray}>"
        )

    async def call(self, frame: XFrame, *, oneway: bool = False) -> XFrame | None:
        """Send ``frame`` upstream on some connection; return its response.

        Raises:
            ConnectFailedError: no connection could be made (retryable).
            OverflowError_: every connection has ``max_requests_per_connection`` calls.
            UpstreamResetError: the connection was lost before the response.
        """
        mc = await self._connection()
        self.host.active_requests += 1
        try:
            return await mc.call(frame, oneway=oneway)
        finally:
            self.host.active_requests -= 1

    async def _connection(self) -> MultiplexConnection:
        if len(self.connections) < self.max_connections:
            failures = self._connect_failures
            async with self._connect_lock:
                if self._connect_failures != failures and not self.connections:
                    # The connect we queued behind failed: share its outcome instead
                    # of dialing again one after another (a dead host would make
                    # each waiter pay a whole connect timeout in turn).
                    raise ConnectFailedError(self._last_connect_error)
                if len(self.connections) < self.max_connections:
                    try:
                        return await self._open()
                    except ConnectFailedError as exc:
                        self._connect_failures += 1
                        self._last_connect_error = str(exc)
                        if not self.connections:
                            raise
        for _ in range(len(self.connections)):
            self._next = (self._next + 1) % len(self.connections)
            mc = self.connections[self._next]
            if not self.max_requests_per_connection or len(mc.calls) < self.max_requests_per_connection:
                await trio.lowlevel.checkpoint()
                return mc
        raise OverflowError_(
            f"{self.host.address}: {self.max_requests_per_connection} requests in flight on every connection"
        )

    async def _open(self) -> MultiplexConnection:
        if self.closed:
            raise ConnectFailedError(f"pool for {self.host.address} is closed")
        conn = await self.dial()
        mc = MultiplexConnection(self, conn, self.codec_factory())
        self.connections.append(mc)
        self.nursery.start_soon(mc.read_loop)
        if self.keepalive_interval > 0 and isinstance(mc.codec, HeartbeatCodec):
            self.nursery.start_soon(
                mc.keepalive, self.keepalive_interval, self.keepalive_timeout, self.keepalive_failures
            )
        return mc

    def forget(self, mc: MultiplexConnection) -> None:
        if mc in self.connections:
            self.connections.remove(mc)

    def close(self) -> None:
        self.closed = True
        for mc in list(self.connections):
            mc.close("pool closed")
