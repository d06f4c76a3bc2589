"""Interim statistics of a running load: :class:`Progress`, and the watcher that makes them.

A :class:`ProgressWatcher` turns a driver's live counters into successive
:class:`Progress` objects, each covering the time since the previous one, at
the cost of a pass over the counters and two histogram differences; the
driver calls one every ``progress_interval`` seconds, and
:meth:`~aiosched.loadgen.driver.OpenLoopDriver.watch` makes one per watcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from aiosched.loadgen.histogram import percentiles_of_counts
from aiosched.loadgen.result import ModelResult, RequestCounts
from aiosched.loadgen.workload import Schedule

__all__ = ["Progress", "ProgressSource", "ProgressWatcher"]


class ProgressSource(Protocol):
    """What a watcher reads: the driver's schedule, per-model results and clock."""

    @property
    def schedule(self) -> Schedule: ...

    @property
    def stats(self) -> Sequence[ModelResult]: ...

    @property
    def done(self) -> bool: ...

    def elapsed_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Progress:
    """Interim statistics of a running load, cheap to take (counters and two histogram scans).

    ``counts`` are cumulative; ``interval`` and the percentiles cover the time
    since the previous :class:`Progress` of the same watcher (the whole run so
    far for the first one).
    """

    elapsed_s: float
    window_s: float
    """The sending window (the schedule's duration)."""
    planned: int
    counts: RequestCounts
    per_model: dict[str, RequestCounts]
    interval_s: float
    interval: RequestCounts
    latency_p50_s: float | None
    latency_p99_s: float | None
    send_lag_p99_s: float | None
    done: bool

    @property
    def fraction(self) -> float:
        """Elapsed part of the sending window, 0..1."""
        if self.window_s <= 0:
            return 1.0 if self.done else 0.0
        return min(1.0, max(0.0, self.elapsed_s / self.window_s))

    def _rate(self, n: int) -> float:
        return n / self.interval_s if self.interval_s > 0 else 0.0

    @property
    def sent_rps(self) -> float:
        return self._rate(self.interval.sent)

    @property
    def achieved_rps(self) -> float:
        return self._rate(self.interval.completed)

    @property
    def goodput_rps(self) -> float:
        return self._rate(self.interval.met_deadline)

    @property
    def miss_pct(self) -> float:
        """Missed deadlines (missed, rejected, failed) per resolved request in the interval, %."""
        i = self.interval
        resolved = i.completed + i.rejected + i.failed
        return 100.0 * (resolved - i.met_deadline) / resolved if resolved else 0.0


class ProgressWatcher:
    """Turns the driver's live counters into successive :class:`Progress` objects."""

    def __init__(self, driver: ProgressSource) -> None:
        self._driver = driver
        self._at = 0.0
        self._counts = RequestCounts()
        n = len(driver.stats[0].latency.counts) if driver.stats else 0
        self._latency: NDArray[np.uint64] = np.zeros(n, dtype=np.uint64)
        self._lag: NDArray[np.uint64] = np.zeros(n, dtype=np.uint64)

    def next(self) -> Progress:
        d = self._driver
        elapsed = d.elapsed_s()
        counts = RequestCounts()
        latency = np.zeros_like(self._latency)
        lag = np.zeros_like(self._lag)
        per_model: dict[str, RequestCounts] = {}
        for stats in d.stats:
            counts.add(stats.counts)
            per_model[stats.name] = stats.counts.copy()
            latency += stats.latency.counts
            lag += stats.send_lag.counts
        interval = RequestCounts(
            *(
                a - b
                for a, b in zip(
                    counts.as_dict().values(), self._counts.as_dict().values(), strict=True
                )
            )
        )
        p50, p99 = percentiles_of_counts(latency - self._latency, (50.0, 99.0))
        (lag99,) = percentiles_of_counts(lag - self._lag, (99.0,))
        progress = Progress(
            elapsed_s=elapsed,
            window_s=d.schedule.duration_s,
            planned=len(d.schedule),
            counts=counts,
            per_model=per_model,
            interval_s=elapsed - self._at,
            interval=interval,
            latency_p50_s=p50,
            latency_p99_s=p99,
            send_lag_p99_s=lag99,
            done=d.done,
        )
        self._at, self._counts, self._latency, self._lag = elapsed, counts, latency, lag
        return progress
