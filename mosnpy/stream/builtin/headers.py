"""``header_mutation``: add and remove request and response headers.

Config::

    {"request_headers_to_add": [{"header": {"key": "x-a", "value": "1"}, "append": false}],
     "request_headers_to_remove": ["x-internal"],
     "response_headers_to_add": [...], "response_headers_to_remove": [...]}

``append: true`` adds one more value; otherwise the header is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mosnpy.config import HeaderValueConfig, structure
from mosnpy.protocol.headers import HeaderMap
from mosnpy.stream.chain import StreamFilterChain
from mosnpy.stream.filter import FilterPhase, StreamFilterStatus
from mosnpy.stream.stream import Stream

__all__ = [
    "HeaderMutationConfig",
    "HeaderMutationFilter",
    "HeaderMutationFilterFactory",
    "apply_header_edits",
]


@attrs.frozen(kw_only=True)
class HeaderMutationConfig:
    request_headers_to_add: tuple[HeaderValueConfig, ...] = ()
    request_headers_to_remove: tuple[str, ...] = ()
    response_headers_to_add: tuple[HeaderValueConfig, ...] = ()
    response_headers_to_remove: tuple[str, ...] = ()


def apply_header_edits(
    headers: HeaderMap, add: tuple[HeaderValueConfig, ...], remove: tuple[str, ...]
) -> None:
    """Remove, then add (so a header can be replaced by removing and adding it)."""
    for name in remove:
        headers.discard(name)
    for h in add:
        if h.append:
            headers.add(h.key, h.value)
        else:
            headers[h.key] = h.value


class HeaderMutationFilter:
    """Both a receiver (request edits) and a sender (response edits)."""

    __slots__ = ("config",)

    #: never waits: the proxy runs it inline (see :mod:`mosnpy.stream.chain`)
    may_wait = False

    def __init__(self, config: HeaderMutationConfig) -> None:
        self.config = config

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        c = self.config
        apply_header_edits(stream.headers, c.request_headers_to_add, c.request_headers_to_remove)
        return StreamFilterStatus.CONTINUE

    async def append(self, stream: Stream) -> StreamFilterStatus:
        c = self.config
        if stream.response_headers is not None:
            apply_header_edits(
                stream.response_headers, c.response_headers_to_add, c.response_headers_to_remove
            )
        return StreamFilterStatus.CONTINUE


class HeaderMutationFilterFactory:
    """Registered as ``header_mutation``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = structure(HeaderMutationConfig, config, "config")

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        f = HeaderMutationFilter(self.config)
        c = self.config
        if c.request_headers_to_add or c.request_headers_to_remove:
            chain.add_receiver(f, FilterPhase.BEFORE_ROUTE)
        if c.response_headers_to_add or c.response_headers_to_remove:
            chain.add_sender(f)
