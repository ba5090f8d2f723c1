"""The router layer: virtual hosts and route matching, compiled from ``routers`` config.

Pure logic, no I/O.  The proxy asks a :class:`RouteTable` (found in :class:`Routers` by
the proxy filter's ``router_config_name``) for the :class:`Route` of each request, then
reads the cluster, timeout, retry policy, header edits and rewrites from it.
"""

from mosnpy.router.matchers import HeaderMatcher, PathKind, PathMatcher, RouterConfigError, strip_query
from mosnpy.router.mutation import HeaderMutation
from mosnpy.router.route import REDIRECT_CODES, Route
from mosnpy.router.table import Routers, RouteTable
from mosnpy.router.virtualhost import DomainIndex, VirtualHost, split_host_port

__all__ = [
    "REDIRECT_CODES",
    "DomainIndex",
    "HeaderMatcher",
    "HeaderMutation",
    "PathKind",
    "PathMatcher",
    "Route",
    "RouteTable",
    "RouterConfigError",
    "Routers",
    "VirtualHost",
    "split_host_port",
    "strip_query",
]
