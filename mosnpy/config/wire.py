"""MOSN's nested spellings of a few simple values, as attrs classes.

MOSN (following Envoy) wraps some values one level deeper than mosnpy's models do.  The
loader structures the MOSN form into these classes first, so a problem inside the
wrapper is reported at its real path (``...weighted_clusters[0].cluster.weight``), and
then flattens them into the model:

* header to add: ``{"header": {"key": k, "value": v}, "append": false}``
  → :class:`~mosnpy.config.models.HeaderValueConfig`
* weighted cluster: ``{"cluster": {"name": n, "weight": w}}``
  → :class:`~mosnpy.config.models.WeightedClusterConfig`
* admin: ``{"address": {"socket_address": {"address": a, "port_value": p}}}``
  → :class:`~mosnpy.config.models.AdminConfig` with ``address="a:p"``
"""

from __future__ import annotations

import attrs

from mosnpy.config.models import WeightedClusterConfig

__all__ = [
    "MosnAddress",
    "MosnAdmin",
    "MosnHeaderValue",
    "MosnHeaderValueInner",
    "MosnWeightedCluster",
    "SocketAddress",
]


@attrs.frozen(kw_only=True)
class MosnHeaderValueInner:
    """``{"key": k, "value": v}``; MOSN's ``HeaderValue``."""

    key: str
    value: str = ""


@attrs.frozen(kw_only=True)
class MosnHeaderValue:
    """``{"header": {...}, "append": bool}``; MOSN's ``HeaderValueOption``."""

    header: MosnHeaderValueInner
    append: bool = False


@attrs.frozen(kw_only=True)
class MosnWeightedCluster:
    """``{"cluster": {"name": n, "weight": w}}``; MOSN's ``WeightedCluster``."""

    cluster: WeightedClusterConfig


@attrs.frozen(kw_only=True)
class SocketAddress:
    """``{"address": host, "port_value": port}``."""

    address: str
    port_value: int


@attrs.frozen(kw_only=True)
class MosnAddress:
    """``{"socket_address": {...}}``."""

    socket_address: SocketAddress


@attrs.frozen(kw_only=True)
class MosnAdmin:
    """``{"address": {"socket_address": {...}}}``; MOSN's ``Admin``."""

    address: MosnAddress
