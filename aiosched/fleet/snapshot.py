"""An immutable copy of a fleet's statistics: each device's snapshot, and the totals.

The totals add each model's counters over the devices that host it, and
those it was released from (unregistered there: their counts stay).
Percentiles cannot be added from the devices' summaries (a percentile of
percentiles is not one), so histograms are added instead: the queue wait is
the sum of each device's buckets (:meth:`LatencyHistogram.merge
<aiosched.telemetry.stats.LatencyHistogram.merge>`), and the latency is the
fleet's own histogram, recorded as each request returns its result (it
includes the fleet's routing, which no device sees).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..telemetry.snapshot import ModelSnapshot, SchedulerSnapshot, model_snapshot
from ..telemetry.stats import COUNTS, LatencyHistogram, ModelCounters

__all__ = ["FleetSnapshot", "add_counters", "model_totals"]


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """The fleet at one instant: per device, per model in total, and where models run."""

    time: float
    closed: bool
    labels: tuple[str, ...]
    """Each device's name (``"sim:0"``, ``"cuda:1"``), in device order."""
    devices: tuple[SchedulerSnapshot, ...]
    live: tuple[bool, ...]
    """False for a device all of whose lanes failed: nothing is routed to it any more."""
    load: tuple[float, ...]
    """Each device's routed work per second over the last rebalance period (see
    :mod:`aiosched.fleet.rebalance`)."""
    backlog: tuple[float, ...]
    """Each device's predicted seconds of work outstanding (queued and running), now."""
    placement: Mapping[str, tuple[int, ...]]
    """Each model's replicas: the devices new requests go to."""
    models: Mapping[str, ModelSnapshot]
    """Each model's counters added over its devices; latency from the fleet's own record."""
    grown: int
    """Replicas added by rebalancing so far."""
    shrunk: int
    """Replicas removed by rebalancing so far."""
    released: int = 0
    """Dormant hosts the fleet unregistered a model from (``release_after``) so far."""

    @property
    def in_flight(self) -> int:
        return sum(d.in_flight for d in self.devices)

    @property
    def queue_depth(self) -> int:
        return sum(d.queue_depth for d in self.devices)

    def total(self, counter: str) -> int:
        """Sum of one counter (``"completed"``, ``"rejected"``, ...) over models and devices."""
        return sum(int(getattr(m, counter)) for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        models = {}
        for name, m in self.models.items():
            fields = {f: getattr(m, f) for f in ModelSnapshot.__dataclass_fields__}
            fields["latency"] = asdict(m.latency)
            fields["queue_wait"] = asdict(m.queue_wait)
            fields["batch_sizes"] = {str(k): v for k, v in m.batch_sizes.items()}
            models[name] = fields
        return {
            "time": self.time,
            "closed": self.closed,
            "labels": list(self.labels),
            "devices": [d.to_dict() for d in self.devices],
            "live": list(self.live),
            "load": list(self.load),
            "backlog": list(self.backlog),
            "placement": {k: list(v) for k, v in self.placement.items()},
            "models": models,
            "grown": self.grown,
            "shrunk": self.shrunk,
            "released": self.released,
        }


def model_totals(
    name: str,
    parts: Sequence[ModelCounters],
    latency: LatencyHistogram,
    devices: Sequence[SchedulerSnapshot],
    replicas: Sequence[int],
) -> ModelSnapshot:
    """``name``'s counters added over ``parts`` (each host's, and the released hosts'),
    with the fleet's own ``latency``; queued and running from ``devices``; warm when
    each of its replicas is."""
    counters = ModelCounters()
    for part in parts:
        add_counters(counters, part)
    counters.latency = latency
    queued = running = 0
    for snap in devices:
        m = snap.models.get(name)
        if m is not None:
            queued += m.queue_depth
            running += m.in_flight
    warm = all(devices[d].models[name].warm for d in replicas if name in devices[d].models)
    return model_snapshot(name, counters, queued, running, warm)


def add_counters(into: ModelCounters, other: ModelCounters) -> None:
    """Add ``other``'s counts, batch sizes and queue waits to ``into`` (not its latency:
    the fleet records its own, from the caller's side)."""
    for name in COUNTS:
        setattr(into, name, getattr(into, name) + getattr(other, name))
    into.batch_sizes.update(other.batch_sizes)
    into.queue_wait.merge(other.queue_wait)
