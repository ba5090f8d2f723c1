"""mosnpy: a layered, MOSN-style proxy framework on trio.

Three ways in:

* ``import mosnpy`` and build a proxy in code (:class:`ProxyBuilder`, or the config
  models plus :class:`MosnServer`), with your own network filters, stream filters and
  load balancers registered by name in the registries below;
* plugins, found through entry points (``mosnpy.protocols``, ``mosnpy.stream_filters``,
  ``mosnpy.network_filters``, ``mosnpy.load_balancers``, ...);
* ``mosnpy -c config.json`` to run a proxy from a MOSN v2 config file.

The layers live in subpackages (``net``, ``protocol``, ``stream``, ``proxy``, with
``router``, ``upstream`` and ``config`` beside them); this module re-exports the names a
user needs.
"""

from mosnpy.builder import ProxyBuilder
from mosnpy.config import ConfigError, load_config, parse_config
from mosnpy.config.models import (
    ClusterConfig,
    FilterChainConfig,
    FilterConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    RouteConfig,
    RouterConfig,
    ServerConfig,
)
from mosnpy.net import (
    LISTENER_FILTERS,
    NETWORK_FILTERS,
    Connection,
    FilterStatus,
    ReadFilter,
    WriteFilter,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.registry import PROTOCOLS
from mosnpy.registry import Registry, UnknownNameError
from mosnpy.runtime import MosnServer, run
from mosnpy.stream import (
    STREAM_FILTERS,
    FilterPhase,
    Stream,
    StreamFilterChain,
    StreamFilterStatus,
)
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import LbContext, LoadBalancer
from mosnpy.upstream.registry import LOAD_BALANCERS

__version__ = "0.1.0"

__all__ = [
    # running a proxy
    "MosnServer",
    "ProxyBuilder",
    "run",
    # configuration
    "ClusterConfig",
    "ConfigError",
    "FilterChainConfig",
    "FilterConfig",
    "HostConfig",
    "ListenerConfig",
    "MosnConfig",
    "RouteConfig",
    "RouterConfig",
    "ServerConfig",
    "load_config",
    "parse_config",
    # extension points
    "LISTENER_FILTERS",
    "LOAD_BALANCERS",
    "NETWORK_FILTERS",
    "PROTOCOLS",
    "STREAM_FILTERS",
    "Registry",
    "UnknownNameError",
    # what extensions implement and see
    "Connection",
    "FilterPhase",
    "FilterStatus",
    "HeaderMap",
    "Host",
    "LbContext",
    "LoadBalancer",
    "ReadFilter",
    "Stream",
    "StreamFilterChain",
    "StreamFilterStatus",
    "WriteFilter",
]
