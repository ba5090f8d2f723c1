"""Upstream hosts: one backend address of a cluster, with the state LBs read.

A :class:`Host` is deliberately a small mutable object shared by the cluster, its load
balancer, its connection pool, its health checker and its outlier detector: those two
flip :attr:`Host.healthy`, the pool counts :attr:`Host.active_requests`, and the load
balancer reads both live at pick time, so neither change needs the balancer rebuilt.
Membership changes (DNS, EDS) build a new host list and a new balancer instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mosnpy.config.models import HostConfig

__all__ = ["Host", "parse_address"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BAD_HOST_CHARS = frozenset(" \t\r\n/[]@?#")


def parse_address(addr: str) -> tuple[str, int]:
    """Split ``"host:port"`` / ``"[v6]:port"`` into ``(host, port)``.

    Raises:
        ValueError: no port, a port that is not a number in 0..65535, an empty host, an
            unbracketed IPv6 address, or characters no host name or IP can contain.
    """
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"bad address {addr!r}: missing ']'")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"bad address {addr!r}: missing port after ']'")
        port_s = rest[1:]
    else:
        host, sep, port_s = addr.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {addr!r}: missing port (want host:port)")
        if ":" in host:
            raise ValueError(f"bad address {addr!r}: an IPv6 address needs brackets, like [::1]:80")
    if not host:
        raise ValueError(f"bad address {addr!r}: empty host")
    if any(c in _BAD_HOST_CHARS for c in host):
        raise ValueError(f"bad address {addr!r}: invalid host {host!r}")
    if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5 or int(port_s) > 65535:
        raise ValueError(f"bad address {addr!r}: port must be a number from 0 to 65535")
    return host, int(port_s)


class Host:
    """One upstream endpoint.

    Attributes:
        address: ``"host:port"`` for TCP, or a filesystem path for a unix socket.
        hostname: a display / ``Host``-rewrite name ("" when the config gives none).
        weight: a positive integer; weighted balancers give picks in proportion to it.
        metadata: free-form config metadata (subset LB, canary labels).
        healthy: whether balancers may pick the host: neither failing active health
            checks nor ejected by outlier detection (Envoy's health flags).  Load
            balancers read this one plain attribute; the two flags below set it
            through :meth:`set_check_failed` and :meth:`set_ejected`.
        check_failed: active health checking found the host unhealthy.
        ejected: outlier detection ejected the host for a while.
        active_requests: in-flight requests, incremented and decremented by the pool;
            read by LB_LEAST_REQUEST.
    """

    __slots__ = (
        "active_requests",
        "address",
        "check_failed",
        "ejected",
        "healthy",
        "hostname",
        "metadata",
        "weight",
    )

    def __init__(
        self,
        address: str,
        hostname: str = "",
        weight: object = 1,  # (checked below; compiled, an ``int`` would take a bool as 1)
        metadata: Mapping[str, Any] | None = None,
        *,
        healthy: bool = True,
    ) -> None:
        if not address:
            raise ValueError("host address is empty")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError(f"host {address!r}: weight must be a positive integer, not {weight!r}")
        self.address = address
        self.hostname = hostname
        self.weight: int = weight
        self.metadata: Mapping[str, Any] = metadata or _EMPTY
        self.healthy = healthy
        self.check_failed = not healthy
        self.ejected = False
        self.active_requests = 0

    def set_check_failed(self, failed: bool) -> None:
        """Active health checking's verdict (the host stays out while ejected)."""
        self.check_failed = failed
        self.healthy = not (failed or self.ejected)

    def set_ejected(self, ejected: bool) -> None:
        """Outlier detection's verdict (the host stays out while failing checks)."""
        self.ejected = ejected
        self.healthy = not (ejected or self.check_failed)

    @classmethod
    def from_config(cls, cfg: HostConfig) -> Host:
        """Build a host from its config entry (weight must be >= 1)."""
        return cls(cfg.address, cfg.hostname, cfg.weight, cfg.metadata)

    def __repr__(self) -> str:
        state = " ejected" if self.ejected else "" if self.healthy else " unhealthy"
        return f"<Host {self.address} w={self.weight} active={self.active_requests}{state}>"
