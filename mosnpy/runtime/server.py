"""A running mosnpy: listeners, clusters and a graceful drain.

:class:`MosnServer` is what both ways in share: ``mosnpy -c config.json`` builds one
from a file, and library users build one from models in code.  ``serve()`` binds every
listener (reporting readiness through ``task_status``), then runs until
:meth:`MosnServer.shutdown` is called; shutdown drains: listeners stop accepting, idle
connections close, in-flight requests get ``graceful_timeout`` seconds to finish, and
whatever is left is closed.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import attrs
import trio

from mosnpy.admin import AdminServer
from mosnpy.config.models import MosnConfig
from mosnpy.net.listener import Listener
from mosnpy.proxy.factory import ProxyFilterFactory
from mosnpy.runtime.builder import build_clusters, build_listeners
from mosnpy.upstream.cluster import ClusterManager

__all__ = ["BindError", "MosnServer", "run"]

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


class MosnServer:
    """Listeners and clusters built from a :class:`~mosnpy.config.MosnConfig`.

    Raises:
        ConfigError: a name in the config is unknown to its registry (with its path).
    """

    def __init__(self, config: MosnConfig, *, reuse_port: bool = False) -> None:
        self.config = config
        self.clusters: ClusterManager = build_clusters(config)
        self.listeners: list[Listener] = build_listeners(config, self.clusters, reuse_port=reuse_port)
        self.graceful_timeout = max((s.graceful_timeout for s in config.servers), default=30.0)
        self.admin: AdminServer | None = None
        if config.admin is not None:
            self.admin = AdminServer(
                config.admin.address,
                config_dump=lambda: attrs.asdict(config),
                stats=self.stats,
                version=_version(),
            )
        self._shutdown = trio.Event()
        self._stopped = trio.Event()

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

    async def serve(self, *, task_status: trio.TaskStatus[MosnServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`; then drain within ``graceful_timeout``."""
        try:
            async with trio.open_nursery() as upstream:
                self.clusters.start(upstream)
                async with trio.open_nursery() as nursery:
                    for lst in self.all_listeners:
                        await nursery.start(lst.serve)
                    task_status.started(self)
                    await self._shutdown.wait()
                    log.info("draining (up to %.1fs)", self.graceful_timeout)
                    async with trio.open_nursery() as drains:
                        for lst in self.all_listeners:
                            drains.start_soon(lst.drain, self.graceful_timeout)
                # Listeners are done: upstream connection tasks go with them.
                upstream.cancel_scope.cancel()
        finally:
            self.clusters.close()
            self._stopped.set()
        log.info("stopped")

    def shutdown(self) -> None:
        """Begin the graceful drain (idempotent, callable from any task)."""
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def run(config: MosnConfig, *, handle_signals: bool = True, reuse_port: bool = False) -> None:
    """Build and serve ``config``; with ``handle_signals``, SIGTERM/SIGINT drain it.

    ``reuse_port`` binds listeners with SO_REUSEPORT (one of several worker processes).
    """
    server = MosnServer(config, reuse_port=reuse_port)
    server.bind()  # here, so "address in use" surfaces as a plain OSError
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        if handle_signals:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                nursery.start_soon(_on_signal, signals, server)
                await server.wait_stopped()
                nursery.cancel_scope.cancel()
        else:
            await server.wait_stopped()


async def _on_signal(signals: AsyncIterator[int], server: MosnServer) -> None:
    async for signum in signals:
        log.info("received %s", signal.Signals(signum).name)
        server.shutdown()


def _listener_stats(lst: Listener) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "address": lst.address,
        "connections": len(lst.connections),
        "connection_total": lst.connections_total,
        "refused": lst.refused,
    }
    for factory in lst.filter_factories:
        if isinstance(factory, ProxyFilterFactory):
            stats.update(factory.ctx.stats.snapshot())
    return stats


def _version() -> str:
    try:
        return version("mosnpy")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"
