"""Active health checking: probe each host, flip ``Host.healthy`` at thresholds.

A cluster with ``health_check`` gets a :class:`HealthMonitor`: one task per host (in
the cluster manager's nursery) that probes every ``interval`` (plus up to
``interval_jitter``), gives each probe ``timeout`` seconds, and turns the host
unhealthy after ``unhealthy_threshold`` failures in a row, healthy again after
``healthy_threshold`` successes.  Load balancers skip unhealthy hosts, so traffic
moves away from a dead backend before requests fail on it.

Checkers come from the ``health_checkers`` registry (entry-point group
``mosnpy.health_checkers``), keyed by the config's ``protocol``: ``Http1`` sends a
request (``check_config.http_check_config``: port, path, method, codes) and wants one
of the expected statuses; anything else is MOSN's default, a TCP connect.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio

from mosnpy.config.models import HealthCheckConfig
from mosnpy.net.connection import connect
from mosnpy.protocol.headers import HeaderMap
from mosnpy.protocol.http1 import Http1ClientCodec, Http1Error
from mosnpy.protocol.http1.events import BodyFraming, RequestHead, ResponseHead
from mosnpy.registry import Registry
from mosnpy.upstream.host import Host

__all__ = ["HEALTH_CHECKERS", "HealthChecker", "HealthMonitor", "Http1Checker", "TcpChecker", "checker_for"]

log = logging.getLogger("mosnpy.health")


class HealthChecker(Protocol):
    """One probe of one host; True when healthy.  Runs under the caller's timeout."""

    async def check(self, host: Host) -> bool: ...


HEALTH_CHECKERS: Registry[Callable[[Mapping[str, Any]], HealthChecker]] = Registry(
    "health checker", "mosnpy.health_checkers"
)


class TcpChecker:
    """Healthy when a TCP connection can be made (MOSN's default session)."""

    def __init__(self, check_config: Mapping[str, Any]) -> None:
        del check_config  # nothing to configure

    async def check(self, host: Host) -> bool:
        try:
            conn = await connect(host.address, timeout=float("inf"))
        except OSError:
            return False
        conn.close()
        return True


class Http1Checker:
    """Healthy when ``method path`` answers one of ``codes`` (default 200).

    ``check_config``: ``{"http_check_config": {"port": 8080, "path": "/health",
    "method": "GET", "codes": [200, 204]}}``; ``port`` defaults to the host's.
    """

    def __init__(self, check_config: Mapping[str, Any]) -> None:
        cfg = check_config.get("http_check_config", {})
        if not isinstance(cfg, Mapping):
            raise ValueError("http_check_config must be a mapping")
        unknown = sorted(set(cfg) - {"port", "path", "method", "codes", "host"})
        if unknown:
            raise ValueError(f"http_check_config: unknown key(s) {', '.join(unknown)}")
        self.port = int(cfg.get("port", 0))
        self.path = str(cfg.get("path", "/"))
        self.method = str(cfg.get("method", "GET")).upper()
        self.host_header = str(cfg.get("host", ""))
        codes = cfg.get("codes", [200])
        if not isinstance(codes, list) or not all(isinstance(c, int) for c in codes):
            raise ValueError("http_check_config.codes must be a list of status codes")
        self.codes = frozenset(codes)

    async def check(self, host: Host) -> bool:
        address = host.address
        if self.port:
            address = f"{address.rpartition(':')[0]}:{self.port}"
        try:
            conn = await connect(address, timeout=float("inf"))
        except OSError:
            return False
        codec = Http1ClientCodec()
        headers = HeaderMap([("host", self.host_header or address), ("user-agent", "mosnpy-health-check")])
        try:
            await conn.send_all(
                codec.encode_request_head(RequestHead(self.method, self.path, headers), BodyFraming.NONE)
            )
            while True:
                data = await conn.receive_some()
                for event in codec.receive_data(data):
                    if isinstance(event, ResponseHead):
                        return event.status in self.codes
                if not data:
                    return False
        except (OSError, Http1Error):
            return False
        finally:
            conn.close()


def checker_for(config: HealthCheckConfig) -> HealthChecker:
    """The checker the config's ``protocol`` names (TCP when it names none known).

    Raises:
        ValueError: the checker rejects ``check_config``.
    """
    name = config.protocol if config.protocol in HEALTH_CHECKERS else "tcp"
    return HEALTH_CHECKERS.get(name)(config.check_config)


class HealthMonitor:
    """Probes a cluster's hosts and keeps their ``healthy`` flags current."""

    def __init__(
        self,
        cluster_name: str,
        hosts: list[Host],
        config: HealthCheckConfig,
        *,
        on_check: Callable[[Host, bool], None] | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.hosts = hosts
        self.config = config
        self.checker = checker_for(config)
        #: told every check's outcome, after the host's flags are updated (outlier
        #: detection unejects a host that passes one)
        self.on_check = on_check
        self._rng = random.Random()

    def start(self, nursery: trio.Nursery) -> None:
        for host in self.hosts:
            nursery.start_soon(self._watch, host)

    async def _watch(self, host: Host) -> None:
        cfg = self.config
        successes = failures = 0
        while True:
            await trio.sleep(cfg.interval + self._rng.uniform(0, cfg.interval_jitter))
            ok = False
            with trio.move_on_after(cfg.timeout):
                ok = await self.checker.check(host)
            if ok:
                successes, failures = successes + 1, 0
                if host.check_failed and successes >= cfg.healthy_threshold:
                    host.set_check_failed(False)
                    log.info("cluster %s: host %s is healthy again", self.cluster_name, host.address)
            else:
                successes, failures = 0, failures + 1
                if not host.check_failed and failures >= cfg.unhealthy_threshold:
                    host.set_check_failed(True)
                    log.warning(
                        "cluster %s: host %s failed %d checks: unhealthy",
                        self.cluster_name,
                        host.address,
                        failures,
                    )
            if self.on_check is not None:
                self.on_check(host, ok)
