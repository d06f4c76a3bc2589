"""A load test against a :class:`~aiosched.Fleet`: ``aiosched loadtest --devices N``.

The harness (:mod:`aiosched.loadgen.harness`) drives a fleet exactly as it
drives one scheduler (the fleet has the scheduler's API); what differs is
here: how the fleet is built (:class:`FleetOptions`), where the peak search
starts (:func:`fleet_capacity`), and the report's ``fleet`` section
(:func:`fleet_section`): each device's share of the measured run, the final
placement, the rebalance's moves, and the placement each time it changed
(:class:`PlacementLog`).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidConfig
from ..fleet import Fleet, FleetSnapshot
from ..scheduler import Scheduler
from ..telemetry.snapshot import SchedulerSnapshot
from ..telemetry.stats import COUNTS
from ..timeline import Execution
from .workload import Workload

if TYPE_CHECKING:
    from .harness import LoadtestConfig

__all__ = [
    "DEFAULT_REBALANCE_S",
    "FleetOptions",
    "PlacementLog",
    "fleet_capacity",
    "fleet_section",
    "front_schedulers",
]

HISTORY_PER_DEVICE: int = inspect.signature(Scheduler).parameters["keep_executions"].default
"""Executions each device keeps during a load test: what a lone scheduler keeps."""

DEFAULT_REBALANCE_S: float | None = inspect.signature(Fleet).parameters["rebalance_every"].default
"""The fleet's own rebalance period, which the report states when ``--rebalance-every`` is not
given (the fleet does not expose the period it runs with)."""


@dataclass(frozen=True)
class FleetOptions:
    """The fleet of a load test: its devices and how models are placed on them.

    ``devices`` are the :class:`~aiosched.Fleet`'s device names (``"sim"``
    once per simulated device, ``"cpu"`` likewise, ``"cuda:N"``); every model
    starts on ``replicas`` of them (``None``: all); ``rebalance_every`` is in
    seconds (``None``: the fleet's default), or ``0`` for no periodic
    rebalance.
    """

    devices: tuple[str, ...]
    replicas: int | None = None
    rebalance_every: float | None = None

    def __post_init__(self) -> None:
        if not self.devices:
            raise InvalidConfig("a fleet needs at least one device")
        n = len(self.devices)
        if self.replicas is not None and not 1 <= self.replicas <= n:
            raise InvalidConfig(
                f"--replicas must be from 1 to the {n} devices, got {self.replicas}"
            )
        every = self.rebalance_every
        if every is not None and not (math.isfinite(every) and every >= 0):
            raise InvalidConfig(f"--rebalance-every must be >= 0, got {every}")

    def build(self, cfg: LoadtestConfig) -> Fleet:
        """The fleet for ``cfg``: each device with ``cfg``'s lanes, policy and predictor."""
        every = self.rebalance_every
        return Fleet(
            list(self.devices),
            lanes=cfg.lanes,
            policy=cfg.policy,
            predictor=cfg.predictor,
            rebalance_every=DEFAULT_REBALANCE_S if every is None else (every or None),
            # Each device keeps the history a lone scheduler keeps: the per-device busy
            # time and --timeline read it (the fleet's default splits one total).
            keep_executions=len(self.devices) * HISTORY_PER_DEVICE,
        )

    def config(self, fleet: Fleet) -> dict[str, Any]:
        """The report's ``config`` entries: ``devices`` (labels), ``replicas``, the rebalance."""
        every = self.rebalance_every
        return {
            "devices": list(fleet.labels),
            "replicas": self.replicas,
            "rebalance_every_s": DEFAULT_REBALANCE_S if every is None else (every or None),
        }


def fleet_capacity(fleet: Fleet, workload: Workload, lanes: int) -> float:
    """The mix's capacity (requests/s) on the whole fleet, as the warm-up predicts it.

    Each model's capacity on one device (:func:`~aiosched.loadgen.harness.model_capacity`,
    the mean over the devices that host it) gives the device-seconds one request
    of the mix needs; the devices that host any model share them.
    """
    from .harness import model_capacity

    snap = fleet.snapshot()
    total_share = sum(m.share for m in workload.models)
    hosting: set[int] = set()
    seconds_per_request = 0.0
    for spec in fleet.models:
        devices = snap.placement[spec.name]
        hosting.update(devices)
        capacity = sum(model_capacity(fleet.devices[d], spec, lanes) for d in devices)
        load = next(m for m in workload.models if m.name == spec.name)
        seconds_per_request += (load.share / total_share) / (capacity / len(devices))
    return len(hosting) / seconds_per_request


class PlacementLog:
    """The fleet's placement each time it changed during a run (polled, so cheap).

    A task polls ``fleet.placement`` every ``interval`` seconds of the fleet's
    clock and keeps an entry only when something moved; :meth:`stop` takes a
    last look.
    """

    def __init__(self, fleet: Fleet, start: float, interval: float) -> None:
        self._fleet = fleet
        self._start = start
        self._interval = interval
        self.entries: list[dict[str, Any]] = []
        self._last: dict[str, list[str]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._look()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._look()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._look()

    def _look(self) -> None:
        labels = self._fleet.labels
        now = {
            s.name: [labels[d] for d in self._fleet.placement(s.name)] for s in self._fleet.models
        }
        if now != self._last:
            self._last = now
            t = round(self._fleet.now() - self._start, 6)
            self.entries.append({"t_s": t, "placement": now})


def _counts(snap: SchedulerSnapshot) -> dict[str, int]:
    return {c: sum(int(getattr(m, c)) for m in snap.models.values()) for c in COUNTS}


def fleet_section(
    before: Sequence[SchedulerSnapshot],
    after: Sequence[SchedulerSnapshot],
    fleet_before: FleetSnapshot,
    fleet_after: FleetSnapshot,
    executions: Sequence[Sequence[Execution]],
    duration_s: float,
    timeline: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The report's ``fleet`` section for one measured run.

    Per device (``devices``, in device order): the requests it took during the
    run and what became of them, its goodput, ``lanes_busy`` (the mean number
    of its lanes running a batch: execution seconds per second of the run),
    and the models placed on it at the end. Then ``placement`` (each model's
    devices at the end), ``grown`` and ``shrunk`` (the rebalance's moves
    during the run) and ``placement_over_time`` (``t_s`` from the run's start).
    """
    labels = fleet_after.labels
    devices = []
    for i, label in enumerate(labels):
        old, new = _counts(before[i]), _counts(after[i])
        diff = {c: new[c] - old[c] for c in COUNTS}
        busy = sum(e.latency for e in executions[i] if not e.warmup)
        devices.append(
            {
                "label": label,
                **diff,
                "goodput_rps": round(diff["met_deadline"] / duration_s, 3) if duration_s else None,
                "lanes_busy": round(busy / duration_s, 3) if duration_s else None,
                "lanes": len(after[i].lanes),
                "live": fleet_after.live[i],
                "models": [m for m, ds in fleet_after.placement.items() if i in ds],
            }
        )
    return {
        "devices": devices,
        "placement": {m: [labels[d] for d in ds] for m, ds in fleet_after.placement.items()},
        "grown": fleet_after.grown - fleet_before.grown,
        "shrunk": fleet_after.shrunk - fleet_before.shrunk,
        "grown_total": fleet_after.grown,
        "shrunk_total": fleet_after.shrunk,
        "placement_over_time": list(timeline),
    }


def front_schedulers(front: Scheduler | Fleet) -> tuple[Scheduler, ...]:
    """The schedulers behind ``front``: itself, or each device's."""
    return (front,) if isinstance(front, Scheduler) else front.devices
