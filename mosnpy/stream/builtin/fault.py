"""``fault``: inject delays and aborts into a share of requests (MOSN's fault filter).

Config accepts MOSN's flat keys::

    {"delay_percent": 50, "delay_duration": "200ms", "abort_percent": 10,
     "abort_status": 503, "upstream_cluster": "v1"}

and the nested form::

    {"delay": {"fixed_delay": "200ms", "percentage": 50},
     "abort": {"status": 503, "percentage": 10}}

Percentages are 0-100.  With ``upstream_cluster`` set, only requests routed to that
cluster are affected, so the filter runs after route matching.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from mosnpy.config import DURATION_METADATA, structure
from mosnpy.stream.chain import StreamFilterChain
from mosnpy.stream.filter import FilterPhase, StreamFilterStatus
from mosnpy.stream.stream import Stream

__all__ = ["FaultConfig", "FaultFilter", "FaultFilterFactory"]


def _percent(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be within 0..100, got {value}")


@attrs.frozen(kw_only=True)
class FaultDelay:
    fixed_delay: float = attrs.field(metadata={DURATION_METADATA: True})
    percentage: int = attrs.field(default=100, validator=_percent)


@attrs.frozen(kw_only=True)
class FaultAbort:
    status: int
    percentage: int = attrs.field(default=100, validator=_percent)


@attrs.frozen(kw_only=True)
class FaultConfig:
    delay_percent: int = attrs.field(default=0, validator=_percent)
    delay_duration: float = attrs.field(default=0.0, metadata={DURATION_METADATA: True})
    abort_percent: int = attrs.field(default=0, validator=_percent)
    abort_status: int = 0
    upstream_cluster: str = ""
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    def normalized(self) -> FaultConfig:
        """Fold the nested form into the flat fields."""
        cfg = self
        if cfg.delay is not None:
            cfg = attrs.evolve(cfg, delay_percent=cfg.delay.percentage, delay_duration=cfg.delay.fixed_delay)
        if cfg.abort is not None:
            cfg = attrs.evolve(cfg, abort_percent=cfg.abort.percentage, abort_status=cfg.abort.status)
        if cfg.abort_percent and not 100 <= cfg.abort_status <= 599:
            raise ValueError(f"abort status must be an HTTP status, got {cfg.abort_status}")
        return cfg


class FaultFilter:
    """Delays and/or aborts the request it sees, by chance."""

    __slots__ = ("config", "rng")

    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng

    @property
    def may_wait(self) -> bool:
        """Only a filter that delays waits (see :mod:`mosnpy.stream.chain`)."""
        return self.config.delay_percent > 0 and self.config.delay_duration > 0

    async def on_receive(self, stream: Stream) -> StreamFilterStatus:
        cfg = self.config
        if cfg.upstream_cluster and stream.cluster_name != cfg.upstream_cluster:
            return StreamFilterStatus.CONTINUE
        if cfg.delay_percent and self.rng.random() * 100 < cfg.delay_percent:
            await trio.sleep(cfg.delay_duration)
        if cfg.abort_percent and self.rng.random() * 100 < cfg.abort_percent:
            stream.send_local_reply(cfg.abort_status, f"fault filter abort ({cfg.abort_status})\n")
            return StreamFilterStatus.STOP
        return StreamFilterStatus.CONTINUE


class FaultFilterFactory:
    """Registered as ``fault``."""

    def __init__(self, config: Mapping[str, Any], *, rng: random.Random | None = None) -> None:
        self.config = structure(FaultConfig, config, "config").normalized()
        self.rng = rng or random.Random()

    def create_filter_chain(self, chain: StreamFilterChain) -> None:
        chain.add_receiver(FaultFilter(self.config, self.rng), FilterPhase.AFTER_ROUTE)
