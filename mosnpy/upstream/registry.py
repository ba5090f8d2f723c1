"""The upstream layer's extension points.

``LOAD_BALANCERS`` maps a cluster's ``lb_type`` to a :class:`LoadBalancer` class.  The
built-ins (LB_ROUNDROBIN, LB_WEIGHTED_ROUNDROBIN, LB_RANDOM, LB_LEAST_REQUEST) arrive
through the ``mosnpy.load_balancers`` entry points in ``setup.cfg``, the same way a
plugin's balancer does; code may also call ``LOAD_BALANCERS.register(name, cls)``.
Unlike MOSN, which silently falls back to round robin, an unknown ``lb_type`` is an
error that lists the known names.
"""

from __future__ import annotations

from mosnpy.registry import Registry
from mosnpy.upstream.lb import LoadBalancer

__all__ = ["LOAD_BALANCERS"]

LOAD_BALANCERS: Registry[type[LoadBalancer]] = Registry("load balancer", "mosnpy.load_balancers")
