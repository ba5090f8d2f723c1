"""The upstream layer's extension points.

``LOAD_BALANCERS`` maps a cluster's ``lb_type`` to a :class:`LoadBalancer` class.  The
built-ins (LB_ROUNDROBIN, LB_WEIGHTED_ROUNDROBIN, LB_RANDOM, LB_LEAST_REQUEST) arrive
through the ``mosnpy.load_balancers`` entry points in ``setup.cfg``, the same way a
plugin's balancer does; code may also call ``LOAD_BALANCERS.register(name, cls)``.
Unlike MOSN, which silently falls back to round robin, an unknown ``lb_type`` is an
error that lists the known names.

``CLUSTER_TYPES`` maps a cluster's ``type`` to a function that gives its hosts.
``SIMPLE`` uses the configured hosts as they are; ``STRICT_DNS`` does too, since a host
name is looked up (without blocking) at each connect, which follows DNS changes.
``ORIGINAL_DST`` has none: its balancer, ``LB_ORIGINAL_DST``, makes one per original
destination (:mod:`mosnpy.upstream.original_dst`).  An unknown type (MOSN's ``EDS``)
is an error, not a silent SIMPLE.
"""

from __future__ import annotations

from collections.abc import Callable

from mosnpy.config.models import ClusterConfig
from mosnpy.registry import Registry
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import LoadBalancer

__all__ = ["CLUSTER_TYPES", "LOAD_BALANCERS", "static_hosts"]

LOAD_BALANCERS: Registry[type[LoadBalancer]] = Registry("load balancer", "mosnpy.load_balancers")


def static_hosts(config: ClusterConfig) -> list[Host]:
    """The configured hosts (SIMPLE and STRICT_DNS clusters)."""
    return [Host.from_config(h) for h in config.hosts]


CLUSTER_TYPES: Registry[Callable[[ClusterConfig], list[Host]]] = Registry(
    "cluster type", "mosnpy.cluster_types"
)
