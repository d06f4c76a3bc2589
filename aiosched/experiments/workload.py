"""The experiments' workloads: Poisson arrivals in phases, as a load-generator schedule.

A workload is a list of phases, each a duration and a per-model rate, so the
model mix can change part-way (the drift scenario). :func:`poisson_schedule`
draws it up front from a seed into a :class:`~aiosched.loadgen.Schedule`, which
:func:`~aiosched.loadgen.run_open_loop` sends open-loop, as it does for
``aiosched loadtest``: each arrival its own task at its own time, whatever
happened to the earlier ones.

The draws are Python's ``random`` (exponential gaps over the phase's total
rate, then a model by its share), not the load generator's NumPy processes:
the figures the README quotes come from these very arrivals, and a phase whose
mix changes is not something :class:`~aiosched.loadgen.Workload` describes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InvalidConfig
from ..loadgen.workload import Schedule

__all__ = ["Phase", "poisson_schedule"]


@dataclass(frozen=True, slots=True)
class Phase:
    """``duration`` seconds of Poisson arrivals at ``rates`` (requests/s per model)."""

    duration: float
    rates: Mapping[str, float]


def poisson_schedule(
    phases: Sequence[Phase], deadlines: Mapping[str, float], seed: int = 0
) -> Schedule:
    """Merged Poisson arrivals over ``phases`` (one after another), in time order.

    ``deadlines`` gives every model's budget in seconds; its keys, in order, are
    the schedule's models.
    """
    rng = random.Random(seed)
    models = tuple(deadlines)
    position = {m: i for i, m in enumerate(models)}
    offsets: list[float] = []
    index: list[int] = []
    t0 = 0.0
    for phase in phases:
        if phase.duration < 0 or any(r < 0 for r in phase.rates.values()):
            raise InvalidConfig("phase durations and rates must be >= 0")
        names = [m for m, r in phase.rates.items() if r > 0]
        weights = [phase.rates[m] for m in names]
        total = sum(weights)
        t = t0
        while total > 0:
            t += rng.expovariate(total)
            if t >= t0 + phase.duration:
                break
            offsets.append(t)
            index.append(position[rng.choices(names, weights)[0]])
        t0 += phase.duration
    budgets = np.asarray([deadlines[m] for m in models], dtype=np.float64)
    model_index = np.asarray(index, dtype=np.intp)
    config = {"arrival": "poisson", "phases": len(phases), "seed": seed}
    return Schedule(
        np.asarray(offsets, dtype=np.float64),
        model_index,
        budgets[model_index],
        models,
        t0,
        MappingProxyType(config),
    )
