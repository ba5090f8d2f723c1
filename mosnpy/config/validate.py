"""Checks that need the whole config: names unique, references resolving.

* listener names, router config names and cluster names are unique (routers and
  clusters are global in MOSN, across all ``servers``);
* a domain appears in at most one virtual host of a router config;
* every ``cluster_name`` and weighted cluster of a route names a cluster in
  ``cluster_manager.clusters``;
* every proxy filter's ``router_config_name`` (when given) names a router config.

Each problem is reported at the path of the key that refers or repeats.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from mosnpy.config.errors import ConfigError, join_path
from mosnpy.config.models import MosnConfig, ProxyConfig, RouterConfig

__all__ = ["validate"]


def validate(
    config: MosnConfig,
    proxies: Iterable[tuple[str, ProxyConfig]],
    router_paths: Mapping[str, str] | None = None,
) -> list[ConfigError]:
    """All cross-reference problems of ``config``; ``proxies`` are the parsed proxy
    filter configs with their paths (as recorded while loading).  ``router_paths``
    maps a router's path in the model (``servers[0].routers[1]``) to where the document
    declared it, when that is elsewhere (a ``connection_manager`` filter's config)."""
    where = router_paths or {}
    errors: list[ConfigError] = []
    clusters = _unique(
        errors,
        "cluster",
        (
            (join_path("cluster_manager.clusters", i, "name"), c.name)
            for i, c in enumerate(config.cluster_manager.clusters)
        ),
    )
    routers: list[tuple[str, RouterConfig]] = [
        (where.get(join_path("servers", s, "routers", r), join_path("servers", s, "routers", r)), router)
        for s, server in enumerate(config.servers)
        for r, router in enumerate(server.routers)
    ]
    router_names = _unique(
        errors,
        "router config",
        ((join_path(p, "router_config_name"), r.router_config_name) for p, r in routers),
    )
    _unique(
        errors,
        "listener",
        (
            (join_path("servers", s, "listeners", i, "name"), lst.name)
            for s, server in enumerate(config.servers)
            for i, lst in enumerate(server.listeners)
            if lst.name
        ),
    )
    for path, router in routers:
        errors.extend(_domains(path, router))
        errors.extend(_cluster_refs(path, router, clusters))
    for path, proxy in proxies:
        name = proxy.router_config_name
        if name and name not in router_names:
            errors.append(
                ConfigError(
                    join_path(path, "router_config_name"),
                    f"unknown router config {name!r} (known: {_known(router_names)})",
                )
            )
    return errors


def _unique(errors: list[ConfigError], kind: str, named: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{name: path of its first definition}``; repeats are appended to ``errors``."""
    first: dict[str, str] = {}
    for path, name in named:
        if name in first:
            errors.append(ConfigError(path, f"duplicate {kind} name {name!r} (first at {first[name]})"))
        else:
            first[name] = path
    return first


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def _domains(path: str, router: RouterConfig) -> Iterator[ConfigError]:
    owner: dict[str, int] = {}
    for v, vhost in enumerate(router.virtual_hosts):
        for d, domain in enumerate(vhost.domains):
            key = domain.lower()
            if key in owner and owner[key] != v:
                yield ConfigError(
                    join_path(path, "virtual_hosts", v, "domains", d),
                    f"domain {domain!r} is already used by virtual_hosts[{owner[key]}]",
                )
            owner.setdefault(key, v)


def _cluster_refs(path: str, router: RouterConfig, clusters: dict[str, str]) -> Iterator[ConfigError]:
    for v, vhost in enumerate(router.virtual_hosts):
        for r, route in enumerate(vhost.routers):
            action = route.route
            if action is None:
                continue
            action_path = join_path(path, "virtual_hosts", v, "routers", r, "route")
            refs = (
                [(join_path(action_path, "cluster_name"), action.cluster_name)] if action.cluster_name else []
            )
            refs += [
                (join_path(action_path, "weighted_clusters", w), wc.name)
                for w, wc in enumerate(action.weighted_clusters)
            ]
            for ref_path, name in refs:
                if name not in clusters:
                    yield ConfigError(ref_path, f"unknown cluster {name!r} (known: {_known(clusters)})")
