"""Clusters and the cluster manager.

A :class:`Cluster` is a named set of hosts, a load balancer over them, circuit-breaker
limits and one connection pool per (host, protocol).  The :class:`ClusterManager` maps
names to clusters; the proxy asks it for a host and a pool per request attempt.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import attrs
import trio

from mosnpy.config.models import CircuitBreakerConfig, ClusterConfig
from mosnpy.net.stats import Histogram, Traffic
from mosnpy.net.tls import client_context
from mosnpy.protocol.api import PoolMode
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.registry import UnknownNameError
from mosnpy.stream.stream import ResetReason
from mosnpy.upstream.errors import NoHealthyHostError, OverflowError_
from mosnpy.upstream.health import HealthMonitor
from mosnpy.upstream.host import Host
from mosnpy.upstream.lb import LbContext, LoadBalancer
from mosnpy.upstream.multiplex import MultiplexPool, PendingQueue
from mosnpy.upstream.outlier import OutlierDetector
from mosnpy.upstream.registry import CLUSTER_TYPES, LOAD_BALANCERS

__all__ = ["Cluster", "ClusterManager", "UpstreamStats"]


@attrs.define
class UpstreamStats:
    """Plain counters (MOSN's ``upstream`` metrics), read at scrape time."""

    requests: int = 0
    retries: int = 0
    connect_failures: int = 0
    timeouts: int = 0
    resets: int = 0
    #: requests refused by a circuit breaker: max_requests, or every connection busy
    #: and the pending queue full (max_connections, max_pending_requests)
    overflows: int = 0
    #: outlier detection (Envoy's ``outlier_detection.*`` counters): hosts ejected,
    #: outliers left in because of max_ejection_percent, and per kind the outliers
    #: detected and the ejections enforced
    ejections_enforced_total: int = 0
    ejections_overflow: int = 0
    ejections_detected_consecutive_5xx: int = 0
    ejections_enforced_consecutive_5xx: int = 0
    ejections_detected_consecutive_gateway_failure: int = 0
    ejections_enforced_consecutive_gateway_failure: int = 0
    ejections_detected_consecutive_local_origin_failure: int = 0
    ejections_enforced_consecutive_local_origin_failure: int = 0

    def count_failure(self, reason: ResetReason) -> None:
        if reason is ResetReason.CONNECTION_FAILED:
            self.connect_failures += 1
        elif reason in (ResetReason.GLOBAL_TIMEOUT, ResetReason.PER_TRY_TIMEOUT):
            self.timeouts += 1
        else:
            self.resets += 1


class Cluster:
    """Hosts, a load balancer, limits and pools for one upstream service."""

    def __init__(self, config: ClusterConfig, *, lb: LoadBalancer | None = None) -> None:
        self.config = config
        self.name = config.name
        self.hosts = CLUSTER_TYPES.get(config.type)(config)
        self.lb: LoadBalancer = lb or LOAD_BALANCERS.get(config.lb_type)(self.hosts, config.lb_config)
        self.limits = config.circuit_breakers[0] if config.circuit_breakers else CircuitBreakerConfig()
        self.active_requests = 0
        self.active_retries = 0
        self.counters = UpstreamStats()
        #: bytes moved on the pools' connections (MOSN's connection_bytes_*)
        self.traffic = Traffic()
        #: seconds from a request fully sent upstream to the end of its exchange
        #: (MOSN's request_duration_time)
        self.request_duration = Histogram()
        #: requests waiting for a connection in the cluster's pools (max_pending_requests)
        self.pending = PendingQueue(self.limits.max_pending_requests)
        #: passive health checking, when configured (its task starts with the manager);
        #: the proxy reports each attempt's outcome to it
        self.outlier = (
            OutlierDetector(self.name, self.hosts, config.outlier_detection, self._counters)
            if config.outlier_detection is not None
            else None
        )
        #: active health checking, when configured (started with the manager)
        self.health = (
            HealthMonitor(
                self.name,
                self.hosts,
                config.health_check,
                on_check=self.outlier.on_health_check if self.outlier is not None else None,
            )
            if config.health_check is not None
            else None
        )
        self._pools: dict[tuple[str, str], MultiplexPool] = {}
        self._tls: dict[str, ssl.SSLContext] = {}
        if config.tls_context is not None and config.tls_context.status:
            client_context(config.tls_context)  # a bad certificate path fails the config now
        #: where multiplexing pools run their connection tasks (set by the manager)
        self.nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return f"<Cluster {self.name} hosts={len(self.hosts)} active={self.active_requests}>"

    def choose_host(self, context: LbContext | None = None) -> Host:
        """Pick a host with the load balancer.

        Raises:
            NoHealthyHostError: no healthy host.
        """
        host = self.lb.choose(context)
        if host is None:
            raise NoHealthyHostError(f"no healthy upstream in cluster {self.name!r}")
        return host

    def start_request(self) -> None:
        """Count a request against ``max_requests``.

        Raises:
            OverflowError_: the cluster is at its ``max_requests``.
        """
        limit = self.limits.max_requests
        if limit and self.active_requests >= limit:
            self.counters.overflows += 1
            raise OverflowError_(f"cluster {self.name!r}: max_requests {limit} reached")
        self.active_requests += 1
        self.counters.requests += 1

    def end_request(self) -> None:
        self.active_requests -= 1

    def _count_overflow(self) -> None:
        self.counters.overflows += 1

    def _counters(self) -> UpstreamStats:
        return self.counters  # looked up each time: a reload swaps in the old counters

    def try_start_retry(self) -> bool:
        """Count a retry against ``max_retries``; False when the budget is full."""
        if self.limits.max_retries and self.active_retries >= self.limits.max_retries:
            return False
        self.active_retries += 1
        return True

    def end_retry(self) -> None:
        self.active_retries -= 1

    def pool(self, host: Host, protocol: ProtocolDescriptor) -> MultiplexPool:
        """The pool for ``host`` speaking ``protocol`` (created on first use).

        The pool holds the protocol's client stream connections, shaped by its pool
        mode: MULTIPLEX spreads streams over ``max_connections`` connections (default
        1), each carrying up to ``max_request_per_conn``; PING_PONG carries one stream
        per connection and dials more up to ``max_connections`` (0: no cap), reusing
        idle ones most recent first.  When every connection is full and no more may
        be dialed, a request waits in the cluster's pending queue, up to
        ``max_pending_requests`` of them (0: no bound), then overflows.

        Raises:
            RuntimeError: the cluster manager is not running (no nursery for the
                pool's connection tasks), or the protocol has no client stream
                connection.
        """
        key = (host.address, protocol.name)
        pool = self._pools.get(key)
        if pool is None:
            factory = protocol.client_stream_connection
            if factory is None:
                raise RuntimeError(f"protocol {protocol.name} has no client stream connection")
            if self.nursery is None:
                raise RuntimeError("stream pools need a running cluster manager")
            multiplex = protocol.pool_mode is PoolMode.MULTIPLEX
            pool = self._pools[key] = MultiplexPool(
                host,
                factory,
                self.nursery,
                max_connections=self.limits.max_connections or (1 if multiplex else 0),
                max_streams_per_connection=self.config.max_request_per_conn if multiplex else 1,
                spread=multiplex,
                connect_timeout=self.config.connect_timeout,
                idle_timeout=self.config.idle_timeout,
                pending=self.pending,
                on_overflow=self._count_overflow,
            )
            pool.traffic = self.traffic
            tls = self.config.tls_context
            if tls is not None and tls.status:
                pool.tls = self._tls_context(protocol)
                pool.tls_server_name = tls.server_name or None
        return pool

    def _tls_context(self, protocol: ProtocolDescriptor) -> ssl.SSLContext:
        """The cluster's client TLS context, offering ``protocol``'s ALPN ids unless the
        config names its own (one context per protocol, made once)."""
        ctx = self._tls.get(protocol.name)
        if ctx is None:
            cfg = self.config.tls_context
            assert cfg is not None
            ctx = self._tls[protocol.name] = client_context(cfg)
            if not cfg.alpn and protocol.alpn:
                ctx.set_alpn_protocols(list(protocol.alpn))
        return ctx

    def stats(self) -> dict[str, Any]:
        """Requests and retries in flight, hosts and pools (for the admin API)."""
        return {
            "active_requests": self.active_requests,
            "active_retries": self.active_retries,
            "pending_requests": self.pending.waiting,
            "ejections_active": self.outlier.ejected if self.outlier is not None else 0,
            "counters": attrs.asdict(self.counters),
            "traffic": self.traffic.snapshot(),
            "request_duration_time": self.request_duration.snapshot(),
            "hosts": [
                {
                    "address": h.address,
                    "weight": h.weight,
                    "healthy": h.healthy,
                    "ejected": h.ejected,
                    "active_requests": h.active_requests,
                    **(self.outlier.host_stats(h) if self.outlier is not None else {}),
                }
                for h in self.hosts
            ],
            "pools": [repr(p) for p in self._pools.values()],
        }

    def start_tasks(self, nursery: trio.Nursery) -> None:
        """Start health checking and outlier detection, when configured."""
        if self.health is not None:
            self.health.start(nursery)
        if self.outlier is not None:
            self.outlier.start(nursery)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


class ClusterManager:
    """Name → :class:`Cluster`."""

    def __init__(self, clusters: Iterable[Cluster] = ()) -> None:
        self.nursery: trio.Nursery | None = None
        self.clusters: dict[str, Cluster] = {c.name: c for c in clusters}

    @classmethod
    def from_configs(cls, configs: Iterable[ClusterConfig]) -> ClusterManager:
        return cls(Cluster(c) for c in configs)

    def add(self, cluster: Cluster) -> None:
        cluster.nursery = self.nursery
        self.clusters[cluster.name] = cluster
        if self.nursery is not None:
            cluster.start_tasks(self.nursery)

    def start(self, nursery: trio.Nursery) -> None:
        """Give the clusters a nursery for pool connections, health checks and
        outlier detection."""
        self.nursery = nursery
        for c in self.clusters.values():
            c.nursery = nursery
            c.start_tasks(nursery)

    def get(self, name: str) -> Cluster:
        """Raises UnknownNameError listing the known clusters."""
        try:
            return self.clusters[name]
        except KeyError:
            raise UnknownNameError("cluster", name, sorted(self.clusters)) from None

    def close(self) -> None:
        for c in self.clusters.values():
            c.close()
