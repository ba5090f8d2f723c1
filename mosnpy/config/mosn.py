"""MOSN's config quirks plugged into the generic structurer, and the public entry points
:func:`structure` and :func:`parse_proxy_config`.

The quirks handled here:

* durations: which ``float`` fields of the models take Go durations ("2s");
* MOSN's nested spellings of header values, weighted clusters and the admin address
  (see :mod:`mosnpy.config.wire`); the flat mosnpy spellings are accepted too;
* ``lbconfig``, MOSN's JSON name of a cluster's ``lb_config``;
* the ``proxy`` network filter: its free-form ``config`` is parsed into
  :class:`ProxyConfig` when the filter chain is loaded, so a typo fails at load time
  with its path, while ``FilterConfig.config`` keeps the original mapping for the
  filter's factory.  The legacy ``"X"`` protocol with ``extend_config.sub_protocol``
  is rewritten to the sub-protocol's name;
* keys MOSN has and mosnpy does not implement (:data:`UNSUPPORTED_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from mosnpy.config.checks import CHECKS
from mosnpy.config.engine import Context, Structurer
from mosnpy.config.errors import ConfigError, join_path
from mosnpy.config.models import (
    AdminConfig,
    ClusterConfig,
    FilterChainConfig,
    HeaderValueConfig,
    HealthCheckConfig,
    ListenerConfig,
    MosnConfig,
    ProxyConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    ServerConfig,
    WeightedClusterConfig,
)
from mosnpy.config.unsupported import UNSUPPORTED_KEYS
from mosnpy.config.wire import MosnAdmin, MosnHeaderValue, MosnWeightedCluster

__all__ = ["PROXY_FILTER", "STRUCTURER", "parse_proxy_config", "structure"]

T = TypeVar("T")

#: The ``type`` of the network filter whose config is a :class:`ProxyConfig`.
PROXY_FILTER = "proxy"
#: The legacy protocol name that means "the one in ``extend_config.sub_protocol``".
LEGACY_X = "X"

#: ``float`` fields that are durations: Go duration strings or numbers of seconds.
DURATION_FIELDS: Mapping[type, frozenset[str]] = {
    ServerConfig: frozenset({"graceful_timeout"}),
    ListenerConfig: frozenset({"connection_idle_timeout"}),
    ProxyConfig: frozenset({"request_headers_timeout"}),
    RouteActionConfig: frozenset({"timeout"}),
    RetryPolicyConfig: frozenset({"retry_timeout"}),
    ClusterConfig: frozenset({"connect_timeout", "idle_timeout"}),
    HealthCheckConfig: frozenset({"timeout", "interval", "interval_jitter"}),
}

#: Other spellings of a key, per class: ``{spelling: field key}``.
ALIASES: Mapping[type, Mapping[str, str]] = {
    ClusterConfig: {"lbconfig": "lb_config"},  # MOSN's JSON tag
}

#: Advice for unknown keys that are likely a misplaced section.
HINTS: Mapping[type, Mapping[str, str]] = {
    MosnConfig: {
        "routers": "routers go under servers[].routers",
        "listeners": "listeners go under servers[].listeners",
        "clusters": "clusters go under cluster_manager.clusters",
    },
}


def _header_value(s: Structurer, data: Any, path: str, ctx: Context) -> HeaderValueConfig:
    """MOSN's ``{"header": {"key", "value"}, "append"}``, or the flat model form."""
    if isinstance(data, Mapping) and "header" in data:
        wire = cast(MosnHeaderValue, s.structure_attrs(MosnHeaderValue, data, path, ctx))
        return HeaderValueConfig(key=wire.header.key, value=wire.header.value, append=wire.append)
    return cast(HeaderValueConfig, s.structure_attrs(HeaderValueConfig, data, path, ctx))


def _weighted_cluster(s: Structurer, data: Any, path: str, ctx: Context) -> WeightedClusterConfig:
    """MOSN's ``{"cluster": {"name", "weight"}}``, or the flat model form."""
    if isinstance(data, Mapping) and "cluster" in data:
        wire = cast(MosnWeightedCluster, s.structure_attrs(MosnWeightedCluster, data, path, ctx))
        return wire.cluster
    return cast(WeightedClusterConfig, s.structure_attrs(WeightedClusterConfig, data, path, ctx))


def _admin(s: Structurer, data: Any, path: str, ctx: Context) -> AdminConfig:
    """MOSN's ``{"address": {"socket_address": {...}}}``, or ``{"address": "host:port"}``."""
    if isinstance(data, Mapping) and isinstance(data.get("address"), Mapping):
        wire = cast(MosnAdmin, s.structure_attrs(MosnAdmin, data, path, ctx))
        sock = wire.address.socket_address
        host = f"[{sock.address}]" if ":" in sock.address else sock.address
        return AdminConfig(address=f"{host}:{sock.port_value}")
    return cast(AdminConfig, s.structure_attrs(AdminConfig, data, path, ctx))


def _proxy(s: Structurer, data: Any, path: str, ctx: Context) -> ProxyConfig:
    """The proxy filter's config, with legacy ``"X"`` rewritten to the sub-protocol."""
    proxy = cast(ProxyConfig, s.structure_attrs(ProxyConfig, data, path, ctx))
    sub_protocol = proxy.extend_config.get("sub_protocol")
    errors: list[ConfigError] = []

    def protocols(name: str, value: str) -> str:
        parts = value.split(",")
        if any(not part.strip() for part in parts):
            errors.append(ConfigError(join_path(path, name), f"empty protocol name in {value!r}"))
        elif LEGACY_X in parts:
            if isinstance(sub_protocol, str) and sub_protocol:
                return ",".join(sub_protocol if p == LEGACY_X else p for p in parts)
            errors.append(
                ConfigError(
                    join_path(path, name),
                    "the legacy protocol 'X' needs a protocol name in extend_config.sub_protocol",
                )
            )
        return value

    downstream = protocols("downstream_protocol", proxy.downstream_protocol)
    upstream = protocols("upstream_protocol", proxy.upstream_protocol)
    if errors:
        raise ConfigError.group(errors)
    return attrs.evolve(proxy, downstream_protocol=downstream, upstream_protocol=upstream)


def _filter_chain(s: Structurer, data: Any, path: str, ctx: Context) -> FilterChainConfig:
    """The chain as is, after parsing each ``proxy`` filter's config (recorded in ctx)."""
    chain = cast(FilterChainConfig, s.structure_attrs(FilterChainConfig, data, path, ctx))
    errors: list[ConfigError] = []
    for i, flt in enumerate(chain.filters):
        if flt.type == PROXY_FILTER:
            config_path = join_path(path, "filters", i, "config")
            try:
                ctx.records.append((config_path, s.structure(ProxyConfig, flt.config, config_path, ctx)))
            except ConfigError as e:
                errors.append(e)
    if errors:
        raise ConfigError.group(errors)
    return chain


#: The structurer for mosnpy's config models, with every MOSN quirk plugged in.
STRUCTURER = Structurer(
    hooks={
        AdminConfig: _admin,
        FilterChainConfig: _filter_chain,
        HeaderValueConfig: _header_value,
        ProxyConfig: _proxy,
        WeightedClusterConfig: _weighted_cluster,
    },
    checks=CHECKS,
    ignored=UNSUPPORTED_KEYS,
    durations=DURATION_FIELDS,
    aliases=ALIASES,
    hints=HINTS,
)


def structure(cls: type[T], data: Any, path: str = "", *, warnings: list[str] | None = None) -> T:
    """``data`` (plain JSON/YAML values) as an instance of attrs class ``cls``.

    For the config models and for plugins' own attrs config classes alike: unknown keys,
    wrong types and failed checks raise :class:`ConfigError` naming ``path`` plus the
    key (pass the path of ``data`` in the whole document, e.g.
    ``"servers[0].listeners[0].stream_filters[1].config"``).  A plugin marks a ``float``
    field as a duration with ``attrs.field(metadata={DURATION_METADATA: True})``.
    Warnings about ignored keys are logged and, if given, appended to ``warnings``.
    """
    ctx = Context()
    try:
        return cast(T, STRUCTURER.structure(cls, data, path, ctx))
    finally:
        if warnings is not None:
            warnings.extend(ctx.warnings)


def parse_proxy_config(
    config: Mapping[str, Any], path: str = "", *, warnings: list[str] | None = None
) -> ProxyConfig:
    """The ``proxy`` network filter's ``config`` mapping as a :class:`ProxyConfig`.

    ``path`` is where ``config`` sits, e.g.
    ``"servers[0].listeners[0].filter_chains[0].filters[0].config"``.  The legacy
    ``"X"`` + ``extend_config.sub_protocol`` form comes back rewritten.
    """
    return structure(ProxyConfig, config, path, warnings=warnings)
