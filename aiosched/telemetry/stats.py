"""Counters and latency histograms the scheduler updates on its hot path.

Recording is O(1) and allocation-free: latencies go into log-spaced buckets
(2 % wide), which bounds a percentile's error at about 1 % without keeping
samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

__all__ = ["COUNTS", "LatencyHistogram", "ModelCounters"]

_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_MIN_S = 1e-6  # latencies below 1 us share the first bucket
_INV_MIN_S = 1.0 / _MIN_S
_INV_LOG_GROWTH = 1.0 / _LOG_GROWTH
_log = math.log


def _index(seconds: float) -> int:
    """The bucket of ``seconds``: ``[MIN * 1.02**i, MIN * 1.02**(i + 1))``; 0 also holds all
    below."""
    return int(_log(seconds * _INV_MIN_S) * _INV_LOG_GROWTH) if seconds > _MIN_S else 0


class LatencyHistogram:
    """Log-bucketed seconds; percentiles are bucket midpoints (about +-1 %)."""

    __slots__ = ("_buckets", "count", "max", "total")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        self.record_many([seconds])

    def record_many(self, values: list[float]) -> None:
        """Record several latencies (one finished batch) in one call."""
        buckets = self._buckets
        top = self.max
        for seconds in values:
            # _index, inlined: this runs once per request
            idx = int(_log(seconds * _INV_MIN_S) * _INV_LOG_GROWTH) if seconds > _MIN_S else 0
            buckets[idx] = buckets.get(idx, 0) + 1
            if seconds > top:
                top = seconds
        self.max = top
        self.count += len(values)
        self.total += sum(values)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in seconds; ``nan`` when empty."""
        return self.percentiles([q])[0]

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """Several percentiles (each 0..100, ascending) in one pass over the buckets."""
        if any(b < a for a, b in pairwise(qs)):
            raise ValueError(f"percentiles must be ascending, got {list(qs)}")
        if not self.count:
            return [math.nan] * len(qs)
        out: list[float] = []
        buckets = self._buckets
        keys = sorted(buckets)
        i = seen = 0
        for q in qs:
            rank = max(1, math.ceil(self.count * q / 100.0))
            while seen < rank and i < len(keys):
                seen += buckets[keys[i]]
                i += 1
            idx = keys[i - 1] if i else 0
            if seen < rank:  # q beyond 100
                out.append(self.max)
            elif idx == 0:
                out.append(min(_MIN_S, self.max))
            else:
                out.append(min(_MIN_S * math.pow(_GROWTH, idx + 0.5), self.max))
        return out

    def cumulative(self, bounds: Sequence[float]) -> list[int]:
        """How many recorded values are at most each of ``bounds`` (ascending), in seconds:
        the ``le`` buckets of a Prometheus histogram.

        Counted by whole buckets: a bucket counts towards ``b`` when ``b`` lies at
        or above its lower edge. So the count at ``b`` includes every value ``<= b``
        and may include values up to one bucket's width (2 %) above ``b``; it never
        misses one below. The counts never decrease, and a bound above :attr:`max`
        counts everything.
        """
        if any(b < a for a, b in pairwise(bounds)):
            raise ValueError(f"bounds must be ascending, got {list(bounds)}")
        buckets = self._buckets
        keys = sorted(buckets)
        out: list[int] = []
        i = seen = 0
        for bound in bounds:
            top = _index(bound)
            while i < len(keys) and keys[i] <= top:
                seen += buckets[keys[i]]
                i += 1
            out.append(seen)
        return out

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s values to these (its buckets, count, total and max): the
        histogram of both sets of values, as if recorded here, with the same ~1 %
        percentiles. Summaries cannot be added this way; buckets can."""
        for idx, n in other._buckets.items():
            self._buckets[idx] = self._buckets.get(idx, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)


COUNTS = (
    "submitted",
    "completed",
    "met_deadline",
    "missed_deadline",
    "rejected",
    "failed",
    "cancelled",
)
"""The integer counters of :class:`ModelCounters`, in the order reports list them."""


class ModelCounters:
    """What happened to one model's requests. ``submitted`` counts inputs that passed validation.

    Every submitted request ends as exactly one of completed (met or missed
    deadline), rejected, failed or cancelled; until then it is pending.
    """

    __slots__ = (
        "batch_sizes",
        "cancelled",
        "completed",
        "failed",
        "latency",
        "met_deadline",
        "missed_deadline",
        "queue_wait",
        "rejected",
        "submitted",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.met_deadline = 0
        self.missed_deadline = 0
        self.rejected = 0
        self.failed = 0
        self.cancelled = 0
        self.latency = LatencyHistogram()
        """Arrival to result of each completed request."""
        self.queue_wait = LatencyHistogram()
        """Arrival to the dispatch of the batch that first ran it, for each request that
        ran (a retried request counts once: its later waits are part of a failure's cost,
        not of queueing)."""
        self.batch_sizes: Counter[int] = Counter()

    @property
    def pending(self) -> int:
        return self.submitted - self.completed - self.rejected - self.failed - self.cancelled
