"""Open-loop Poisson workloads driven straight into a :class:`~aiosched.Scheduler`.

Arrivals are generated up front from a seed (as MLPerf LoadGen does), so two
runs, with two predictors, see the very same requests. Each arrival becomes
an asyncio task created at its time, whatever happened to the earlier ones:
a slow system cannot slow the senders down. A workload is a list of phases,
each a duration and a per-model rate, so the model mix can change part-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import AioschedError, InvalidConfig
from ..scheduler import Scheduler

__all__ = ["Arrival", "Phase", "drive", "poisson_arrivals"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request: ``at`` seconds after the start, for ``model``, with a budget of ``deadline``."""

    at: float
    model: str
    deadline: float


@dataclass(frozen=True, slots=True)
class Phase:
    """``duration`` seconds of Poisson arrivals at ``rates`` (requests/s per model)."""

    duration: float
    rates: Mapping[str, float]


def poisson_arrivals(
    phases: Sequence[Phase], deadlines: Mapping[str, float], seed: int = 0
) -> list[Arrival]:
    """Merged Poisson arrivals over ``phases`` (one after another), in time order."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    t0 = 0.0
    for phase in phases:
        if phase.duration < 0 or any(r < 0 for r in phase.rates.values()):
            raise InvalidConfig("phase durations and rates must be >= 0")
        models = [m for m, r in phase.rates.items() if r > 0]
        weights = [phase.rates[m] for m in models]
        total = sum(weights)
        t = t0
        while total > 0:
            t += rng.expovariate(total)
            if t >= t0 + phase.duration:
                break
            model = rng.choices(models, weights)[0]
            out.append(Arrival(t, model, deadlines[model]))
        t0 += phase.duration
    return out


async def drive(sched: Scheduler, arrivals: Sequence[Arrival], inputs: Mapping[str, Any]) -> None:
    """Send ``arrivals`` open-loop (each at its own time) and wait for every one to resolve.

    Typed rejections and failures are the scheduler's to count (its snapshot
    does); they do not stop the run.
    """
    start = sched.now()
    pending: set[asyncio.Task[None]] = set()

    async def call(arrival: Arrival) -> None:
        with contextlib.suppress(AioschedError):
            await sched.infer(arrival.model, inputs[arrival.model], deadline=arrival.deadline)

    for arrival in arrivals:
        delay = start + arrival.at - sched.now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(call(arrival))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.gather(*list(pending))
