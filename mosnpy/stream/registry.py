"""The stream filter registry: config ``type`` → factory class.

A factory class is called with the filter's ``config`` mapping (once per listener) and
must raise ``ValueError`` (or ``mosnpy.config.ConfigError``) on bad config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mosnpy.registry import Registry
from mosnpy.stream.filter import StreamFilterFactory

__all__ = ["STREAM_FILTERS"]

STREAM_FILTERS: Registry[Callable[[Mapping[str, Any]], StreamFilterFactory]] = Registry(
    "stream filter", "mosnpy.stream_filters"
)
