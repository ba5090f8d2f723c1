"""The ``ORIGINAL_DST`` cluster type and its balancer, ``LB_ORIGINAL_DST``.

An ORIGINAL_DST cluster has no configured hosts: each connection (each request) goes
to where its downstream connection was going before an iptables rule redirected it to
mosnpy, the original destination that the ``original_dst`` listener filter found
(:mod:`mosnpy.net.original_dst`).  The balancer reads it from
:attr:`LbContext.original_destination <mosnpy.upstream.lb.LbContext>`; when the caller
gave no context, or a context without it, from
:data:`~mosnpy.net.original_dst.current_original_dst`, which the listener sets in the
tasks of each connection that has one (MOSN reads it from its Go context the same way).
A connection without one (it was not redirected) gets no host: the HTTP proxy answers
502 and ``tcp_proxy`` closes the connection, rather than connecting to itself.

Config (MOSN's, Envoy's rule: no other balancer can know the destination)::

    {"name": "passthrough", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
     "connect_timeout": "2s"}

``hosts`` must be empty and ``lb_type`` LB_ORIGINAL_DST; either mistake is a config
error.  Hosts are made on demand, one per destination, so that in-flight counts and
connection pools (keyed by address) are per destination; the balancer remembers the
:data:`MAX_HOSTS` most recently used ones and forgets idle ones beyond that (Envoy
drops unused hosts on a timer; here by count).  It offers no hosts to choose among
(:attr:`OriginalDst.hosts` is empty): a retry goes to the same destination, never to
another client's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from mosnpy.config.models import ClusterConfig
from mosnpy.net.original_dst import current_original_dst
from mosnpy.upstream.host import Host, parse_address
from mosnpy.upstream.lb import LbContext

__all__ = ["LB_ORIGINAL_DST", "MAX_HOSTS", "OriginalDst", "original_dst_hosts"]

LB_ORIGINAL_DST = "LB_ORIGINAL_DST"

#: destinations remembered per cluster (idle ones beyond this are forgotten)
MAX_HOSTS = 1024


def original_dst_hosts(config: ClusterConfig) -> list[Host]:
    """The ``ORIGINAL_DST`` entry of the cluster type registry: no hosts (they are
    made per destination by :class:`OriginalDst`).

    Raises:
        ValueError: the cluster lists hosts, or its ``lb_type`` is not LB_ORIGINAL_DST.
    """
    if config.hosts:
        raise ValueError(
            "an ORIGINAL_DST cluster takes no hosts: each connection goes to its own original destination"
        )
    if config.lb_type != LB_ORIGINAL_DST:
        raise ValueError(
            f"an ORIGINAL_DST cluster needs lb_type {LB_ORIGINAL_DST}, not {config.lb_type!r} "
            "(no other balancer knows where a connection was going)"
        )
    return []


class OriginalDst:
    """LB_ORIGINAL_DST: the host is the downstream connection's original destination."""

    __slots__ = ("_known", "max_hosts")

    def __init__(self, hosts: Sequence[Host] = (), config: Mapping[str, Any] | None = None) -> None:
        del hosts, config  # hosts come from each connection; nothing to configure
        self._known: OrderedDict[str, Host] = OrderedDict()
        self.max_hosts = MAX_HOSTS

    def __repr__(self) -> str:
        return f"<OriginalDst destinations={len(self._known)}>"

    @property
    def hosts(self) -> Sequence[Host]:
        """Empty: there is nothing to choose among (see the module doc)."""
        return ()

    @property
    def destinations(self) -> list[Host]:
        """The destinations remembered, least recently used first."""
        return list(self._known.values())

    def choose(self, context: LbContext | None = None) -> Host | None:
        """The host of the original destination; None when there is none."""
        dst = context.original_destination if context is not None else None
        if dst is None:
            dst = current_original_dst.get()
            if dst is None:
                return None
        host = self._known.get(dst)
        if host is not None:
            self._known.move_to_end(dst)
            return host
        try:
            parse_address(dst)
        except ValueError:
            return None
        host = self._known[dst] = Host(dst)
        if len(self._known) > self.max_hosts:
            self._forget()
        return host

    def _forget(self) -> None:
        """Drop the least recently used destinations with nothing in flight."""
        excess = len(self._known) - self.max_hosts
        for address in [a for a, h in self._known.items() if not h.active_requests][:excess]:
            del self._known[address]
