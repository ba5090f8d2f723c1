"""Plain counters shared by the layers that count: bytes moved and latency histograms.

Both are updated on hot paths with a few integer operations and read only when the
admin API takes a snapshot, so they hold numbers and nothing else (no locks, no
timestamps, no I/O).  A snapshot is JSON-ready and *summable*: the stats of several
worker processes add up field by field (``bounds`` excepted, ``min``/``max`` by
min/max), which is how the supervisor shows one total for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["LATENCY_BOUNDS", "Histogram", "Traffic"]

#: Upper bounds (seconds) of the latency buckets: 0.5 ms to 60 s, then +Inf.
LATENCY_BOUNDS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Traffic:
    """Bytes read and written by every connection that shares this object.

    A listener hands its own to each accepted connection, a cluster to each upstream
    connection its pools dial (MOSN's ``bytes_read_total`` / ``bytes_write_total``).
    """

    __slots__ = ("read", "written")

    def __init__(self) -> None:
        self.read = 0
        self.written = 0

    def snapshot(self) -> dict[str, int]:
        return {"read": self.read, "written": self.written}


class Histogram:
    """Observations counted into fixed buckets, plus their sum, count, min and max.

    ``counts[i]`` counts values ``<= bounds[i]`` and above the previous bound; the last
    count is the +Inf bucket.
    """

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0
        self.min: float | None = None
        self.max: float | None = None

    def observe(self, value: float) -> None:
        # ``bisect_left(bounds, value)`` by hand: compiled, a loop over a few unboxed
        # floats (most latencies land in the first buckets) costs less than the call.
        i = 0
        for bound in self.bounds:
            if value <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.sum += value
        self.count += 1
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def snapshot(self) -> dict[str, Any]:
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
            "min": self.min,
            "max": self.max,
        }
