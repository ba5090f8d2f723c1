"""Config → listeners: look every name up in its registry, with the key's path on error.

The loader has already checked the document's shape; here names meet registries
(protocols, network and stream filters, load balancers), so an unknown name is reported
as ``servers[0].listeners[0].stream_filters[1].type: unknown stream filter 'falut'
(known: fault, header_mutation)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from mosnpy.config.errors import ConfigError
from mosnpy.config.models import ListenerConfig, MosnConfig
from mosnpy.net.filter import NetworkFilterFactory
from mosnpy.net.listener import Listener
from mosnpy.net.registry import LISTENER_FILTERS, NETWORK_FILTERS
from mosnpy.registry import Registry, UnknownNameError
from mosnpy.router import Routers
from mosnpy.stream.filter import StreamFilterFactory
from mosnpy.stream.registry import STREAM_FILTERS
from mosnpy.upstream.cluster import Cluster, ClusterManager

__all__ = ["build_clusters", "build_listeners"]

T = TypeVar("T")

#: MOSN's default connection idle timeout.
DEFAULT_IDLE_TIMEOUT = 90.0


@attrs.frozen
class _BuildContext:
    routers: Routers
    clusters: ClusterManager
    stream_filters: Sequence[StreamFilterFactory]
    listener_name: str
    path: str


def build_clusters(config: MosnConfig) -> ClusterManager:
    manager = ClusterManager()
    for i, cc in enumerate(config.cluster_manager.clusters):
        try:
            manager.add(Cluster(cc))
        except UnknownNameError as exc:
            key = "type" if exc.kind == "cluster type" else "lb_type"
            raise ConfigError(f"cluster_manager.clusters[{i}].{key}", str(exc)) from None
        except ValueError as exc:
            raise ConfigError(f"cluster_manager.clusters[{i}]", str(exc)) from None
    return manager


def build_listeners(
    config: MosnConfig, clusters: ClusterManager, *, reuse_port: bool = False
) -> list[Listener]:
    """Build every listener of every server (not yet bound).

    ``reuse_port`` binds with SO_REUSEPORT, so several worker processes share a port.
    """
    listeners: list[Listener] = []
    for si, server in enumerate(config.servers):
        try:
            routers = Routers.from_configs(server.routers)
        except ValueError as exc:
            raise ConfigError(f"servers[{si}].routers", str(exc)) from None
        for li, lc in enumerate(server.listeners):
            lst = _build_listener(lc, f"servers[{si}].listeners[{li}]", routers, clusters)
            lst.reuse_port = reuse_port
            listeners.append(lst)
    return listeners


def _build_listener(lc: ListenerConfig, path: str, routers: Routers, clusters: ClusterManager) -> Listener:
    stream_filters: list[StreamFilterFactory] = []
    for i, sf in enumerate(lc.stream_filters):
        fpath = f"{path}.stream_filters[{i}]"
        factory_cls = _lookup(STREAM_FILTERS, sf.type, fpath)
        stream_filters.append(_call_factory(factory_cls, f"{fpath}.config", sf.config))
    network: list[NetworkFilterFactory] = []
    for ci, chain in enumerate(lc.filter_chains):
        for fi, nf in enumerate(chain.filters):
            fpath = f"{path}.filter_chains[{ci}].filters[{fi}]"
            make = _lookup(NETWORK_FILTERS, nf.type, fpath)
            build = _BuildContext(routers, clusters, tuple(stream_filters), lc.name, fpath)
            network.append(_call_factory(make, f"{fpath}.config", nf.config, build))
    if not network:
        raise ConfigError(f"{path}.filter_chains", "a listener needs at least one network filter")
    listener_filters = []
    for i, lf in enumerate(lc.listener_filters):
        fpath = f"{path}.listener_filters[{i}]"
        make_lf = _lookup(LISTENER_FILTERS, lf.type, fpath)
        listener_filters.append(_call_factory(make_lf, f"{fpath}.config", lf.config))
    address = lc.address if lc.network != "unix" or lc.address.startswith("/") else f"unix:{lc.address}"
    idle = DEFAULT_IDLE_TIMEOUT if lc.connection_idle_timeout is None else lc.connection_idle_timeout
    return Listener(
        lc.name,
        address,
        network,
        listener_filters=listener_filters,
        max_connections=lc.max_connections,
        idle_timeout=idle,
    )


def _lookup(registry: Registry[T], name: str, path: str) -> T:
    """``registry.get(name)``; an unknown name is a ConfigError at ``{path}.type``."""
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{path}.type", str(exc)) from None


def _call_factory(factory: Callable[..., T], path: str, config: Mapping[str, Any], *args: object) -> T:
    """Call a plugin factory; its errors come back as ConfigErrors at ``path``.

    A factory that parses its config with :func:`mosnpy.config.structure` and the path
    ``"config"`` reports relative paths; they are re-rooted at ``path`` here.
    """
    try:
        return factory(config, *args)
    except ConfigError as exc:
        raise ConfigError.group(ConfigError(_reroot(e.path, path), e.problem) for e in exc.errors) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, str(exc)) from None


def _reroot(sub: str, path: str) -> str:
    if sub == "config" or sub.startswith(("config.", "config[")):
        return path + sub[len("config") :]
    return sub
