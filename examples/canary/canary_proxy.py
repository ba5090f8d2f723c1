"""A header-based canary router, built in code with ``import mosnpy`` (no config file).

The proxy has two clusters, ``stable`` and ``canary``.  A stream filter of our own,
``canary``, decides per request whether it is a canary request: a ``canary=always``
cookie always is, and otherwise a stable share of users (``percent``, hashed from the
``x-user-id`` header) are.  The filter marks those with ``x-canary: 1`` *before* route
matching, and a route on that header sends them to the canary cluster.  On the way
back a sender filter tags the response with ``x-canary-route``.

Run it (backends on 8081 and 8082 must be up)::

    python examples/canary/canary_proxy.py --listen 127.0.0.1:2046 \\
        --stable 127.0.0.1:8081 --canary 127.0.0.1:8082 --percent 20
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Mapping
from typing import Any

import trio

import mosnpy


class CanaryFilter:
    """Receiver (marks canary requests) and sender (tags their responses)."""

    def __init__(self, percent: int) -> None:
        self.percent = percent

    def is_canary(self, stream: mosnpy.Stream) -> bool:
        cookies = stream.headers.get("cookie", "")
        if "canary=always" in cookies:
            return True
        if "canary=never" in cookies:
            return False
        user = stream.headers.get("x-user-id")
        return user is not None and zlib.crc32(user.encode()) % 100 < self.percent

    async def on_receive(self, stream: mosnpy.Stream) -> mosnpy.StreamFilterStatus:
        stream.headers.discard("x-canary")  # clients cannot pick the canary themselves
        if self.is_canary(stream):
            stream.headers["x-canary"] = "1"
            stream.variables["canary"] = True
        return mosnpy.StreamFilterStatus.CONTINUE

    async def append(self, stream: mosnpy.Stream) -> mosnpy.StreamFilterStatus:
        if stream.response_headers is not None:
            stream.response_headers["x-canary-route"] = (
                "canary" if stream.variables.get("canary") else "stable"
            )
        return mosnpy.StreamFilterStatus.CONTINUE


class CanaryFilterFactory:
    """Config: ``{"percent": 0..100}``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        percent = config.get("percent", 0)
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"percent must be an integer 0..100, got {percent!r}")
        self.percent = percent

    def create_filter_chain(self, chain: mosnpy.StreamFilterChain) -> None:
        f = CanaryFilter(self.percent)
        chain.add_receiver(f, mosnpy.FilterPhase.BEFORE_ROUTE)
        chain.add_sender(f)


mosnpy.STREAM_FILTERS.register("canary", CanaryFilterFactory, replace=True)


def build(listen: str, stable: list[str], canary: list[str], percent: int) -> mosnpy.ProxyBuilder:
    """The canary proxy: ``x-canary: 1`` (set by our filter) → canary, else stable."""
    return (
        mosnpy.ProxyBuilder(graceful_timeout=5)
        .cluster("stable", stable, lb="LB_ROUNDROBIN")
        .cluster("canary", canary, lb="LB_LEAST_REQUEST")
        .route(path="/health", direct_response=(200, "ok\n"))
        .route(prefix="/", headers={"x-canary": "1"}, cluster="canary", timeout=10)
        .route(prefix="/", cluster="stable", timeout=10, retries=2, retry_on_status=[502, 503])
        .listener("canary-http", listen, stream_filters=[("canary", {"percent": percent})])
    )


def main() -> None:
    p = argparse.ArgumentParser(description="header-based canary proxy built with import mosnpy")
    p.add_argument("--listen", default="127.0.0.1:2046")
    p.add_argument("--stable", action="append", default=[])
    p.add_argument("--canary", action="append", default=[])
    p.add_argument("--percent", type=int, default=10)
    a = p.parse_args()
    config = build(
        a.listen, a.stable or ["127.0.0.1:8081"], a.canary or ["127.0.0.1:8082"], a.percent
    ).build()
    trio.run(mosnpy.run, config)


if __name__ == "__main__":
    main()
