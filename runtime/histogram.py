"""A latency histogram as plain counts, for hot paths that must not take a
lock per observation; a metrics collector exports it at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Seconds: 1 ms to 30 s, roughly x2.5 per step.  Fan-out, snapshot and round
# trip latencies all fall in this range; one scale keeps dashboards uniform.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Histogram:
    """Counts of observations per bucket (upper bounds inclusive, as in
    Prometheus), their sum and their number.  Not thread-safe: observe from
    one thread (the event loop)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and ascending")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf, the shape
        `HistogramMetricFamily(buckets=...)` takes."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
