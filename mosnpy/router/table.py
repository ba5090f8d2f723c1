"""Route tables: from a request's host, path and headers to a :class:`Route`.

Theory of operation
-------------------
A :class:`RouteTable` is one ``routers[]`` entry of the config (one
``router_config_name``), compiled once when the config is loaded and then only read,
so it can be shared by every connection and swapped whole on reload.

Matching a request is two steps, both MOSN's:

1. *Virtual host.*  The request's host (HTTP ``Host``/``:authority``, or whatever a
   stream filter put in ``x-mosn-host`` for RPC) is lower-cased and split into host and
   port, then looked up in a :class:`DomainIndex` in priority order: exact host+port,
   exact host with ``:*``, ``*.suffix`` with the port, ``*.suffix:*`` (longest suffix
   first), then the default ``*``.  The index is dicts, so the cost does not grow with
   the number of domains.  With only a default virtual host the host is not even parsed.
2. *Route.*  The virtual host's routes are tried in config order and the first whose
   path test and header tests all hold wins.  The path test sees the path without its
   query string; it is a prefix, an exact path, a full regex match, or nothing (any
   path).  A route with no path test and only header tests is how RPC routes work
   (``{"name": "service", "value": "com.foo.Svc"}``); a header value of ``".*"``
   matches any value present (MOSN's RPC wildcard).  See ``matchers.py``.

Per request this costs one ``str.lower``, one ``find('?')``, and for each route tried
an int compare plus a ``startswith`` / ``==`` / precompiled ``fullmatch``, plus a header
lookup per header test.  No regex is compiled and nothing is copied per request; the
returned :class:`Route` carries precomputed header edits, weights and rewrites.

:class:`Routers` holds every table by name, for the proxy filter's
``router_config_name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from mosnpy.config.models import RouterConfig
from mosnpy.protocol.headers import HeaderMap
from mosnpy.registry import UnknownNameError
from mosnpy.router.matchers import PathKind, RouterConfigError
from mosnpy.router.route import Route
from mosnpy.router.virtualhost import DomainIndex, VirtualHost

__all__ = ["RouteTable", "Routers"]

_PREFIX: Final = PathKind.PREFIX
_EXACT: Final = PathKind.EXACT
_REGEX: Final = PathKind.REGEX


class RouteTable:
    """The compiled form of one router config: virtual hosts and their routes."""

    __slots__ = ("_index", "name", "virtual_hosts")

    def __init__(self, name: str, virtual_hosts: Iterable[VirtualHost]) -> None:
        self.name = name
        self.virtual_hosts: tuple[VirtualHost, ...] = tuple(virtual_hosts)
        self._index = DomainIndex(self.virtual_hosts)

    @classmethod
    def from_config(cls, cfg: RouterConfig) -> RouteTable:
        """Compile ``cfg``.

        Raises:
            RouterConfigError: a bad regex, a clashing or malformed domain, weights that
                add up to 0, an unsupported redirect code.  The message names the place.
        """
        where = f"router {cfg.router_config_name!r}"
        router_headers = (cfg.request_headers_to_remove, cfg.request_headers_to_add)
        vhosts = []
        for i, vh_cfg in enumerate(cfg.virtual_hosts):
            routes = [
                Route.from_config(r, vh_cfg, router_headers, what=f"{where} virtual_hosts[{i}].routers[{j}]")
                for j, r in enumerate(vh_cfg.routers)
            ]
            vhosts.append(VirtualHost(vh_cfg.name, vh_cfg.domains, routes))
        try:
            return cls(cfg.router_config_name, vhosts)
        except RouterConfigError as e:
            raise RouterConfigError(f"{where}: {e}") from None

    def find_virtual_host(self, host: str) -> VirtualHost | None:
        """The virtual host a request for ``host`` goes to (None: no match, no default)."""
        return self._index.find(host)

    def match(self, host: str, path: str, headers: HeaderMap) -> Route | None:
        """The first route that takes this request, or None (MOSN answers 404).

        Args:
            host: the request's host, any case, maybe with ``:port``.
            path: the request path; a ``?query`` part is ignored for matching.
            headers: the request headers (for RPC, the frame's header view).
        """
        vh = self._index.find(host)
        if vh is None:
            return None
        q = path.find("?")
        if q >= 0:
            path = path[:q]
        # Route.matches inlined: this loop is the hot path of every request.
        for route in vh.routes:
            pm = route.path_matcher
            kind = pm.kind
            if kind == _PREFIX:
                if not path.startswith(pm.value):
                    continue
            elif kind == _EXACT:
                if path != pm.value:
                    continue
            elif kind == _REGEX:
                assert pm.regex is not None
                if pm.regex.fullmatch(path) is None:
                    continue
            for hm in route.header_matchers:
                got = headers.get(hm.name)
                if got is None:
                    break
                if hm.regex is not None:
                    if hm.regex.fullmatch(got) is None:
                        break
                elif hm.value is not None and got != hm.value:
                    break
            else:
                return route
        return None

    def __repr__(self) -> str:
        return f"<RouteTable {self.name!r} virtual_hosts={[vh.name for vh in self.virtual_hosts]}>"


class Routers:
    """Every route table, by ``router_config_name``.

    Read-only once built; a config reload builds a new one.  :meth:`get` raises
    :class:`~mosnpy.registry.UnknownNameError` (a ``KeyError``) whose message lists the
    known names, so a typo in a proxy's ``router_config_name`` is easy to see.
    """

    __slots__ = ("_tables",)

    def __init__(self, tables: Iterable[RouteTable] = ()) -> None:
        self._tables: dict[str, RouteTable] = {}
        for t in tables:
            if t.name in self._tables:
                raise RouterConfigError(f"router_config_name {t.name!r} is defined twice")
            self._tables[t.name] = t

    @classmethod
    def from_configs(cls, configs: Iterable[RouterConfig]) -> Routers:
        """Compile every router config (names must be unique)."""
        return cls(RouteTable.from_config(c) for c in configs)

    def get(self, name: str) -> RouteTable:
        """The table called ``name``.

        Raises:
            UnknownNameError: no such table; the message lists the known names.
        """
        try:
            return self._tables[name]
        except KeyError:
            raise UnknownNameError("router config", name, self.names()) from None

    def __getitem__(self, name: str) -> RouteTable:
        return self.get(name)

    def names(self) -> list[str]:
        """All table names, sorted."""
        return sorted(self._tables)

    def as_mapping(self) -> Mapping[str, RouteTable]:
        """A read-only view of name → table (for admin dumps and iteration)."""
        return MappingProxyType(self._tables)

    def __contains__(self, name: object) -> bool:
        return name in self._tables

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"<Routers {self.names()}>"
