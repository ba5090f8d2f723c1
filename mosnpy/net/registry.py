"""Registries of the NET/IO layer's extension points."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mosnpy.net.filter import ListenerFilter, NetworkFilterFactory
from mosnpy.registry import Registry

__all__ = ["LISTENER_FILTERS", "NETWORK_FILTERS"]

#: name → callable(config, context) building a network filter factory for one listener.
#: ``context`` is whatever the runtime hands down (routers, clusters, stream filters).
NETWORK_FILTERS: Registry[Callable[..., NetworkFilterFactory]] = Registry(
    "network filter", "mosnpy.network_filters"
)

#: name → callable(config) building a listener filter.
LISTENER_FILTERS: Registry[Callable[[Mapping[str, Any]], ListenerFilter]] = Registry(
    "listener filter", "mosnpy.listener_filters"
)
