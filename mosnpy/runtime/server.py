"""A running mosnpy: listeners, clusters and a graceful drain.

:class:`MosnServer` is what both ways in share: ``mosnpy -c config.json`` builds one
from a file, and library users build one from models in code.  ``serve()`` binds every
listener (reporting readiness through ``task_status``), then runs until
:meth:`MosnServer.shutdown` is called; shutdown drains: listeners stop accepting, idle
connections close, in-flight requests get ``graceful_timeout`` seconds to finish, and
whatever is left is closed.

:meth:`MosnServer.reload` (SIGHUP, ``POST /api/v1/reload``) swaps in a new config
without dropping a connection or a request: the new file is loaded and built in full
first (any error refuses the reload and changes nothing); then the clusters are
replaced whole (requests already sent finish on the old ones, which close once idle),
every listener kept (same address) keeps its socket and connections and serves the new
routes, stream filters and clusters from its next request on (its counters carry on),
listeners new in the file open and listeners gone from it drain.

Access logs (:mod:`mosnpy.proxy.accesslog`): the server opens the files its listeners
name when it binds and flushes and closes them when it stops; SIGUSR1 reopens them
(logrotate).  A reload opens the new config's files before it commits (one that cannot
be opened refuses the reload) and closes those no longer named once the old connections
have drained; a path named before and after keeps its open file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import trio

from mosnpy.admin import AdminServer, ReloadRefused
from mosnpy.admin.server import STATE_GRACEFUL_STOPPING, STATE_RELOADING, STATE_RUNNING, STATE_STOPPED
from mosnpy.config.errors import ConfigError
from mosnpy.config.loader import load_config
from mosnpy.config.models import MosnConfig
from mosnpy.net.listener import Listener
from mosnpy.proxy.accesslog import AccessLogWriter, reopen_all
from mosnpy.proxy.factory import ProxyFilterFactory
from mosnpy.runtime.builder import build
from mosnpy.runtime.logctl import current_levels, set_level
from mosnpy.upstream.cluster import ClusterManager

__all__ = ["AccessLogError", "BindError", "MosnServer", "run"]

log = logging.getLogger("mosnpy")


class BindError(OSError):
    """A listener cannot bind its address; ``str()`` names both, then the OS error:
    ``listener 'http' cannot bind 127.0.0.1:2045: [Errno 98] Address already in use``.
    """

    def __init__(self, listener: str, address: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.listener = listener
        self.address = address
        self.cause = cause

    def __str__(self) -> str:
        return f"listener {self.listener!r} cannot bind {self.address}: {self.cause}"


class AccessLogError(OSError):
    """An access log file cannot be opened; ``str()`` names the listener and the path."""

    def __init__(self, listener: str, path: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.listener = listener
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return f"listener {self.listener!r} cannot open its access log {self.path}: {self.cause}"


class MosnServer:
    """Listeners and clusters built from a :class:`~mosnpy.config.MosnConfig`.

    Raises:
        ConfigError: a name in the config is unknown to its registry (with its path).
    """

    def __init__(
        self,
        config: MosnConfig,
        *,
        reuse_port: bool = False,
        config_path: str | os.PathLike[str] | None = None,
        control: str | None = None,
    ) -> None:
        self.config = config
        #: the file :meth:`reload` re-reads (None: built in code, nothing to re-read)
        self.config_path = config_path
        self.reuse_port = reuse_port
        # every unknown name and bad plugin config at once, as one ConfigError
        self.clusters: ClusterManager
        self.listeners: list[Listener]
        self.clusters, self.listeners = build(config, reuse_port=reuse_port)
        for lst in self.listeners:
            lst.find_listener = self.find_listener
        self.graceful_timeout = max((s.graceful_timeout for s in config.servers), default=30.0)
        self.admin: AdminServer | None = None
        # A supervised worker serves the admin API on its private ``control`` socket;
        # the config's admin address belongs to the supervisor.
        address = control if control is not None else config.admin.address if config.admin else None
        if address is not None:
            name = "control" if control is not None else "admin"
            self.admin = AdminServer(address, _LocalBackend(self), version=_version(), name=name)
        #: MOSN's stage number (``/api/v1/states``): 4 starting, 6 running, 8 draining, 11 stopped
        self.state = 4
        #: reloads applied so far
        self.reloads = 0
        self._shutdown = trio.Event()
        self._stopped = trio.Event()
        self._reload_lock = trio.Lock()
        self._upstream: trio.Nursery | None = None
        self._serving: trio.Nursery | None = None
        self._cluster_scope: trio.CancelScope | None = None
        #: the access log writers this server holds open (None: not opened yet)
        self._log_writers: list[AccessLogWriter] | None = None

    @property
    def all_listeners(self) -> list[Listener]:
        """The proxy listeners and, when configured, the admin one."""
        return [*self.listeners, *([self.admin.listener] if self.admin is not None else [])]

    def stats(self) -> dict[str, Any]:
        """A snapshot of what is open and in flight (served at ``/api/v1/stats``)."""
        return {
            "listeners": {lst.name: _listener_stats(lst) for lst in self.listeners},
            "clusters": {c.name: c.stats() for c in self.clusters.clusters.values()},
        }

    def find_listener(self, address: str) -> Listener | None:
        """The proxy listener that owns ``address`` (``ip:port``): the one configured
        with that address, else one on ``0.0.0.0`` / ``[::]`` with its port (MOSN's
        lookup for ``use_original_dst``); None when there is none."""
        _, _, port = address.rpartition(":")
        wildcard = None
        for lst in self.listeners:
            if address in (lst.address, lst.requested_address):
                return lst
            if wildcard is None and lst.address in (f"0.0.0.0:{port}", f"[::]:{port}"):
                wildcard = lst
        return wildcard

    def listener(self, name: str) -> Listener:
        """The listener called ``name`` (its ``address`` shows the bound port)."""
        for lst in self.listeners:
            if lst.name == name:
                return lst
        raise KeyError(f"no listener {name!r} (known: {', '.join(x.name for x in self.listeners)})")

    def bind(self) -> None:
        """Bind every listener now (``serve`` does it otherwise).

        Raises:
            BindError: an address is in use or cannot be bound (naming the listener).
        """
        for lst in self.all_listeners:
            try:
                lst.bind()
            except OSError as exc:
                raise BindError(lst.name, lst.requested_address, exc) from exc
        if self._log_writers is None:
            self._log_writers = _open_access_logs(self.listeners)

    async def serve(self, *, task_status: trio.TaskStatus[MosnServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`; then drain within ``graceful_timeout``.

        Raises:
            AccessLogError: an access log file cannot be opened.
        """
        if self._log_writers is None:
            self._log_writers = _open_access_logs(self.listeners)
        try:
            async with trio.open_nursery() as upstream:
                self._upstream = upstream
                self._cluster_scope = await upstream.start(_run_clusters, self.clusters)
                async with trio.open_nursery() as nursery:
                    self._serving = nursery
                    for lst in self.all_listeners:
                        await nursery.start(lst.serve)
                    self.state = STATE_RUNNING
                    task_status.started(self)
                    await self._shutdown.wait()
                    self.state = STATE_GRACEFUL_STOPPING
                    log.info("draining (up to %.1fs)", self.graceful_timeout)
                    async with trio.open_nursery() as drains:
                        for lst in self.all_listeners:
                            drains.start_soon(lst.drain, self.graceful_timeout)
                # Listeners are done: upstream connection tasks go with them.
                upstream.cancel_scope.cancel()
        finally:
            self.clusters.close()
            for writer in self._log_writers or ():
                writer.release()  # flushed and closed by its thread, unless shared
            self._log_writers = []
            self.state = STATE_STOPPED
            self._stopped.set()
        log.info("stopped")

    def shutdown(self) -> None:
        """Begin the graceful drain (idempotent, callable from any task)."""
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def reload(self, config: MosnConfig | None = None) -> dict[str, Any]:
        """Serve ``config`` (default: :attr:`config_path` read again) from now on.

        Returns what changed: ``{"listeners": {"added", "removed", "kept"}, "clusters"}``.

        Raises:
            ReloadRefused: the file is broken, a name unknown, a new address cannot be
                bound, or the server is not running; nothing changed.
        """
        if self._serving is None or self._upstream is None or self._shutdown.is_set():
            raise ReloadRefused("the server is not running")
        async with self._reload_lock:
            if config is None:
                if self.config_path is None:
                    raise ReloadRefused("no config file to re-read (this config was built in code)")
                try:
                    config = load_config(self.config_path, require_listeners=True)
                except ConfigError as exc:
                    raise ReloadRefused(f"bad config {os.fspath(self.config_path)}:\n{exc}") from None
            try:
                clusters, listeners = build(config, reuse_port=self.reuse_port)
                for lst in listeners:
                    lst.find_listener = self.find_listener
            except ConfigError as exc:
                raise ReloadRefused(f"bad config:\n{exc}") from None
            running = {lst.requested_address: lst for lst in self.listeners}
            plan = [(new, running.pop(new.requested_address, None)) for new in listeners]
            removed = list(running.values())
            added = [new for new, old in plan if old is None]
            opened: list[Listener] = []
            for lst in added:
                try:
                    lst.bind()
                except OSError as exc:
                    for done in opened:
                        done.stop_accepting()
                    raise ReloadRefused(str(BindError(lst.name, lst.requested_address, exc))) from None
                opened.append(lst)
            try:
                writers = _open_access_logs(listeners)
            except AccessLogError as exc:
                for done in opened:
                    done.stop_accepting()
                raise ReloadRefused(str(exc)) from None
            # From here on nothing is refused.
            self.state = STATE_RELOADING
            try:
                old_clusters, old_scope = self.clusters, self._cluster_scope
                _carry_cluster_stats(old_clusters, clusters)
                self._cluster_scope = await self._upstream.start(_run_clusters, clusters)
                self.clusters = clusters
                for new, old in plan:
                    if old is not None:
                        _take_over(old, new, clusters)
                self.listeners = [new if old is None else old for new, old in plan]
                for lst in added:
                    await self._serving.start(lst.serve)
                    if self._shutdown.is_set():  # a shutdown began meanwhile: it drains too
                        self._serving.start_soon(lst.drain, self.graceful_timeout)
                for lst in removed:
                    self._serving.start_soon(lst.drain, self.graceful_timeout)
                self.config = config
                self.graceful_timeout = max((s.graceful_timeout for s in config.servers), default=30.0)
                old_writers, self._log_writers = self._log_writers or [], writers
                self._upstream.start_soon(self._retire, old_clusters, old_scope, removed, old_writers)
            finally:
                if not self._shutdown.is_set():
                    self.state = STATE_RUNNING
            self.reloads += 1
        if self.admin is not None and self.admin.listener.name == "admin":
            wanted = config.admin.address if config.admin is not None else None
            if wanted != self.admin.listener.requested_address:
                log.warning(
                    "reload: the admin address changes only with a restart (still %s)",
                    self.admin.listener.address,
                )
        names = {
            "added": [lst.name for lst in added],
            "removed": [lst.name for lst in removed],
            "kept": [old.name for _, old in plan if old is not None],
        }
        log.info(
            "reloaded the config: listeners added %s, removed %s, kept %s; %d clusters",
            names["added"] or "none",
            names["removed"] or "none",
            names["kept"] or "none",
            len(clusters.clusters),
        )
        return {"listeners": names, "clusters": sorted(clusters.clusters)}

    async def _retire(
        self,
        clusters: ClusterManager,
        scope: trio.CancelScope | None,
        removed: list[Listener],
        writers: list[AccessLogWriter],
    ) -> None:
        """Close replaced clusters once their requests are done (and the listeners that
        still use them have drained), ``graceful_timeout`` at most; then the access logs
        the old config named (those the new one names too stay open)."""
        try:
            with trio.move_on_after(self.graceful_timeout + 1):
                while True:
                    busy = any(c.active_requests for c in clusters.clusters.values())
                    if not busy and not any(lst.connections or lst.admitted for lst in removed):
                        break
                    await trio.sleep(0.05)
            if scope is not None:
                scope.cancel()  # _run_clusters closes the pools and stops the health checks
        finally:
            for writer in writers:
                writer.release()


async def run(
    config: MosnConfig,
    *,
    handle_signals: bool = True,
    reuse_port: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    control: str | None = None,
) -> None:
    """Build and serve ``config``; with ``handle_signals``, SIGTERM/SIGINT drain it,
    SIGHUP reloads ``config_path`` (a broken file is logged and changes nothing) and
    SIGUSR1 reopens the access log files (logrotate).

    ``reuse_port`` binds listeners with SO_REUSEPORT (one of several worker processes).
    ``control``: a supervised worker's admin socket (see :mod:`mosnpy.runtime.workers`);
    such a worker also drains when its supervisor is gone.
    """
    server = MosnServer(config, reuse_port=reuse_port, config_path=config_path, control=control)
    # Signals are caught before the first port opens: a SIGTERM sent as soon as the
    # port answers drains instead of killing the process.
    receiver = (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        if handle_signals
        else contextlib.nullcontext(None)
    )
    with receiver as signals:
        server.bind()  # here, so "address in use" surfaces as a plain OSError
        async with trio.open_nursery() as nursery:
            if signals is not None:
                nursery.start_soon(_on_signal, signals, server, nursery)
            await nursery.start(server.serve)
            if control is not None:
                nursery.start_soon(_watch_parent, server, os.getppid())
            await server.wait_stopped()
            nursery.cancel_scope.cancel()


async def _on_signal(signals: AsyncIterator[int], server: MosnServer, nursery: trio.Nursery) -> None:
    async for signum in signals:
        log.info("received %s", signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            nursery.start_soon(_reload_logged, server)
        elif signum == signal.SIGUSR1:
            log.info("reopening %d access log file(s)", reopen_all())
        else:
            server.shutdown()


async def _reload_logged(server: MosnServer) -> None:
    try:
        await server.reload()
    except ReloadRefused as exc:
        log.error("reload refused, the running config is unchanged: %s", exc)


async def _watch_parent(server: MosnServer, parent: int) -> None:
    """A worker whose supervisor died (it is re-parented) drains and exits."""
    while True:
        if os.getppid() != parent:
            break
        await trio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: draining", parent)
    server.shutdown()


async def _run_clusters(
    clusters: ClusterManager, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run one generation of clusters (pools, health checks) until its scope is
    cancelled (replaced by a reload, or the server stopped); then close it."""
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                clusters.start(nursery)
                task_status.started(scope)
                await trio.sleep_forever()
    finally:
        clusters.close()


def _open_access_logs(listeners: list[Listener]) -> list[AccessLogWriter]:
    """Open (retain) the access log writers of ``listeners``' proxy filters, each once.

    Raises:
        AccessLogError: a file cannot be opened (nothing is left open).
    """
    writers: dict[int, tuple[str, AccessLogWriter]] = {}
    for lst in listeners:
        for factory in lst.filter_factories:
            if isinstance(factory, ProxyFilterFactory):
                for access_log in factory.ctx.access_logs:
                    writers.setdefault(id(access_log.writer), (lst.name, access_log.writer))
    opened: list[AccessLogWriter] = []
    for name, writer in writers.values():
        try:
            writer.retain()
        except OSError as exc:
            for done in opened:
                done.release()
            raise AccessLogError(name, writer.path, exc) from exc
        opened.append(writer)
    return opened


def _carry_cluster_stats(old: ClusterManager, new: ClusterManager) -> None:
    """Clusters that keep their name keep their counters across a reload."""
    for name, cluster in new.clusters.items():
        before = old.clusters.get(name)
        if before is not None:
            cluster.counters = before.counters
            cluster.traffic = before.traffic
            cluster.request_duration = before.request_duration
            if cluster.health is not None and before.health is not None:
                # a host known to fail its checks stays out until a check passes
                failing = {h.address for h in before.hosts if h.check_failed}
                for host in cluster.hosts:
                    if host.address in failing:
                        host.set_check_failed(True)


def _take_over(old: Listener, new: Listener, clusters: ClusterManager) -> None:
    """Running listener ``old`` (same address as ``new``) serves ``new``'s config.

    Its socket and connections stay.  Each proxy filter's shared context is updated in
    place (counters kept), so requests on connections already open see the new routes,
    filters and clusters too; new connections get ``new``'s filter chain.
    """
    old.name = new.name
    old.listener_filters = new.listener_filters
    old.use_original_dst = new.use_original_dst
    old.tls, old.tls_fallback = new.tls, new.tls_fallback  # new certificates, for new connections
    old.filter_chains = new.filter_chains  # new chains (matches, certificates, filters), likewise
    old.handshake_timeout = new.handshake_timeout
    old.max_connections = new.max_connections
    if old.idle_timeout and new.idle_timeout:
        old.idle_timeout = new.idle_timeout
    carried: set[int] = set()
    for i, factory in enumerate(new.filter_factories):
        before = old.filter_factories[i] if i < len(old.filter_factories) else None
        if isinstance(factory, ProxyFilterFactory) and isinstance(before, ProxyFilterFactory):
            ctx = before.ctx
            ctx.take_settings(factory.ctx)
            factory.ctx = ctx
            carried.add(id(before))
    for before in old.filter_factories:
        if isinstance(before, ProxyFilterFactory) and id(before) not in carried:
            before.ctx.clusters = clusters  # its connections keep their routes, on live clusters
    old.filter_factories = new.filter_factories


class _LocalBackend:
    """The admin API's view of one :class:`MosnServer`."""

    def __init__(self, server: MosnServer) -> None:
        self.server = server

    def config(self) -> MosnConfig:
        return self.server.config

    async def stats(self) -> dict[str, Any]:
        return self.server.stats()

    def log_levels(self) -> dict[str, str]:
        return current_levels(self.server.config)

    async def update_log_level(self, log_path: str, level: str) -> bool:
        return set_level(self.server.config, log_path, level)

    async def reload(self) -> dict[str, Any]:
        return await self.server.reload()

    def state(self) -> int:
        return self.server.state


def _listener_stats(lst: Listener) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "address": lst.address,
        "connections": len(lst.connections),
        "connection_total": lst.connections_total,
        "refused": lst.refused,
        "traffic": lst.traffic.snapshot(),
    }
    if lst.filter_chains is not None:
        stats["no_filter_chain_match"] = lst.no_filter_chain_match  # closed: no chain took them
    for factory in lst.filter_factories:
        if isinstance(factory, ProxyFilterFactory):
            stats.update(factory.ctx.stats.snapshot())
    return stats


def _version() -> str:
    try:
        return version("mosnpy")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"
