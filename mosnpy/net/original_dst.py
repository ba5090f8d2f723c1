"""The ``original_dst`` listener filter: where a redirected connection was going.

An iptables ``REDIRECT`` (or ``DNAT``) rule sends a connection meant for somewhere else
to mosnpy's listener; the kernel's connection tracking keeps the original destination,
and ``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` (``SOL_IPV6, IP6T_SO_ORIGINAL_DST`` for
IPv6) returns it as a ``sockaddr_in`` / ``sockaddr_in6``.  The filter records it as
``"host:port"`` under :data:`ORIGINAL_DST` in the connection's values, and makes it
the connection's local address, as Envoy does (so ``tcp_proxy`` routes on the
destination match the address the client asked for, not mosnpy's port).

A connection that was not redirected gets no value: the kernel has no record of it, or
its original destination is the listener's own address, and connecting there would
only loop back into this listener.

What uses it (MOSN's transparent interception):

* a listener with ``use_original_dst: true`` hands the connection to the listener
  that owns the original destination, if any (MOSN's virtual listeners, usually with
  ``bind_port: false``): see :class:`~mosnpy.net.listener.Listener`;
* an ``ORIGINAL_DST`` cluster connects to it (:mod:`mosnpy.upstream.original_dst`),
  reading it from the load balancer's context or, for code that builds no context,
  from :data:`current_original_dst`, which the listener sets in the tasks of each
  connection that has one (MOSN carries it in its Go context the same way).

The filter takes no configuration (a ``config`` given is ignored, as MOSN does).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mosnpy.net.filter import AcceptedSocket, FilterStatus

__all__ = [
    "IP6T_SO_ORIGINAL_DST",
    "ORIGINAL_DST",
    "SO_ORIGINAL_DST",
    "OriginalDstFilter",
    "current_original_dst",
    "original_destination",
]

log = logging.getLogger("mosnpy.net")

#: ``linux/netfilter_ipv4.h``; the IPv6 one (``linux/netfilter_ipv6/ip6_tables.h``)
#: has the same number, asked at level SOL_IPV6.
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80

#: the key of a connection's values holding its original destination (``"ip:port"``)
ORIGINAL_DST = "original_dst"

#: the original destination of the downstream connection the current task works for
#: (None: none, or not working for a downstream connection); set by the listener
current_original_dst: ContextVar[str | None] = ContextVar("mosnpy_original_dst", default=None)

_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28


def original_destination(sock: socket.socket) -> str | None:
    """The address ``sock`` (an accepted TCP socket) was sent to before a NAT rule
    redirected it, as ``"ip:port"`` / ``"[v6]:port"``; None when the kernel has no
    record (not tracked, not TCP/IP, not Linux).

    For a connection that was not redirected the kernel answers with the socket's own
    local address.
    """
    if sock.family == socket.AF_INET6:
        try:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6)
        except OSError:
            pass  # an IPv4 client of a dual-stack socket: asked at SOL_IP below
        else:
            if len(raw) >= 24:
                host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
                return f"[{host}]:{int.from_bytes(raw[2:4], 'big')}"
    elif sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
    except OSError:
        return None
    if len(raw) < 8:
        return None
    return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"


class OriginalDstFilter:
    """Records a redirected connection's original destination (see the module doc)."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        del config  # nothing to configure

    async def on_accept(self, accepted: AcceptedSocket) -> FilterStatus:
        sock = accepted.socket
        if sock is None:
            return FilterStatus.CONTINUE
        dst = original_destination(sock)
        if dst is None or dst == accepted.local_address:
            log.debug("original_dst: %s was not redirected", accepted.remote_address)
            return FilterStatus.CONTINUE
        accepted.values[ORIGINAL_DST] = dst
        accepted.local_address = dst
        return FilterStatus.CONTINUE
