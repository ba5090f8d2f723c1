"""The models back to MOSN's JSON: what ``/api/v1/config_dump`` serves.

The inverse of the loader: :func:`dump_config` walks a
:class:`~mosnpy.config.models.MosnConfig` and writes each field under the key the loader
reads it from, in MOSN's spelling — durations as Go strings (``"2s"``), the admin
address as ``{"address": {"socket_address": {...}}}``, headers to add as
``{"header": {"key", "value"}, "append"}``, weighted clusters as
``{"cluster": {"name", "weight"}}``.  Plugin configs (a filter's ``config``, a proxy's
``extend_config``) are the mappings the file had.  Unset optional sections (``None``)
are left out.

The round trip is exact: ``parse_config(dump_config(c)) == c`` for every config the
loader produced, so a dump saved to a file runs with ``mosnpy -c`` and builds the same
proxy.  Keys the loader skipped as "not supported" are not in the models, so they are
not in the dump either.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import attrs

from mosnpy.config.duration import format_duration
from mosnpy.config.engine import DURATION_METADATA
from mosnpy.config.models import AdminConfig, HeaderValueConfig, MosnConfig, WeightedClusterConfig
from mosnpy.config.mosn import DURATION_FIELDS

__all__ = ["dump_config", "dump_section"]


def dump_config(config: MosnConfig) -> dict[str, Any]:
    """``config`` as MOSN's JSON document (plain dicts, lists, strings and numbers)."""
    out = _dump(config)
    assert isinstance(out, dict)
    return out


def dump_section(config: MosnConfig, section: str) -> dict[str, Any] | None:
    """One of MOSN's ``config_dump`` query views.

    ``section`` is ``allrouters`` / ``allclusters`` / ``alllisteners`` (name → dump),
    ``mosnconfig`` (everything but listeners, routers and clusters) or
    ``router=NAME`` / ``cluster=NAME`` / ``listener=NAME``; None when unknown.
    """
    doc = dump_config(config)
    servers = doc.get("servers", [])
    routers = {r["router_config_name"]: r for s in servers for r in s.get("routers", [])}
    listeners = {lst["name"]: lst for s in servers for lst in s.get("listeners", [])}
    clusters = {c["name"]: c for c in doc.get("cluster_manager", {}).get("clusters", [])}
    kind, _, name = section.partition("=")
    if kind == "allrouters":
        return routers
    if kind == "allclusters":
        return clusters
    if kind == "alllisteners":
        return listeners
    if kind == "mosnconfig":
        base = {k: v for k, v in doc.items() if k != "cluster_manager"}
        base["servers"] = [{k: v for k, v in s.items() if k not in ("listeners", "routers")} for s in servers]
        return base
    table = {"router": routers, "cluster": clusters, "listener": listeners}.get(kind)
    if table is None:
        return None
    return table.get(name)


def _dump(value: Any, *, duration: bool = False) -> Any:
    if value is None:
        return None
    if attrs.has(type(value)):
        return _dump_attrs(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | str):
        return value
    if duration and isinstance(value, int | float):
        return format_duration(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        return [_dump(v, duration=duration) for v in value]
    return value


def _dump_attrs(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    if cls is AdminConfig:
        return _admin(obj)
    if cls is HeaderValueConfig:
        return {"header": {"key": obj.key, "value": obj.value}, "append": obj.append}
    if cls is WeightedClusterConfig:
        return {"cluster": {"name": obj.name, "weight": obj.weight}}
    durations = DURATION_FIELDS.get(cls, frozenset())
    out: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        is_duration = field.name in durations or bool(field.metadata.get(DURATION_METADATA))
        value = _dump(getattr(obj, field.name), duration=is_duration)
        if value is not None:
            out[field.alias or field.name] = value
    return out


def _admin(admin: AdminConfig) -> dict[str, Any]:
    """``host:port`` as MOSN's socket address (a bracketed IPv6 host unwrapped)."""
    host, sep, port = admin.address.rpartition(":")
    if not sep or not port.isdigit():
        return {"address": admin.address}  # not host:port: the flat form loads it back
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return {"address": {"socket_address": {"address": host, "port_value": int(port)}}}
