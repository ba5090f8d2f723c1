"""Virtual hosts and the domain index that picks one for a request's host.

Domains follow MOSN (``routers_impl.go``).  Each domain is lower-cased and split into a
host and a port, where the port is a number, ``*`` (any port) or empty (no port):

============================  ==============================================  ========
domain                        matches a request host of                       priority
============================  ==============================================  ========
``api.example.com:8080``      exactly ``api.example.com:8080``                1
``api.example.com``           exactly ``api.example.com`` (no port)           1
``api.example.com:*``         ``api.example.com`` with any port or none       2
``*.example.com:8080``        ``<something>.example.com:8080``                3
``*.example.com``             ``<something>.example.com`` (no port)           3
``*.example.com:*``           ``<something>.example.com``, any port or none   4
``*`` (or ``*:*``)            anything: the default virtual host              5
============================  ==============================================  ========

So, as in MOSN and Envoy, a domain without a port does *not* match a host that carries
one: write ``example.com:*`` for "this host on any port".  Among wildcards the longest
suffix wins, and the ``*`` must stand for at least one character.  A domain may only
start with ``*`` (``*foo.com`` is allowed and means the suffix ``foo.com``).

Deviation: MOSN finds no virtual host at all (so 404) for an empty or unparsable host
when it has more than the default; mosnpy uses the default ``*`` then, since ``*``
promises to match anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mosnpy.router.matchers import RouterConfigError
from mosnpy.router.route import Route

__all__ = ["DomainIndex", "VirtualHost", "split_host_port"]


def split_host_port(hostport: str) -> tuple[str, str]:
    """Split ``"host:port"`` like Go's ``net.SplitHostPort``, tolerating a missing port.

    ``"[::1]:80"`` gives ``("::1", "80")``; ``"example.com"`` gives
    ``("example.com", "")``; a bare IPv6 address (several colons, no brackets) is all
    host.  Never raises: routing must not fail on a strange Host header.
    """
    if hostport.startswith("["):
        end = hostport.find("]")
        if end > 0:
            rest = hostport[end + 1 :]
            if rest == "":
                return hostport[1:end], ""
            if rest[0] == ":":
                return hostport[1:end], rest[1:]
        return hostport, ""
    colon = hostport.rfind(":")
    if colon < 0 or hostport.find(":") != colon:  # no port, or an unbracketed IPv6
        return hostport, ""
    return hostport[:colon], hostport[colon + 1 :]


class VirtualHost:
    """A named, ordered list of routes; the first route that matches wins."""

    __slots__ = ("domains", "name", "routes")

    def __init__(self, name: str, domains: Sequence[str], routes: Sequence[Route]) -> None:
        self.name = name
        self.domains: tuple[str, ...] = tuple(d.lower() for d in domains)
        self.routes: tuple[Route, ...] = tuple(routes)

    def __repr__(self) -> str:
        return f"<VirtualHost {self.name!r} domains={list(self.domains)} routes={len(self.routes)}>"


# While building: port -> suffix length -> suffix -> virtual host.
_WildcardBuild = dict[str, dict[int, dict[str, VirtualHost]]]


class DomainIndex:
    """Maps a request host to a virtual host in MOSN's priority order (module doc).

    Built once; :meth:`find` does at most two dict lookups for exact domains and one
    dict lookup per distinct wildcard-suffix length, never a scan of all domains.
    """

    __slots__ = ("_default", "_exact", "_only_default", "_wildcard")

    def __init__(self, vhosts: Iterable[VirtualHost]) -> None:
        # host -> port ("" / digits / "*") -> virtual host
        self._exact: dict[str, dict[str, VirtualHost]] = {}
        # port -> [(suffix length, {suffix: virtual host})], longest suffix first
        wildcard: _WildcardBuild = {}
        self._default: VirtualHost | None = None
        for vh in vhosts:
            for domain in vh.domains:
                self._add(domain, vh, wildcard)
        self._wildcard: dict[str, tuple[tuple[int, dict[str, VirtualHost]], ...]] = {
            port: tuple(sorted(by_len.items(), reverse=True)) for port, by_len in wildcard.items()
        }
        self._only_default = not self._exact and not self._wildcard

    def _add(self, domain: str, vh: VirtualHost, wildcard: _WildcardBuild) -> None:
        where = f"virtual host {vh.name!r} domain {domain!r}"
        if not domain:
            raise RouterConfigError(f"{where}: empty domain")
        host, port = split_host_port(domain)
        if port and port != "*" and not (port.isascii() and port.isdigit()):
            raise RouterConfigError(f"{where}: port must be a number or '*'")
        if host == "*" and port in ("", "*"):
            if self._default is not None:
                first = self._default.name
                raise RouterConfigError(f"{where}: a second default virtual host (first: {first!r})")
            self._default = vh
        elif "*" not in host:
            if not host:
                raise RouterConfigError(f"{where}: empty host")
            ports = self._exact.setdefault(host, {})
            if port in ports:
                raise RouterConfigError(f"{where}: already used by virtual host {ports[port].name!r}")
            ports[port] = vh
        elif host[0] == "*" and "*" not in host[1:]:
            suffix = host[1:]
            by_suffix = wildcard.setdefault(port, {}).setdefault(len(suffix), {})
            if suffix in by_suffix:
                raise RouterConfigError(f"{where}: already used by virtual host {by_suffix[suffix].name!r}")
            by_suffix[suffix] = vh
        else:
            raise RouterConfigError(f"{where}: '*' may only start a domain")

    @property
    def default(self) -> VirtualHost | None:
        """The ``*`` virtual host, if any."""
        return self._default

    def find(self, host: str) -> VirtualHost | None:
        """The virtual host for a request's host (any case, with or without a port)."""
        if self._only_default:
            return self._default
        name, port = split_host_port(host.lower())
        if name:
            ports = self._exact.get(name)
            if ports is not None:
                vh = ports.get(port) or ports.get("*")
                if vh is not None:
                    return vh
            if self._wildcard:
                n = len(name)
                for key in (port, "*"):
                    for length, by_suffix in self._wildcard.get(key, ()):
                        if length < n:
                            vh = by_suffix.get(name[n - length :])
                            if vh is not None:
                                return vh
                    if port == "*":  # a literal "*" port: do not look it up twice
                        break
        return self._default
