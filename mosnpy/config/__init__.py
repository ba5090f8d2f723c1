"""The config layer: MOSN's v2 ``config.json`` layout as frozen attrs models, and the
loader that builds them from JSON or YAML with a path in every error.

    from mosnpy.config import load_config, ConfigError

    warnings: list[str] = []
    try:
        config = load_config("config.json", warnings=warnings)
    except ConfigError as e:
        print(e)  # one "servers[0].listeners[0].address: ..." line per problem

Plugins parse their own ``config`` mappings with :func:`structure` to get the same
checks and messages.
"""

from mosnpy.config.duration import format_duration, parse_duration
from mosnpy.config.engine import DURATION_METADATA
from mosnpy.config.errors import ConfigError
from mosnpy.config.loader import load_config, parse_config, read_document
from mosnpy.config.models import (
    AccessLogConfig,
    AdminConfig,
    CidrRangeConfig,
    CircuitBreakerConfig,
    ClusterConfig,
    ClusterManagerConfig,
    DirectResponseConfig,
    FilterChainConfig,
    FilterChainMatchConfig,
    FilterConfig,
    HeaderMatcherConfig,
    HeaderValueConfig,
    HealthCheckConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    ProxyConfig,
    RedirectConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    ServerConfig,
    VirtualHostConfig,
    WeightedClusterConfig,
)
from mosnpy.config.mosn import parse_proxy_config, structure
from mosnpy.config.unsupported import UNSUPPORTED_KEYS

__all__ = [
    "DURATION_METADATA",
    "UNSUPPORTED_KEYS",
    "AccessLogConfig",
    "AdminConfig",
    "CidrRangeConfig",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "ClusterManagerConfig",
    "ConfigError",
    "DirectResponseConfig",
    "FilterChainConfig",
    "FilterChainMatchConfig",
    "FilterConfig",
    "HeaderMatcherConfig",
    "HeaderValueConfig",
    "HealthCheckConfig",
    "HostConfig",
    "ListenerConfig",
    "MosnConfig",
    "ProxyConfig",
    "RedirectConfig",
    "RetryPolicyConfig",
    "RouteActionConfig",
    "RouteConfig",
    "RouteMatchConfig",
    "RouterConfig",
    "ServerConfig",
    "VirtualHostConfig",
    "WeightedClusterConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_proxy_config",
    "read_document",
    "structure",
]
