"""What an open-loop run measured: request outcomes and histograms, per model.

Every sent request is exactly one of completed (met or missed its deadline),
rejected, failed or cancelled, so ``sent == completed + rejected + failed +
cancelled`` and ``completed == met_deadline + missed_deadline`` once a run has
ended (while it runs, the difference is the requests in flight).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiosched.loadgen.histogram import Histogram
from aiosched.loadgen.timeseries import TimeSeries

__all__ = ["LoadResult", "ModelResult", "RequestCounts"]


@dataclass(slots=True)
class RequestCounts:
    """Outcome counters of a set of requests."""

    sent: int = 0
    completed: int = 0
    met_deadline: int = 0
    missed_deadline: int = 0
    rejected: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def in_flight(self) -> int:
        """Sent and not yet resolved (0 once the run has ended)."""
        return self.sent - self.completed - self.rejected - self.failed - self.cancelled

    def add(self, other: RequestCounts) -> None:
        self.sent += other.sent
        self.completed += other.completed
        self.met_deadline += other.met_deadline
        self.missed_deadline += other.missed_deadline
        self.rejected += other.rejected
        self.failed += other.failed
        self.cancelled += other.cancelled

    def copy(self) -> RequestCounts:
        out = RequestCounts()
        out.add(self)
        return out

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "completed": self.completed,
            "met_deadline": self.met_deadline,
            "missed_deadline": self.missed_deadline,
            "rejected": self.rejected,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


@dataclass(slots=True)
class ModelResult:
    """One model's outcomes; latency counts completed requests from their intended send time."""

    name: str
    planned: int = 0
    """Sends the schedule had for this model (``sent`` is lower when a run stops early)."""
    counts: RequestCounts = field(default_factory=RequestCounts)
    latency: Histogram = field(default_factory=Histogram)
    """Completed requests: response time minus intended send time."""
    send_lag: Histogram = field(default_factory=Histogram)
    """Every started request: actual call of the target minus intended send time."""

    def merge(self, other: ModelResult) -> None:
        self.planned += other.planned
        self.counts.add(other.counts)
        self.latency.merge(other.latency)
        self.send_lag.merge(other.send_lag)


@dataclass(slots=True)
class LoadResult:
    """The outcome of a whole run."""

    models: dict[str, ModelResult]
    duration_s: float
    """From the start of the run to its end (last response, or the end of draining)."""
    send_window_s: float
    """From the start to the end of sending: the schedule's window, or until the driver stopped."""
    stopped_early: bool = False
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The schedule's config (arrival, rate, seed, models)."""
    started_at: float | None = None
    """Wall-clock time (``time.time()``) at the start of the run; ``None`` if it never started."""
    series: TimeSeries | None = None
    """Per-second outcomes (:class:`~aiosched.loadgen.timeseries.TimeSeries`), when recorded."""

    def total(self) -> ModelResult:
        """All models merged."""
        out = ModelResult("total")
        for m in self.models.values():
            out.merge(m)
        return out
