"""Immutable copies of the scheduler's statistics, for views and exporters.

A snapshot is taken on the event loop in microseconds and can then be read,
rendered or serialised anywhere without touching the scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .stats import LatencyHistogram, ModelCounters

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = [
    "HISTOGRAM_BOUNDS",
    "LaneSnapshot",
    "LatencySummary",
    "ModelSnapshot",
    "SchedulerSnapshot",
    "model_snapshot",
    "scheduler_snapshot",
]


HISTOGRAM_BOUNDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The bounds (seconds) of :attr:`LatencySummary.buckets`: 100 us to 10 s."""


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Seconds (request latency, or queue wait) summarised; ``nan`` when nothing was recorded.

    Percentiles are within about 1 % (the midpoint of a 2 %-wide bucket).
    """

    count: int = 0
    mean: float = math.nan
    p50: float = math.nan
    p90: float = math.nan
    p99: float = math.nan
    p999: float = math.nan
    max: float = math.nan
    total: float = 0.0
    """The sum of the values recorded (exact)."""
    buckets: tuple[tuple[float, int], ...] = ()
    """``(bound, count)`` for each of :data:`HISTOGRAM_BOUNDS`: how many values were at
    most ``bound`` (a histogram's cumulative ``le`` buckets; empty when nothing was
    recorded). A count may include values up to 2 % above its bound (see
    :meth:`LatencyHistogram.cumulative <aiosched.telemetry.stats.LatencyHistogram.cumulative>`).
    Unlike percentiles, these add up across schedulers."""


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    name: str
    submitted: int
    completed: int
    met_deadline: int
    missed_deadline: int
    rejected: int
    failed: int
    cancelled: int
    queue_depth: int
    in_flight: int
    latency: LatencySummary
    """Arrival to result, over completed requests."""
    batch_sizes: Mapping[int, int]
    warm: bool
    queue_wait: LatencySummary = LatencySummary()
    """Arrival to the dispatch of the batch that first ran it, over requests that ran."""

    @property
    def pending(self) -> int:
        return self.submitted - self.completed - self.rejected - self.failed - self.cancelled


@dataclass(frozen=True, slots=True)
class LaneSnapshot:
    lane: int
    busy: bool
    alive: bool
    model: str | None
    batch_size: int
    executions: int
    stuck: bool = False
    """A batch on it ran far past its prediction: the watchdog gave up on it."""


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """The whole scheduler at one instant of its clock."""

    time: float
    backend: str
    policy: str
    predictor: str
    closed: bool
    models: Mapping[str, ModelSnapshot]
    lanes: tuple[LaneSnapshot, ...]
    executions: int
    max_concurrency: int
    """The most executions that were ever in flight at once."""
    predictor_mape: float
    predictor_p95_ape: float
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def in_flight(self) -> int:
        return sum(1 for lane in self.lanes if lane.busy)

    @property
    def queue_depth(self) -> int:
        return sum(m.queue_depth for m in self.models.values())

    def total(self, counter: str) -> int:
        """Sum of one counter (``"completed"``, ``"rejected"``, ...) over models."""
        return sum(int(getattr(m, counter)) for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (batch sizes keyed by strings)."""
        models = {}
        for name, m in self.models.items():
            fields = {f.name: getattr(m, f.name) for f in dataclass_fields(m)}
            fields["latency"] = asdict(m.latency)
            fields["queue_wait"] = asdict(m.queue_wait)
            fields["batch_sizes"] = {str(k): v for k, v in m.batch_sizes.items()}
            models[name] = fields
        return {
            "time": self.time,
            "backend": self.backend,
            "policy": self.policy,
            "predictor": self.predictor,
            "closed": self.closed,
            "models": models,
            "lanes": [asdict(lane) for lane in self.lanes],
            "executions": self.executions,
            "max_concurrency": self.max_concurrency,
            "predictor_mape": self.predictor_mape,
            "predictor_p95_ape": self.predictor_p95_ape,
            "extra": dict(self.extra),
        }


def latency_summary(h: LatencyHistogram) -> LatencySummary:
    if not h.count:
        return LatencySummary()
    p50, p90, p99, p999 = h.percentiles((50, 90, 99, 99.9))
    return LatencySummary(
        count=h.count,
        mean=h.total / h.count,
        p50=p50,
        p90=p90,
        p99=p99,
        p999=p999,
        max=h.max,
        total=h.total,
        buckets=tuple(zip(HISTOGRAM_BOUNDS, h.cumulative(HISTOGRAM_BOUNDS), strict=True)),
    )


def model_snapshot(
    name: str, c: ModelCounters, queue_depth: int, in_flight: int, warm: bool
) -> ModelSnapshot:
    """One model's figures, copied out of its live counters."""
    return ModelSnapshot(
        name=name,
        submitted=c.submitted,
        completed=c.completed,
        met_deadline=c.met_deadline,
        missed_deadline=c.missed_deadline,
        rejected=c.rejected,
        failed=c.failed,
        cancelled=c.cancelled,
        queue_depth=queue_depth,
        in_flight=in_flight,
        latency=latency_summary(c.latency),
        batch_sizes=MappingProxyType(dict(sorted(c.batch_sizes.items()))),
        warm=warm,
        queue_wait=latency_summary(c.queue_wait),
    )


def scheduler_snapshot(s: Scheduler) -> SchedulerSnapshot:
    """What :meth:`Scheduler.snapshot <aiosched.Scheduler.snapshot>` returns."""
    now = s._clock.now() if s._clock is not None else 0.0
    in_flight: dict[str, int] = {}
    for r in s._timeline.in_flight:
        in_flight[r.model] = in_flight.get(r.model, 0) + 1
    models = {
        name: model_snapshot(name, m.counters, len(m.queue), in_flight.get(name, 0), m.warm)
        for name, m in s._models.items()
    }
    err = s._predictor.error()
    return SchedulerSnapshot(
        time=now,
        backend=s._backend.name,
        policy=s._policy.name,
        predictor=s._predictor.name,
        closed=s._closed,
        models=MappingProxyType(models),
        lanes=s._lanes.snapshot(),
        executions=sum(s._lanes.count),
        max_concurrency=s._lanes.most_in_flight,
        predictor_mape=err.mape,
        predictor_p95_ape=err.p95_ape,
        extra=MappingProxyType({"device": dict(s._backend.telemetry())}),
    )
