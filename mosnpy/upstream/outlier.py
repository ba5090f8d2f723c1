"""Outlier detection: passive health checking from the proxy's own traffic.

Theory of operation
-------------------
A cluster with ``outlier_detection`` (Envoy's, in snake_case: MOSN has none) gets an
:class:`OutlierDetector`.  The proxy reports each attempt's outcome for the host it
went to: :meth:`OutlierDetector.put_status` with the response's status (HTTP-style for
every protocol: 200 ok, 5xx failures), :meth:`OutlierDetector.put_failure` when no
response came (connect failure, reset, timeout: "local origin" errors in Envoy's words).

Each host counts consecutive 5xx, consecutive gateway failures (502, 503, 504) and,
with ``split_external_local_origin_errors``, consecutive local-origin failures; any
other answer resets the counts it breaks.  Without the split, a local-origin failure is
counted as Envoy counts it: a connect failure or a reset as a 503, a timeout as a 504.
When a count reaches its threshold the host is ejected (with ``enforcing_*`` percent
probability) unless that would take more than ``max_ejection_percent`` of the hosts
out (``always_eject_one_host`` lets the first one go anyway): it is marked
:attr:`~mosnpy.upstream.host.Host.ejected`, which clears ``healthy``, the one flag
the load balancers read, so nothing on the request path changes.  The ejection lasts
``base_ejection_time`` times the host's ejection multiplier (one more on each ejection,
bounded by ``max_ejection_time``), plus up to ``max_ejection_time_jitter``.

A task per detector (started with the cluster manager) returns each host when its
time is up (at that instant, where Envoy waits for the next ``interval`` sweep) and,
every ``interval``, lowers by one the multiplier of each host that has stayed in
service for an interval since it came back.  It sleeps while there is nothing to do.
With active health checking too, a passed check returns an ejected host at once
(``successful_active_health_check_uneject_host``, as in Envoy).

Everything runs on the worker's trio thread: no locks.  Time is ``trio.current_time``,
so tests drive it with ``trio.testing.MockClock``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import trio

from mosnpy.config.models import OutlierDetectionConfig
from mosnpy.protocol.api import ResetReason
from mosnpy.upstream.host import Host

if TYPE_CHECKING:
    from mosnpy.upstream.cluster import UpstreamStats

__all__ = [
    "CONSECUTIVE_5XX",
    "CONSECUTIVE_GATEWAY_FAILURE",
    "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
    "OutlierDetector",
]

log: Final = logging.getLogger("mosnpy.outlier")

#: ejection types (Envoy's names; each has ``ejections_detected_*`` and
#: ``ejections_enforced_*`` counters in the cluster's stats)
CONSECUTIVE_5XX: Final = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE: Final = "consecutive_gateway_failure"
CONSECUTIVE_LOCAL_ORIGIN_FAILURE: Final = "consecutive_local_origin_failure"

_GATEWAY_ERRORS: Final = frozenset({502, 503, 504})
_TIMEOUTS: Final = frozenset({ResetReason.GLOBAL_TIMEOUT, ResetReason.PER_TRY_TIMEOUT})
_INF: Final = math.inf


class _HostState:
    """One host's counts and ejection history."""

    __slots__ = (
        "backoff",
        "consecutive_5xx",
        "consecutive_gateway",
        "consecutive_local",
        "ejections",
        "returned_at",
        "until",
    )

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        #: the ejection time multiplier (Envoy's eject time backoff)
        self.backoff = 0
        #: times ejected, ever
        self.ejections = 0
        #: when the current ejection ends
        self.until = _INF
        #: when the host last came back (None: never ejected)
        self.returned_at: float | None = None


class OutlierDetector:
    """Ejects a cluster's hosts that fail in a row, and brings them back in time.

    Args:
        cluster_name: for log lines.
        hosts: the cluster's hosts (the percentage bound is of these).
        config: the cluster's ``outlier_detection``.
        counters: the cluster's counters, where ``ejections_*`` are counted (a
            getter: a reload hands a cluster its predecessor's counters).
        rng: where ``enforcing_*`` draws and the jitter come from.
    """

    def __init__(
        self,
        cluster_name: str,
        hosts: Sequence[Host],
        config: OutlierDetectionConfig,
        counters: Callable[[], UpstreamStats],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.config = config
        self.counters = counters
        self._states: dict[Host, _HostState] = {h: _HostState() for h in hosts}
        #: hosts ejected right now (Envoy's ``ejections_active``)
        self.ejected = 0
        self._split = config.split_external_local_origin_errors
        self._cap = config.ejection_time_cap
        self._rng = rng if rng is not None else random.Random()
        #: the next interval sweep (inf while no host has a multiplier to lower)
        self._next_tick = _INF
        #: set to make the task plan its sleep again (an ejection happened)
        self._replan: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<OutlierDetector {self.cluster_name} hosts={len(self._states)} ejected={self.ejected}>"

    # -- what the proxy reports --------------------------------------------------------

    def put_status(self, host: Host, status: int) -> None:
        """An attempt on ``host`` got a response with (HTTP-style) ``status``."""
        state = self._states.get(host)
        if state is None:
            return
        state.consecutive_local = 0  # it answered: the connection worked
        if status >= 500:
            self._server_error(host, state, status)
            return
        state.consecutive_5xx = 0
        state.consecutive_gateway = 0

    def put_failure(self, host: Host, reason: ResetReason) -> None:
        """An attempt on ``host`` got no response: a connect failure, a reset or a
        timeout (a refused overflow is not the host's fault and is ignored)."""
        state = self._states.get(host)
        if state is None or reason is ResetReason.OVERFLOW:
            return
        if not self._split:
            # One bucket for every error, mapped to HTTP codes as Envoy maps them.
            self._server_error(host, state, 504 if reason in _TIMEOUTS else 503)
            return
        state.consecutive_local += 1
        if state.consecutive_local == self.config.consecutive_local_origin_failure:
            self._detected(host, state, CONSECUTIVE_LOCAL_ORIGIN_FAILURE)

    def _server_error(self, host: Host, state: _HostState, status: int) -> None:
        cfg = self.config
        if status in _GATEWAY_ERRORS:
            state.consecutive_gateway += 1
            if state.consecutive_gateway == cfg.consecutive_gateway_failure:
                self._detected(host, state, CONSECUTIVE_GATEWAY_FAILURE)
        else:
            state.consecutive_gateway = 0
        state.consecutive_5xx += 1
        if state.consecutive_5xx == cfg.consecutive_5xx:
            self._detected(host, state, CONSECUTIVE_5XX)

    def on_health_check(self, host: Host, ok: bool) -> None:
        """An active health check's outcome: a pass returns an ejected host now."""
        if not (ok and host.ejected and self.config.successful_active_health_check_uneject_host):
            return
        state = self._states.get(host)
        if state is not None and not host.check_failed:
            self._return(host, state, trio.current_time())

    # -- ejecting and returning --------------------------------------------------------

    def _detected(self, host: Host, state: _HostState, kind: str) -> None:
        if host.ejected:
            return  # already out (responses still in flight when it was ejected)
        counters = self.counters()
        name = f"ejections_detected_{kind}"
        setattr(counters, name, getattr(counters, name) + 1)
        self._eject(host, state, kind)
        # Count a fresh run of failures before the next detection of this kind.
        if kind == CONSECUTIVE_5XX:
            state.consecutive_5xx = 0
        elif kind == CONSECUTIVE_GATEWAY_FAILURE:
            state.consecutive_gateway = 0
        else:
            state.consecutive_local = 0

    def _eject(self, host: Host, state: _HostState, kind: str) -> None:
        cfg = self.config
        counters = self.counters()
        share = 100.0 * (self.ejected + 1) / len(self._states)
        if share > cfg.max_ejection_percent and not (cfg.always_eject_one_host and not self.ejected):
            counters.ejections_overflow += 1
            log.info(
                "cluster %s: host %s is an outlier (%s) but max_ejection_percent %d%% "
                "is reached; not ejected",
                self.cluster_name,
                host.address,
                kind,
                cfg.max_ejection_percent,
            )
            return
        if not self._enforced(getattr(cfg, f"enforcing_{kind}")):
            log.info(
                "cluster %s: host %s is an outlier (%s), not enforced", self.cluster_name, host.address, kind
            )
            return
        now = trio.current_time()
        base = cfg.base_ejection_time
        if state.backoff * base < self._cap + base:
            state.backoff += 1
        jitter = self._rng.uniform(0.0, cfg.max_ejection_time_jitter) if cfg.max_ejection_time_jitter else 0.0
        duration = min(base * state.backoff, self._cap) + jitter
        state.until = now + duration
        state.ejections += 1
        self.ejected += 1
        host.set_ejected(True)
        counters.ejections_enforced_total += 1
        name = f"ejections_enforced_{kind}"
        setattr(counters, name, getattr(counters, name) + 1)
        if self._next_tick == _INF:
            self._next_tick = now + cfg.interval
        log.warning(
            "cluster %s: host %s ejected for %.3gs (%s, ejection %d)",
            self.cluster_name,
            host.address,
            duration,
            kind,
            state.ejections,
        )
        if self._replan is not None:
            self._replan.set()

    def _enforced(self, percent: int) -> bool:
        return percent >= 100 or (percent > 0 and self._rng.random() * 100 < percent)

    def _return(self, host: Host, state: _HostState, now: float) -> None:
        self.ejected -= 1
        state.until = _INF
        state.returned_at = now
        # Fresh counts, so a few errors right after coming back do not eject again.
        state.consecutive_5xx = state.consecutive_gateway = state.consecutive_local = 0
        host.set_ejected(False)
        log.info("cluster %s: host %s is back from ejection", self.cluster_name, host.address)

    def sweep(self, now: float) -> float:
        """Return hosts whose ejection is over and, once per ``interval``, lower the
        multiplier of hosts back in service for an interval.  Returns when to sweep
        again (inf: nothing to do until the next ejection)."""
        due = _INF
        for host, state in self._states.items():
            if host.ejected:
                if now >= state.until:
                    self._return(host, state, now)
                else:
                    due = min(due, state.until)
        if now >= self._next_tick:
            interval = self.config.interval
            waiting = False
            for host, state in self._states.items():
                if host.ejected or not state.backoff:
                    continue
                back = state.returned_at
                if back is not None and now - back >= interval:
                    state.backoff -= 1
                waiting = waiting or bool(state.backoff)
            self._next_tick = now + interval if waiting or self.ejected else _INF
        return min(due, self._next_tick)

    async def run(self) -> None:
        """The detector's task: sweep when due, and plan again after each ejection."""
        while True:
            deadline = self.sweep(trio.current_time())
            replan = self._replan = trio.Event()
            with trio.move_on_at(deadline):
                await replan.wait()

    def start(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.run)

    # -- reading -----------------------------------------------------------------------

    def host_stats(self, host: Host) -> dict[str, int]:
        """A host's ejection count and multiplier (for the admin API)."""
        state = self._states.get(host)
        if state is None:
            return {}
        return {"ejections": state.ejections, "ejection_multiplier": state.backoff}
