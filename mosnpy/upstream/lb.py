"""Load balancers: pick a healthy host of a cluster for each request.

Every balancer is built as ``cls(hosts, config)`` (``config`` is the cluster's
``lb_config`` mapping) and answers :meth:`LoadBalancer.choose` with a healthy
:class:`Host`, or ``None`` when no host is healthy (the proxy answers 502).  Health and
load are read from the hosts at pick time; a change of membership builds a new
balancer.  They are registered by ``lb_type`` name in
:data:`mosnpy.upstream.registry.LOAD_BALANCERS` through the ``mosnpy.load_balancers``
entry points, like a third party's balancer would be.

Balancers are not thread-safe and need no lock: mosnpy runs each worker's requests on
one trio thread.

=========================  ===================================================  ========
``lb_type``                policy                                               per pick
=========================  ===================================================  ========
LB_ROUNDROBIN              healthy hosts in turn                                O(1)*
LB_WEIGHTED_ROUNDROBIN     smooth weighted round robin (nginx), interleaved     O(n)
LB_RANDOM                  uniform over healthy hosts (MOSN ignores weights)    O(1)*
LB_LEAST_REQUEST           power of ``choice_count`` choices on active          O(1)*
                           requests; weighted random on
                           ``weight / (active + 1) ** active_request_bias``
                           when weights differ (Envoy's rule)                   O(n)
=========================  ===================================================  ========

\\* plus a scan of the hosts when the first candidates drawn are unhealthy.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Protocol

from mosnpy.upstream.host import Host

__all__ = [
    "LbContext",
    "LeastRequest",
    "LoadBalancer",
    "Random",
    "RoundRobin",
    "WeightedRoundRobin",
]

_NO_CONFIG: Final[Mapping[str, Any]] = MappingProxyType({})


class LbContext:
    """What a balancer may know about the request it picks a host for.

    ``original_destination`` (``ip:port``) is where the downstream connection was going
    before an iptables rule redirected it to mosnpy (the ``original_dst`` listener
    filter finds it): LB_ORIGINAL_DST connects there.  The other built-in balancers
    use none of this; it is here so hash-based ones (consistent hash on a header,
    source-IP affinity, Maglev) can be added without changing the interface.
    """

    __slots__ = ("downstream_address", "headers", "original_destination")

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        downstream_address: str | None = None,
        original_destination: str | None = None,
    ) -> None:
        self.headers = headers
        self.downstream_address = downstream_address
        self.original_destination = original_destination


class LoadBalancer(Protocol):
    """The interface every ``lb_type`` implements."""

    def __init__(self, hosts: Sequence[Host], config: Mapping[str, Any]) -> None: ...

    @property
    def hosts(self) -> Sequence[Host]:
        """The hosts this balancer picks from, healthy or not."""
        ...

    def choose(self, context: LbContext | None = None) -> Host | None:
        """A healthy host for one request, or None when no host is healthy."""
        ...


def _int_option(config: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"lb_config.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _float_option(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"lb_config.{key}: expected a number >= 0, got {value!r}")
    return float(value)


class _Balancer:
    """Shared state: the host tuple and, for randomised balancers, the RNG."""

    __slots__ = ("_hosts", "_rng")

    def __init__(
        self,
        hosts: Sequence[Host],
        config: Mapping[str, Any] = _NO_CONFIG,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._hosts: tuple[Host, ...] = tuple(hosts)
        self._rng = rng if rng is not None else random.Random()

    @property
    def hosts(self) -> tuple[Host, ...]:
        """The hosts this balancer picks from, healthy or not."""
        return self._hosts

    def __repr__(self) -> str:
        return f"<{type(self).__name__} hosts={len(self._hosts)}>"


class RoundRobin(_Balancer):
    """LB_ROUNDROBIN: each healthy host in turn.

    A cursor walks the host tuple and skips unhealthy hosts, so over ``k * h`` picks
    each of ``h`` healthy hosts is picked exactly ``k`` times (while health holds).
    Starts at the first host, so runs are reproducible.
    """

    __slots__ = ("_next",)

    def __init__(
        self,
        hosts: Sequence[Host],
        config: Mapping[str, Any] = _NO_CONFIG,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(hosts, config, rng=rng)
        self._next = 0

    def choose(self, context: LbContext | None = None) -> Host | None:
        """The next healthy host after the last one picked."""
        hosts = self._hosts
        n = len(hosts)
        i = self._next
        for _ in range(n):
            host = hosts[i]
            i += 1
            if i == n:
                i = 0
            if host.healthy:
                self._next = i
                return host
        return None


class WeightedRoundRobin(RoundRobin):
    """LB_WEIGHTED_ROUNDROBIN: smooth weighted round robin (nginx's algorithm).

    Each pick adds every healthy host's weight to its running score, picks the highest
    score (first in config order on ties) and takes the healthy total ``W`` off the
    winner.  Over one cycle of ``W`` picks each host gets exactly its weight, and picks
    interleave: after ``t`` picks from the start of a cycle no host of weight ``w`` has
    more than ``ceil(t*w/W)`` picks (weights 5,1,1 give ``a a b a c a a``, not
    ``a a a a a b c``).  Why: the scores always sum to 0 after a pick, so the winner's
    score was > 0 and is > -W afterwards, and a score is ``t*w - W*picks``.  Envoy's EDF
    schedule is O(log n) but bunches a heavy host's picks at the start of each cycle
    (1 host of weight 10 and ten of weight 1: ten picks in a row), so smoothness won.

    All weights equal (the default weight is 1) degrades to :class:`RoundRobin`'s O(1)
    cursor, which produces the same sequence.
    """

    __slots__ = ("_current", "_equal", "_weights")

    def __init__(
        self,
        hosts: Sequence[Host],
        config: Mapping[str, Any] = _NO_CONFIG,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(hosts, config, rng=rng)
        self._weights = tuple(h.weight for h in self._hosts)
        self._equal = len(set(self._weights)) <= 1
        self._current = [0] * len(self._hosts)

    def choose(self, context: LbContext | None = None) -> Host | None:
        """The healthy host with the highest smooth-WRR score."""
        if self._equal:
            return super().choose(context)
        hosts = self._hosts
        weights = self._weights
        current = self._current
        best = -1
        best_score = 0
        total = 0
        for i, host in enumerate(hosts):
            if not host.healthy:
                continue
            w = weights[i]
            score = current[i] + w
            current[i] = score
            total += w
            if best < 0 or score > best_score:
                best = i
                best_score = score
        if best < 0:
            return None
        current[best] = best_score - total
        return hosts[best]


class Random(_Balancer):
    """LB_RANDOM: a uniformly random healthy host (weights are ignored, as in MOSN).

    One draw over all hosts; only if it lands on an unhealthy host is the healthy list
    built and drawn from, which keeps the pick uniform over healthy hosts.
    """

    __slots__ = ()

    def choose(self, context: LbContext | None = None) -> Host | None:
        """A random healthy host."""
        hosts = self._hosts
        if not hosts:
            return None
        host = hosts[self._rng.randrange(len(hosts))]
        if host.healthy:
            return host
        healthy = [h for h in hosts if h.healthy]
        if not healthy:
            return None
        return healthy[self._rng.randrange(len(healthy))]


class LeastRequest(_Balancer):
    """LB_LEAST_REQUEST: send to hosts with fewer requests in flight.

    With equal weights: draw ``choice_count`` hosts (``lb_config.choice_count``,
    default 2) uniformly, with replacement, among healthy hosts and take the one with the
    fewest :attr:`Host.active_requests` (the first drawn on ties): "the power of two
    choices", nearly as good as scanning all hosts at O(1) cost and without the herd
    effect of always picking the global minimum.

    With differing weights: a weighted random pick where each healthy host weighs
    ``weight / (active_requests + 1) ** active_request_bias`` (``lb_config``, default
    1.0; 0 makes it plain weighted random).  This is Envoy's and MOSN's rule, done by
    one O(n) scan instead of an EDF schedule so that it reads the live counts.
    """

    __slots__ = ("_bias", "_choices", "_equal")

    def __init__(
        self,
        hosts: Sequence[Host],
        config: Mapping[str, Any] = _NO_CONFIG,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(hosts, config, rng=rng)
        self._choices = _int_option(config, "choice_count", 2, 1)
        self._bias = _float_option(config, "active_request_bias", 1.0)
        self._equal = len({h.weight for h in self._hosts}) <= 1

    def choose(self, context: LbContext | None = None) -> Host | None:
        """A lightly loaded healthy host."""
        hosts = self._hosts
        if not hosts:
            return None
        if self._equal:
            return self._choose_p2c(hosts)
        return self._choose_weighted()

    def _choose_p2c(self, hosts: Sequence[Host]) -> Host | None:
        randrange = self._rng.randrange
        n = len(hosts)
        best: Host | None = None
        for _ in range(self._choices):
            host = hosts[randrange(n)]
            if not host.healthy:
                # Redraw everything among healthy hosts: the draws stay independent and
                # uniform over the healthy ones (conditioning on "all drawn healthy"
                # keeps that for the fast path too).
                healthy = [h for h in hosts if h.healthy]
                return self._choose_p2c(healthy) if healthy else None
            if best is None or host.active_requests < best.active_requests:
                best = host
        return best

    def _choose_weighted(self) -> Host | None:
        bias = self._bias
        candidates: list[tuple[float, Host]] = []
        total = 0.0
        for host in self._hosts:
            if not host.healthy:
                continue
            active = host.active_requests + 1
            if bias == 1.0:
                eff = host.weight / active
            elif bias == 0.0:
                eff = float(host.weight)
            else:
                eff = host.weight / active**bias
            total += eff
            candidates.append((total, host))
        if not candidates:
            return None
        r = self._rng.random() * total
        for upper, host in candidates:
            if r < upper:
                return host
        return candidates[-1][1]  # float rounding put r at the very top
