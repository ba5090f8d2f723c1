"""MOSN's config quirks plugged into the generic structurer, and the public entry points
:func:`structure` and :func:`parse_proxy_config`.

The quirks handled here:

* durations: which ``float`` fields of the models take Go durations ("2s");
* MOSN's nested spellings of header values, weighted clusters and the admin address
  (see :mod:`mosnpy.config.wire`); the flat mosnpy spellings are accepted too;
* ``lbconfig``, MOSN's JSON name of a cluster's ``lb_config``;
* keys match case-insensitively, as Go's ``encoding/json`` matches them (MOSN's
  examples write ``"Name"`` in clusters), here and in the nested forms above;
* the ``proxy`` network filter: its free-form ``config`` is parsed into
  :class:`ProxyConfig` when the filter chain is loaded, so a typo fails at load time
  with its path, while ``FilterConfig.config`` keeps the mapping for the filter's
  factory (keys spelled as the model spells them, unsupported keys left out, so the
  factory's own parse warns about nothing twice).  The legacy ``"X"`` protocol with
  ``extend_config.sub_protocol`` is rewritten to the sub-protocol's name;
* MOSN's legacy ``connection_manager`` network filter, whose ``config`` is a router
  config: it is taken out of the filter chain and its router config joins
  ``servers[].routers`` (as MOSN adds it to its router manager);
* a listener without a ``name`` is named after its address (MOSN makes up a name);
* keys MOSN has and mosnpy does not implement (:data:`UNSUPPORTED_KEYS`), and
  values accepted without effect (:data:`~mosnpy.config.notices.NOTICES`): logged
  once each, by path.
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
    FilterChainMatchConfig,
    FilterConfig,
    HeaderValueConfig,
    HealthCheckConfig,
    ListenerConfig,
    MosnConfig,
    ProxyConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouterConfig,
    ServerConfig,
    WeightedClusterConfig,
)
from mosnpy.config.notices import NOTICES, proxy_notices
from mosnpy.config.unsupported import UNSUPPORTED_HINTS, UNSUPPORTED_KEYS
from mosnpy.config.wire import MosnAdmin, MosnHeaderValue, MosnWeightedCluster

__all__ = [
    "CONNECTION_MANAGER_FILTER",
    "PROXY_FILTER",
    "STRUCTURER",
    "RouterOrigin",
    "parse_proxy_config",
    "structure",
]

T = TypeVar("T")

#: The ``type`` of the network filter whose config is a :class:`ProxyConfig`.
PROXY_FILTER = "proxy"
#: MOSN's legacy network filter whose ``config`` is a router config.
CONNECTION_MANAGER_FILTER = "connection_manager"


@attrs.frozen
class RouterOrigin:
    """Recorded (in ``Context.records``, under the router's path in the model) for a
    router config declared by a ``connection_manager`` filter at path ``source``."""

    source: str


def _key(data: Mapping[str, Any], key: str) -> str | None:
    """The key of ``data`` that Go's ``encoding/json`` would take for ``key`` (the same
    key, else one equal but for case), or None."""
    if key in data:
        return key
    folded = key.lower()
    return next((k for k in data if isinstance(k, str) and k.lower() == folded), None)


def _get(data: Mapping[str, Any], key: str) -> Any:
    """``data``'s value for ``key`` as :func:`_key` finds it; None when absent."""
    found = _key(data, key)
    return None if found is None else data[found]


#: The legacy protocol name that means "the one in ``extend_config.sub_protocol``".
LEGACY_X = "X"

#: ``float`` fields that are durations: Go duration strings or numbers of seconds.
DURATION_FIELDS: Mapping[type, frozenset[str]] = {
    ServerConfig: frozenset({"graceful_timeout"}),
    ListenerConfig: frozenset({"connection_idle_timeout"}),
    ProxyConfig: frozenset({"request_headers_timeout", "stream_idle_timeout"}),
    RouteActionConfig: frozenset({"timeout"}),
    RetryPolicyConfig: frozenset({"retry_timeout"}),
    ClusterConfig: frozenset({"connect_timeout", "idle_timeout"}),
    HealthCheckConfig: frozenset({"timeout", "interval", "interval_jitter"}),
}

#: Other spellings of a key, per class: ``{spelling: field key}``.
ALIASES: Mapping[type, Mapping[str, str]] = {
    ClusterConfig: {"lbconfig": "lb_config"},  # MOSN's JSON tag
}

_NO_CRITERION = "not supported by mosnpy: a filter chain cannot match on it"

#: Advice for unknown keys: a likely misplaced section, a criterion not implemented.
HINTS: Mapping[type, Mapping[str, str]] = {
    MosnConfig: {
        "routers": "routers go under servers[].routers",
        "listeners": "listeners go under servers[].listeners",
        "clusters": "clusters go under cluster_manager.clusters",
    },
    # Envoy's criteria mosnpy does not match on: an error, since skipping one would
    # let the chain match connections it was meant to refuse.
    FilterChainMatchConfig: {
        "direct_source_prefix_ranges": _NO_CRITERION,
        "source_type": _NO_CRITERION,
    },
}


def _header_value(s: Structurer, data: Any, path: str, ctx: Context) -> HeaderValueConfig:
    """MOSN's ``{"header": {"key", "value"}, "append"}``, or the flat model form."""
    if isinstance(data, Mapping) and _key(data, "header") is not None:
        wire = cast(MosnHeaderValue, s.structure_attrs(MosnHeaderValue, data, path, ctx))
        return HeaderValueConfig(key=wire.header.key, value=wire.header.value, append=wire.append)
    return cast(HeaderValueConfig, s.structure_attrs(HeaderValueConfig, data, path, ctx))


def _weighted_cluster(s: Structurer, data: Any, path: str, ctx: Context) -> WeightedClusterConfig:
    """MOSN's ``{"cluster": {"name", "weight"}}``, or the flat model form."""
    if isinstance(data, Mapping) and _key(data, "cluster") is not None:
        wire = cast(MosnWeightedCluster, s.structure_attrs(MosnWeightedCluster, data, path, ctx))
        return wire.cluster
    return cast(WeightedClusterConfig, s.structure_attrs(WeightedClusterConfig, data, path, ctx))


def _admin(s: Structurer, data: Any, path: str, ctx: Context) -> AdminConfig:
    """MOSN's ``{"address": {"socket_address": {...}}}``, or ``{"address": "host:port"}``."""
    if isinstance(data, Mapping) and isinstance(_get(data, "address"), Mapping):
        wire = cast(MosnAdmin, s.structure_attrs(MosnAdmin, data, path, ctx))
        sock = wire.address.socket_address
        host = f"[{sock.address}]" if ":" in sock.address else sock.address
        return AdminConfig(address=f"{host}:{sock.port_value}")
    return cast(AdminConfig, s.structure_attrs(AdminConfig, data, path, ctx))


def _proxy(s: Structurer, data: Any, path: str, ctx: Context) -> ProxyConfig:
    """The proxy filter's config, with legacy ``"X"`` rewritten to the sub-protocol."""
    proxy = cast(ProxyConfig, s.structure_attrs(ProxyConfig, data, path, ctx))
    sub_protocol = _get(proxy.extend_config, "sub_protocol")
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
    """The chain after parsing each ``proxy`` filter's config (recorded in ctx) and
    taking each ``connection_manager`` filter's router config out (recorded too)."""
    chain = cast(FilterChainConfig, s.structure_attrs(FilterChainConfig, data, path, ctx))
    errors: list[ConfigError] = []
    filters: list[FilterConfig] = []
    for i, flt in enumerate(chain.filters):
        config_path = join_path(path, "filters", i, "config")
        try:
            if flt.type == PROXY_FILTER:
                proxy = cast(ProxyConfig, s.structure(ProxyConfig, flt.config, config_path, ctx))
                ctx.records.append((config_path, proxy))
                for notice_path, message in proxy_notices(proxy, config_path):
                    ctx.warn(notice_path, message)
                flt = attrs.evolve(flt, config=s.normalize(ProxyConfig, flt.config))
            elif flt.type == CONNECTION_MANAGER_FILTER:
                ctx.records.append((config_path, s.structure(RouterConfig, flt.config, config_path, ctx)))
                continue
        except ConfigError as e:
            errors.append(e)
        filters.append(flt)
    if errors:
        raise ConfigError.group(errors)
    return attrs.evolve(chain, filters=filters)


def _listener(s: Structurer, data: Any, path: str, ctx: Context) -> ListenerConfig:
    """A listener; one without a ``name`` is named after its ``address``."""
    if isinstance(data, Mapping) and _get(data, "name") is None:
        address = _get(data, "address")
        if isinstance(address, str) and address:
            data = {**data, "name": address}
    return cast(ListenerConfig, s.structure_attrs(ListenerConfig, data, path, ctx))


def _server(s: Structurer, data: Any, path: str, ctx: Context) -> ServerConfig:
    """A server, plus the router configs its listeners' ``connection_manager`` filters
    declared (after its own ``routers``; each recorded with a :class:`RouterOrigin`)."""
    first = len(ctx.records)
    server = cast(ServerConfig, s.structure_attrs(ServerConfig, data, path, ctx))
    inline = [(p, r) for p, r in ctx.records[first:] if isinstance(r, RouterConfig)]
    if not inline:
        return server
    own = len(server.routers)
    for k, (source, _) in enumerate(inline):
        ctx.records.append((join_path(path, "routers", own + k), RouterOrigin(source)))
    return attrs.evolve(server, routers=(*server.routers, *(r for _, r in inline)))


#: The structurer for mosnpy's config models, with every MOSN quirk plugged in.
STRUCTURER = Structurer(
    hooks={
        AdminConfig: _admin,
        FilterChainConfig: _filter_chain,
        HeaderValueConfig: _header_value,
        ListenerConfig: _listener,
        ProxyConfig: _proxy,
        ServerConfig: _server,
        WeightedClusterConfig: _weighted_cluster,
    },
    checks=CHECKS,
    ignored=UNSUPPORTED_KEYS,
    durations=DURATION_FIELDS,
    aliases=ALIASES,
    hints=HINTS,
    ignored_hints=UNSUPPORTED_HINTS,
    notices=NOTICES,
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
