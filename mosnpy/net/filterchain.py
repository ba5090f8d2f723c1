"""Choosing one of a listener's filter chains for each connection (Envoy's
``filter_chain_match``).

Why: one port often serves several things — two host names with their own
certificates and their own routes, TLS and plaintext side by side, HTTP/2 and
HTTP/1.1 by ALPN.  A listener whose config gives a chain a ``filter_chain_match``
(:class:`~mosnpy.config.models.FilterChainMatchConfig`) keeps each chain apart: its
own network filters (so its own proxy config, routes and clusters) and its own TLS
contexts, and picks one chain per connection *before* any TLS handshake, from what
the connection shows: its addresses and, peeked without consuming it
(:mod:`mosnpy.net.tls_inspector`), the TLS ClientHello's SNI and ALPN.

How, as Envoy does it: the criteria are taken in a fixed order — destination port,
destination address (``prefix_ranges``), server name, transport protocol,
application protocols, source address (``source_prefix_ranges``), source port.  At
each step the chains still in the running are narrowed to those that match the
connection most specifically for that criterion: an exact port beats no port; an
exact server name beats a wildcard, a longer wildcard (``*.b.example.com``) a shorter
one (``*.example.com``); a longer address prefix a shorter one; for ALPN the
client's most preferred protocol some chain names.  Only when no chain names a
matching value do the chains that leave the criterion out go on.  There is no
backtracking: a connection to port 443 whose server name none of the port-443 chains
accepts is refused, even though a chain without a port would take it.  No chain left:
the listener closes the connection (and counts it).

The listener peeks at the ClientHello only when some chain matches on a server
name, an application protocol or a transport protocol; a listener with one chain and
no ``filter_chain_match`` never comes here at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import attrs

from mosnpy.config.models import FilterChainMatchConfig, cidr_network

if TYPE_CHECKING:
    import ssl

    from mosnpy.net.filter import NetworkFilterFactory

__all__ = [
    "ConnectionInfo",
    "FilterChain",
    "FilterChainMatch",
    "FilterChains",
    "parse_address",
    "select_filter_chain",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class FilterChainMatch:
    """A chain's criteria, ready for matching (names lower-cased, ranges parsed); an
    empty criterion accepts every connection."""

    destination_port: int | None = None
    prefix_ranges: tuple[IPNetwork, ...] = ()
    server_names: frozenset[str] = frozenset()
    transport_protocol: str = ""
    application_protocols: frozenset[str] = frozenset()
    source_prefix_ranges: tuple[IPNetwork, ...] = ()
    source_ports: frozenset[int] = frozenset()

    @classmethod
    def from_config(cls, config: FilterChainMatchConfig | None) -> FilterChainMatch:
        """The runtime form of a chain's ``filter_chain_match`` (None: match all).

        Raises:
            ValueError: a range is not an IP network (the config loader reports it
                first, with its path).
        """
        if config is None:
            return cls()
        return cls(
            destination_port=config.destination_port,
            prefix_ranges=tuple(cidr_network(r) for r in config.prefix_ranges),
            server_names=frozenset(name.lower() for name in config.server_names),
            transport_protocol=config.transport_protocol,
            application_protocols=frozenset(config.application_protocols),
            source_prefix_ranges=tuple(cidr_network(r) for r in config.source_prefix_ranges),
            source_ports=frozenset(config.source_ports),
        )


@attrs.define
class ConnectionInfo:
    """What is known of a fresh connection when its chain is chosen.

    ``transport_protocol`` is ``"tls"``, ``"raw_buffer"`` or ``""`` (not looked at);
    ``server_name`` is the ClientHello's SNI (lower case, ``""``: none) and
    ``application_protocols`` its ALPN list, in the client's order.
    """

    destination_port: int | None = None
    destination_ip: IPAddress | None = None
    server_name: str = ""
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()
    source_ip: IPAddress | None = None
    source_port: int | None = None


@attrs.frozen
class FilterChain:
    """One of a listener's chains: which connections it takes, how TLS ends on it
    (None: it does not; ``tls_fallback``: plaintext is served too, MOSN's
    ``fall_back``) and the network filter factories each of its connections gets.
    ``name`` is for logs (``filter_chains[1]``)."""

    factories: tuple[NetworkFilterFactory, ...]
    match: FilterChainMatch = FilterChainMatch()
    tls: ssl.SSLContext | None = None
    tls_fallback: bool = False
    name: str = ""


class FilterChains:
    """A listener's chains, and what must be learnt of a connection to choose one."""

    __slots__ = ("chains", "needs_client_hello", "needs_destination", "needs_source", "needs_transport")

    def __init__(self, chains: Sequence[FilterChain]) -> None:
        if not chains:
            raise ValueError("a listener needs at least one filter chain")
        self.chains = tuple(chains)
        matches = [chain.match for chain in self.chains]
        #: some chain matches on SNI or ALPN: parse the ClientHello
        self.needs_client_hello = any(m.server_names or m.application_protocols for m in matches)
        #: some chain matches on what the first bytes show (TLS or not, SNI, ALPN)
        self.needs_transport = self.needs_client_hello or any(m.transport_protocol for m in matches)
        #: some chain matches on the destination address or port
        self.needs_destination = any(m.destination_port is not None or m.prefix_ranges for m in matches)
        #: some chain matches on the client's address or port
        self.needs_source = any(m.source_prefix_ranges or m.source_ports for m in matches)

    def __iter__(self) -> Iterator[FilterChain]:
        return iter(self.chains)

    def __len__(self) -> int:
        return len(self.chains)

    def select(self, info: ConnectionInfo) -> FilterChain | None:
        """The chain for a connection (see :func:`select_filter_chain`)."""
        return select_filter_chain(self.chains, info)


def select_filter_chain(chains: Sequence[FilterChain], info: ConnectionInfo) -> FilterChain | None:
    """The chain that matches ``info`` most specifically, criterion by criterion in
    Envoy's order (see the module doc), or None when none matches.

    Chains still tied at the end match alike (a loaded config refuses such chains);
    the first of them wins.
    """
    candidates = list(chains)
    for step in _STEPS:
        candidates = step(candidates, info)
        if not candidates:
            return None
    return candidates[0]


_Step = Callable[[list[FilterChain], ConnectionInfo], list[FilterChain]]


def _destination_port(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    if info.destination_port is not None:
        exact = [c for c in chains if c.match.destination_port == info.destination_port]
        if exact:
            return exact
    return [c for c in chains if c.match.destination_port is None]


def _longest_prefix(
    chains: list[FilterChain],
    ip: IPAddress | None,
    ranges: Callable[[FilterChainMatch], tuple[IPNetwork, ...]],
) -> list[FilterChain]:
    if ip is not None:
        best, found = -1, []
        for chain in chains:
            length = max((net.prefixlen for net in ranges(chain.match) if ip in net), default=-1)
            if length > best:
                best, found = length, [chain]
            elif length == best and length >= 0:
                found.append(chain)
        if found:
            return found
    return [c for c in chains if not ranges(c.match)]


def _destination_ip(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    return _longest_prefix(chains, info.destination_ip, lambda m: m.prefix_ranges)


def _server_name(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    name = info.server_name
    if name:
        exact = [c for c in chains if name in c.match.server_names]
        if exact:
            return exact
        labels = name.split(".")
        for i in range(1, len(labels)):  # *.b.example.com, then *.example.com, then *.com
            wildcard = "*." + ".".join(labels[i:])
            found = [c for c in chains if wildcard in c.match.server_names]
            if found:
                return found
    return [c for c in chains if not c.match.server_names]


def _transport_protocol(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    if info.transport_protocol:
        exact = [c for c in chains if c.match.transport_protocol == info.transport_protocol]
        if exact:
            return exact
    return [c for c in chains if not c.match.transport_protocol]


def _application_protocols(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    for protocol in info.application_protocols:  # the client's preference first
        found = [c for c in chains if protocol in c.match.application_protocols]
        if found:
            return found
    return [c for c in chains if not c.match.application_protocols]


def _source_ip(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    return _longest_prefix(chains, info.source_ip, lambda m: m.source_prefix_ranges)


def _source_port(chains: list[FilterChain], info: ConnectionInfo) -> list[FilterChain]:
    if info.source_port is not None:
        exact = [c for c in chains if info.source_port in c.match.source_ports]
        if exact:
            return exact
    return [c for c in chains if not c.match.source_ports]


_STEPS: tuple[_Step, ...] = (
    _destination_port,
    _destination_ip,
    _server_name,
    _transport_protocol,
    _application_protocols,
    _source_ip,
    _source_port,
)


def parse_address(address: str) -> tuple[IPAddress | None, int | None]:
    """``"ip:port"`` / ``"[v6]:port"`` as (address, port); None for what it lacks (a
    unix socket path, a host name).  An IPv4-mapped IPv6 address is its IPv4 one."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        return None, None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip: IPAddress | None = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(port_text)
