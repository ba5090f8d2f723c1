"""``dubbo_stream``: MOSN's dubbo stream filter, so MOSN's dubbo configs run unchanged.

It copies the frame's ``service`` into the stream's host (MOSN's ``x-mosn-host``
variable), which is what virtual-host ``domains`` match: a router can then give each
dubbo service its own virtual host.  It takes no config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mosnpy.stream import FilterPhase, Stream, StreamFilterChain, StreamFilterStatus

__all__ = ["DubboStreamFilter", "DubboStreamFilterFactory"]


class DubboStreamFilter:
    #: never waits: the proxy runs it inline (see :mod:`mosnpy.stream.chain`)
    may_wait = False

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        service = stream.headers.get("service")
        if service:
            stream.host = service
        return StreamFilterStatus.CONTINUE


class DubboStreamFilterFactory:
    def __init__(self, config: Mapping[str, Any]) -> None:
        if config:
            raise ValueError(f"dubbo_stream takes no config, got keys {sorted(config)}")
        self._filter = DubboStreamFilter()

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(self._filter, FilterPhase.BEFORE_ROUTE)
