"""The ``tcp_proxy`` network filter: pick a cluster by L4 address, then pump bytes.

Config (MOSN's ``StreamProxy``)::

    {"type": "tcp_proxy", "config": {
        "cluster": "default_cluster",        # used when no route matches
        "idle_timeout": "30s",               # no bytes either way for this long: close
        "max_connect_attempts": 3,           # hosts tried before giving up (default 1)
        "routes": [{
            "cluster": "db",
            "SourceAddrs": [{"address": "10.0.0.0", "length": 8}],
            "DestinationAddrs": [{"address": "127.0.0.1", "length": 32}],
            "SourcePort": "1024-65535",
            "DestinationPort": "3306,33060"
        }]
    }}

Route keys are spelled as MOSN's JSON spells them (its ``StreamRoute`` has no JSON
tags, so ``SourceAddrs``) or in snake case (``source_addrs``, the older MOSN
spelling).  An address entry is MOSN's ``{"address", "length"}`` CIDR range, or a
string: ``"10.0.0.0/8"``, ``"127.0.0.1"`` or, as older MOSN wrote it, ``"ip:port"``
(that entry then also needs the port).  A port list is ``"80"``, ``"8000-8100"`` or a
comma-separated mix.  Every criterion a route gives must match (the source is the
client's address, the destination the address it connected to); one it leaves out
matches anything.  Routes are tried in order; when none matches, ``cluster`` is used;
without ``cluster`` the connection is closed.

Deliberate differences from MOSN (v1.6):

* MOSN returns ``cluster`` whenever it is set and never looks at ``routes``; here
  routes come first and ``cluster`` is the default (Envoy's order).
* MOSN's route criteria match nothing when left empty (a route must list all four);
  here an empty criterion matches anything.
* MOSN never reads ``max_connect_attempts`` or the TCP ``idle_timeout``; here they
  do what their names say.  ``idle_timeout`` is a Go duration or a number of seconds
  (MOSN reads a number as nanoseconds), like every mosnpy duration.
* MOSN closes the whole connection when either side closes; here a half-close is
  propagated (FIN from one side → ``shutdown(SHUT_WR)`` towards the other) and the
  pair is closed once both directions have ended.

Theory of operation
-------------------
Each connection gets a :class:`TcpProxyFilter`.  When it is the first read filter it
connects at once (a server-first protocol sends nothing until the server speaks);
behind another filter (the ``proxy`` filter's fallback) it connects when bytes first
reach it.  Connecting tries up to ``max_connect_attempts`` hosts of the cluster,
preferring hosts not tried yet; when every attempt fails the client is closed.

Two loops move the bytes, each with at most one read (64 KiB) in hand, so memory is
bounded and backpressure is the kernel's in both directions:

* **client → upstream** runs in the connection's own reader task: the first
  :meth:`TcpProxyFilter.on_data` does not return until the client's side has ended.
  It reads the client, passes each chunk through the read filters *before* it in the
  chain (so none of them is bypassed), and ``await``\\s ``send_all`` to the upstream:
  while the upstream is slow, the client is not read.  Keeping the reads here (rather
  than returning after each chunk) is what lets a client's FIN become a half-close:
  the connection's own reader closes the connection when it reads EOF.
* **upstream → client** is one task per connection, started once connected: it reads
  the upstream and ``send_all``\\s to the client, so a slow client slows the upstream
  reads.

A client that half-closes *before sending a single byte* is seen by the connection's
reader, which hands the EOF to :meth:`TcpProxyFilter.on_eof`: the FIN goes upstream
the same way.

Stats: a TCP session counts as one request of its cluster (``counters.requests``,
``active_requests``, held against ``max_requests``) and of its host
(``active_requests``, which least-request balancing reads); upstream bytes count in
the cluster's ``traffic``, client bytes in the listener's; failed connect attempts in
``counters.connect_failures``, attempts after the first in ``counters.retries``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from mosnpy.config import DURATION_METADATA, ConfigError, structure
from mosnpy.config.errors import join_path
from mosnpy.net.connection import Connection, ConnectionClosedError, connect
from mosnpy.net.events import ConnectionEvent
from mosnpy.net.filter import FilterStatus, ReadFilter
from mosnpy.net.filtermanager import FilterManager
from mosnpy.net.original_dst import ORIGINAL_DST
from mosnpy.proxy.factory import BuildContext
from mosnpy.registry import UnknownNameError
from mosnpy.upstream.cluster import Cluster, ClusterManager
from mosnpy.upstream.errors import NoHealthyHostError, OverflowError_
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import LbContext

__all__ = [
    "CidrRangeConfig",
    "TcpProxyConfig",
    "TcpProxyFilter",
    "TcpProxyFilterFactory",
    "TcpRoute",
    "TcpRouteConfig",
    "create_tcp_proxy_factory",
]

log = logging.getLogger("mosnpy.proxy")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PortRange = tuple[int, int]


# --------------------------------------------------------------------------- config


@attrs.frozen(kw_only=True)
class CidrRangeConfig:
    """MOSN's ``CidrRange``: an address and a prefix length (the whole address when
    left out)."""

    address: str
    length: int | None = None


@attrs.frozen(kw_only=True)
class TcpRouteConfig:
    """One entry of ``routes`` (MOSN's ``StreamRoute``)."""

    cluster: str
    source_addrs: tuple[CidrRangeConfig | str, ...] = ()
    destination_addrs: tuple[CidrRangeConfig | str, ...] = ()
    source_port: str | int = ""
    destination_port: str | int = ""


@attrs.frozen(kw_only=True)
class TcpProxyConfig:
    """The filter's ``config`` (MOSN's ``StreamProxy``)."""

    stat_prefix: str = ""
    cluster: str = ""
    idle_timeout: float | None = attrs.field(default=None, metadata={DURATION_METADATA: True})
    max_connect_attempts: int = 0
    routes: tuple[TcpRouteConfig, ...] = ()


def _snake_route_keys(data: Any, path: str) -> Any:
    """A route mapping with MOSN's Go field names (``SourceAddrs``) in snake case.

    Raises:
        ConfigError: two keys name one setting.
    """
    if not isinstance(data, Mapping):
        return data
    names = {f.name.replace("_", ""): f.name for f in attrs.fields(TcpRouteConfig)}
    out: dict[Any, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = names.get(key.replace("_", "").lower()) if isinstance(key, str) else None
        if name is None:
            out[key] = value  # unknown: structure() reports it
            continue
        if name in spelled:
            raise ConfigError(join_path(path, key), f"same setting as {spelled[name]!r}; give only one")
        spelled[name] = key
        out[name] = value
    return out


def _mosn_spellings(config: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """``config`` with each route's keys in snake case (see :func:`_snake_route_keys`)."""
    key = next((k for k in config if isinstance(k, str) and k.lower() == "routes"), None)
    routes = config.get(key) if key is not None else None
    if key is None or not isinstance(routes, list | tuple):
        return config
    errors: list[ConfigError] = []
    fixed: list[Any] = []
    for i, route in enumerate(routes):
        try:
            fixed.append(_snake_route_keys(route, join_path(path, key, i)))
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigError.group(errors)
    return {**config, key: fixed}


def _network(entry: CidrRangeConfig | str, path: str) -> tuple[IpNetwork, PortRange | None]:
    """An address entry as (network, the port it names or None)."""
    port: PortRange | None = None
    try:
        if isinstance(entry, CidrRangeConfig):
            suffix = "" if entry.length is None else f"/{entry.length}"
            return ipaddress.ip_network(f"{entry.address}{suffix}", strict=False), None
        text = entry.strip()
        if "/" not in text:
            try:
                ipaddress.ip_address(text)
            except ValueError:
                # "ip:port" / "[v6]:port", the older MOSN spelling
                host, sep, port_s = text.rpartition(":")
                if not sep or not port_s.isdigit() or int(port_s) > 65535:
                    raise ValueError(f"{text!r} is not an IP address, a CIDR range or ip:port") from None
                text = host.strip("[]")
                port = (int(port_s), int(port_s))
        return ipaddress.ip_network(text, strict=False), port
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _ports(spec: str | int, path: str) -> tuple[PortRange, ...]:
    """``"80"``, ``"8000-8100"``, ``"80,443,9000-9100"`` or ``80`` as port ranges."""
    if isinstance(spec, int):
        spec = str(spec)
    ranges: list[PortRange] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            if spec.strip():
                raise ConfigError(path, f"empty port in {spec!r}")
            continue
        lo_s, _, hi_s = item.partition("-")
        lo_s, hi_s = lo_s.strip(), (hi_s.strip() or lo_s.strip())
        if not (lo_s.isdigit() and hi_s.isdigit()):
            raise ConfigError(path, f"bad port {item!r}: want a port or a range like 8000-8100")
        lo, hi = int(lo_s), int(hi_s)
        if not 0 < lo <= hi <= 65535:
            raise ConfigError(path, f"bad port range {item!r}: ports go from 1 to 65535, low to high")
        ranges.append((lo, hi))
    return tuple(ranges)


def _split(address: str) -> tuple[IpAddress, int] | None:
    """``"ip:port"`` / ``"[v6]:port"`` (a connection's address) as (ip, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None  # a unix socket
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(port)


@attrs.frozen
class _Addrs:
    """An address criterion: matches when any entry does."""

    entries: tuple[tuple[IpNetwork, PortRange | None], ...]

    def match(self, ip: IpAddress, port: int) -> bool:
        return any(
            ip in net and (ports is None or ports[0] <= port <= ports[1]) for net, ports in self.entries
        )


def _in(ranges: tuple[PortRange, ...], port: int) -> bool:
    return any(lo <= port <= hi for lo, hi in ranges)


@attrs.frozen
class TcpRoute:
    """A parsed route: empty criteria match anything."""

    cluster: str
    source_addrs: _Addrs
    destination_addrs: _Addrs
    source_ports: tuple[PortRange, ...]
    destination_ports: tuple[PortRange, ...]

    @classmethod
    def parse(cls, cfg: TcpRouteConfig, path: str) -> TcpRoute:
        """Raises ConfigError naming the bad entry."""
        errors: list[ConfigError] = []

        def addrs(name: str, entries: Sequence[CidrRangeConfig | str]) -> _Addrs:
            out = []
            for i, entry in enumerate(entries):
                try:
                    out.append(_network(entry, join_path(path, name, i)))
                except ConfigError as exc:
                    errors.append(exc)
            return _Addrs(tuple(out))

        def ports(name: str, spec: str | int) -> tuple[PortRange, ...]:
            try:
                return _ports(spec, join_path(path, name))
            except ConfigError as exc:
                errors.append(exc)
                return ()

        route = cls(
            cfg.cluster,
            addrs("source_addrs", cfg.source_addrs),
            addrs("destination_addrs", cfg.destination_addrs),
            ports("source_port", cfg.source_port),
            ports("destination_port", cfg.destination_port),
        )
        if not cfg.cluster:
            errors.append(ConfigError(join_path(path, "cluster"), "a route needs a cluster"))
        if errors:
            raise ConfigError.group(errors)
        return route

    def matches(
        self, source: tuple[IpAddress, int] | None, destination: tuple[IpAddress, int] | None
    ) -> bool:
        for addrs, ports, where in (
            (self.source_addrs, self.source_ports, source),
            (self.destination_addrs, self.destination_ports, destination),
        ):
            if not (addrs.entries or ports):
                continue
            if where is None:
                return False
            ip, port = where
            if addrs.entries and not addrs.match(ip, port):
                return False
            if ports and not _in(ports, port):
                return False
        return True


# --------------------------------------------------------------------------- filter


class TcpProxyFilterFactory:
    """One per listener: parsed routes, the clusters, and a filter per connection.

    Args:
        config: the parsed filter config.
        clusters: the cluster manager connections pick their cluster from.
        path: where the config sits, for errors.

    Raises:
        ConfigError: bad routes, no cluster at all, or a cluster no cluster manager
            entry has.
    """

    def __init__(self, config: TcpProxyConfig, clusters: ClusterManager, path: str = "config") -> None:
        self.config = config
        self.clusters = clusters
        self.idle_timeout = config.idle_timeout or None
        self.max_connect_attempts = max(1, config.max_connect_attempts)
        errors: list[ConfigError] = []
        routes: list[TcpRoute] = []
        for i, rc in enumerate(config.routes):
            try:
                routes.append(TcpRoute.parse(rc, join_path(path, "routes", i)))
            except ConfigError as exc:
                errors.append(exc)
        self.routes = tuple(routes)
        if not config.cluster and not config.routes:
            errors.append(ConfigError(path, "tcp_proxy needs a cluster or routes"))
        if config.max_connect_attempts < 0:
            errors.append(ConfigError(join_path(path, "max_connect_attempts"), "must not be negative"))
        named = [(join_path(path, "cluster"), config.cluster)] if config.cluster else []
        named += [
            (join_path(path, "routes", i, "cluster"), r.cluster)
            for i, r in enumerate(config.routes)
            if r.cluster
        ]
        for key, name in named:
            if name not in clusters.clusters:
                errors.append(
                    ConfigError(key, str(UnknownNameError("cluster", name, sorted(clusters.clusters))))
                )
        if errors:
            raise ConfigError.group(errors)

    def cluster_for(self, remote_address: str, local_address: str) -> str:
        """The cluster of a connection from ``remote_address`` to ``local_address``
        ("" for none)."""
        if self.routes:
            source, destination = _split(remote_address), _split(local_address)
            for route in self.routes:
                if route.matches(source, destination):
                    return route.cluster
        return self.config.cluster

    def create_filter_chain(self, manager: FilterManager) -> None:
        manager.add_read_filter(TcpProxyFilter(self))


class TcpProxyFilter:
    """One client connection's session with one upstream connection."""

    def __init__(self, factory: TcpProxyFilterFactory) -> None:
        self.factory = factory
        self.down: Connection | None = None
        self.up: Connection | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None
        self._started = False
        self._reading = False
        self._finished = False
        #: set once the upstream is connected (the session is closed if it never is)
        self._connected = trio.Event()
        #: set once the upstream sent EOF and the client was half-closed
        self._up_done = trio.Event()

    def __repr__(self) -> str:
        down = self.down.id if self.down is not None else "-"
        up = self.up.id if self.up is not None else "-"
        return f"<TcpProxyFilter #{down} -> #{up}>"

    # -- the read filter -----------------------------------------------------------

    def on_new_connection(self, connection: Connection) -> FilterStatus:
        self.down = connection
        connection.add_event_listener(self._on_down_event)
        filters = connection.filter_manager.read_filters
        if filters and filters[0] is self:
            self._start()
        return FilterStatus.CONTINUE

    async def on_data(self, buffer: bytearray) -> FilterStatus:
        """Forward ``buffer``, then read the client here until its side ends."""
        down = self.down
        assert down is not None
        if self._reading:  # not reached: the loop below owns the reads
            return FilterStatus.STOP
        self._reading = True
        self._start()
        try:
            await self._connected.wait()
            up = self.up
            assert up is not None
            await self._forward(up, buffer)
            filters = down.filter_manager.read_filters
            before = filters[: filters.index(self)] if self in filters else []
            while True:
                data = await down.receive_some()
                if not data:
                    break
                if before or buffer:
                    buffer += data
                    if await _run(before, buffer):
                        await self._forward(up, buffer)
                else:
                    await up.send_all(data)
            up.shutdown_write()
            await self._up_done.wait()
        except ConnectionClosedError as exc:
            log.debug("tcp_proxy %r: client side ended: %s", self, exc)
        finally:
            self._finish()
        return FilterStatus.STOP

    async def on_eof(self) -> bool:
        """The client half-closed before sending a byte: pass the FIN upstream and let
        the upstream finish its side."""
        if self._reading:
            return False
        self._reading = True
        self._start()
        try:
            await self._connected.wait()
            up = self.up
            assert up is not None
            up.shutdown_write()
            await self._up_done.wait()
        except ConnectionClosedError as exc:
            log.debug("tcp_proxy %r: client side ended: %s", self, exc)
        finally:
            self._finish()
        return True

    @staticmethod
    async def _forward(up: Connection, buffer: bytearray) -> None:
        if buffer:
            await up.send_all(buffer)
            del buffer[:]

    # -- the upstream side -----------------------------------------------------------

    def _start(self) -> None:
        """Connect and start the upstream → client pump (once)."""
        if self._started:
            return
        self._started = True
        down = self.down
        assert down is not None
        if down.nursery is None:
            log.error("tcp_proxy: connection %s has no nursery to run in; closing", down.id)
            down.close()
            return
        down.nursery.start_soon(self._run_upstream)
        if self.factory.idle_timeout:
            down.nursery.start_soon(self._watch_idle, self.factory.idle_timeout)

    async def _run_upstream(self) -> None:
        down = self.down
        assert down is not None
        if self._finished:
            return
        try:
            got = await self._connect(down)
        except BaseException:
            self._finish()
            raise
        if got is None:
            self._finish()
            return
        up, host = got
        if self.finished:  # the client went away while we connected
            up.close()
            return
        self.up, self.host = up, host
        host.active_requests += 1
        self._connected.set()
        try:
            while True:
                data = await up.receive_some()
                if not data:
                    break
                await down.send_all(data)
            down.shutdown_write()
        except ConnectionClosedError as exc:
            log.debug("tcp_proxy %r: upstream side ended: %s", self, exc)
            self._finish()
            return
        except BaseException:
            self._finish()
            raise
        # Half-closed: the client may still send (on_data finishes the session when
        # it ends), or close (the close event finishes it).
        self._up_done.set()

    async def _connect(self, down: Connection) -> tuple[Connection, Host] | None:
        """An upstream connection and its host, or None (logged) when there is none."""
        factory = self.factory
        name = factory.cluster_for(down.remote_address, down.local_address)
        if not name:
            log.warning("tcp_proxy: no route for %s -> %s; closing", down.remote_address, down.local_address)
            return None
        try:
            cluster = factory.clusters.get(name)
        except UnknownNameError as exc:
            log.warning("tcp_proxy: %s; closing %s", exc, down.remote_address)
            return None
        try:
            cluster.start_request()
        except OverflowError_ as exc:
            log.warning("tcp_proxy: %s; closing %s", exc, down.remote_address)
            return None
        self.cluster = cluster
        dst = down.values.get(ORIGINAL_DST)
        context = LbContext(
            downstream_address=down.remote_address,
            original_destination=dst if isinstance(dst, str) else None,
        )
        attempts = factory.max_connect_attempts
        tried: list[Host] = []
        for attempt in range(attempts):
            try:
                host = _choose(cluster, context, tried)
            except NoHealthyHostError as exc:
                log.warning("tcp_proxy: %s; closing %s", exc, down.remote_address)
                return None
            if attempt:
                cluster.counters.retries += 1
            tried.append(host)
            try:
                up = await connect(host.address, timeout=cluster.config.connect_timeout)
            except (OSError, TimeoutError) as exc:
                cluster.counters.connect_failures += 1
                log.warning(
                    "tcp_proxy: connect to %s (cluster %s, attempt %d of %d) failed: %s",
                    host.address,
                    cluster.name,
                    attempt + 1,
                    attempts,
                    exc,
                )
                continue
            up.traffic = cluster.traffic
            return up, host
        log.warning(
            "tcp_proxy: no host of cluster %s answered; closing %s", cluster.name, down.remote_address
        )
        return None

    async def _watch_idle(self, idle: float) -> None:
        down = self.down
        assert down is not None
        while not self._finished:
            up = self.up
            last = down.last_active if up is None else max(down.last_active, up.last_active)
            left = last + idle - trio.current_time()
            if left <= 0:
                log.debug("tcp_proxy %r: idle for %.3gs; closing", self, idle)
                down.close(ConnectionEvent.IDLE_TIMEOUT)
                return
            await trio.sleep(left)

    # -- the end -----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether the session is over (both sides closed)."""
        return self._finished

    def _on_down_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            self._finish()

    def _finish(self) -> None:
        """Close both sides and give back what the session held (idempotent)."""
        if self._finished:
            return
        self._finished = True
        if self.up is not None:
            self.up.close()
        if self.down is not None:
            self.down.close()
        if self.host is not None:
            self.host.active_requests -= 1
        if self.cluster is not None:
            self.cluster.end_request()


def _choose(cluster: Cluster, context: LbContext, tried: list[Host]) -> Host:
    """The balancer's pick, or a healthy host not tried yet when it picks a tried one.

    Raises:
        NoHealthyHostError: no healthy host.
    """
    host = cluster.choose_host(context)
    if host in tried:
        fresh = [h for h in cluster.lb.hosts if h.healthy and h not in tried]
        if fresh:
            return fresh[0]
    return host


async def _run(filters: Sequence[ReadFilter], buffer: bytearray) -> bool:
    """Run ``filters`` over ``buffer`` as the filter manager does; True if every one
    passed the bytes on."""
    for f in filters:
        if not buffer:
            return False
        if await f.on_data(buffer) is FilterStatus.STOP:
            return False
    return True


def create_tcp_proxy_factory(config: Mapping[str, Any], build: BuildContext) -> TcpProxyFilterFactory:
    """The ``tcp_proxy`` entry of the network filter registry.

    Raises:
        ConfigError: a bad config (paths relative to ``config``; the builder roots
            them in the document).
    """
    data = _mosn_spellings(config, "config") if isinstance(config, Mapping) else config
    parsed = structure(TcpProxyConfig, data, "config")
    return TcpProxyFilterFactory(parsed, build.clusters)
