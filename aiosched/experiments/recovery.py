"""Recovery from a slowdown: does admission lock the scheduler out once the device is back?

The sim device runs at full speed, slows by ``slowdown`` times for
``slow_for`` seconds from ``slow_at``, then recovers. An open-loop Poisson
load (the load generator's) runs through it with every predictor, with the
default policy, and once without admission (``best_effort``) for reference.
For each run the figure is deadline attainment (met / sent, by intended send
time) per ``window`` seconds, and *recovered after*: the time from the end of
the slowdown to the start of the first window from which every later window
attains at least ``target``. A predictor that saw only slow executions and
then rejects everything never sees the device recover, and never gets there.

How the device is used after the slowdown tells why a run falls short: the
mean and the largest batch started after it, and the fraction of those
batches that overlapped another (co-location). A predictor that keeps
some batch sizes predicted too slow runs smaller batches than before; a
policy that stopped co-locating during the slowdown serves from one lane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .. import simtime
from ..backends.sim import Drift, SimBackend
from ..errors import InvalidConfig
from ..loadgen.driver import OpenLoopDriver
from ..loadgen.report import BatchStats
from ..loadgen.workload import Workload
from ..scheduler import DEFAULT_PREDICTOR, Scheduler

__all__ = ["RecoveryConfig", "run", "run_one"]

PREDICTORS = (DEFAULT_PREDICTOR, "overlap", "solo", "static", "ewma", "sgd", "rls", "oracle")


@dataclass(frozen=True)
class RecoveryConfig:
    model: str = "resnet50"
    rate: float = 600.0
    deadline: float = 0.050
    lanes: int = 2
    max_batch_size: int = 8
    duration: float = 10.0
    slow_at: float = 2.0
    slow_for: float = 1.0
    slowdown: float = 20.0
    window: float = 0.25
    target: float = 0.99
    predictors: tuple[str, ...] = PREDICTORS
    best_effort: bool = True
    """Also run the default predictor without admission, for reference."""
    seed: int = 0

    def validate(self) -> None:
        positive = ("rate", "deadline", "duration", "slow_for", "slowdown", "window")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidConfig(f"{name} must be a positive number, got {value!r}")
        if not 0 < self.target <= 1:
            raise InvalidConfig("target must be in (0, 1]")
        if self.slow_at < 0 or self.slow_at + self.slow_for >= self.duration:
            raise InvalidConfig("the slowdown must start at >= 0 and end before the run does")
        if self.lanes < 1 or self.max_batch_size < 1:
            raise InvalidConfig("lanes and max_batch_size must be >= 1")
        if not self.predictors and not self.best_effort:
            raise InvalidConfig("nothing to run: give predictors or best_effort")


def run_one(cfg: RecoveryConfig, predictor: str, *, best_effort: bool = False) -> dict[str, Any]:
    """One run in virtual time: attainment per window, and when it recovered."""
    return simtime.run(_run(cfg, predictor, best_effort))


async def _run(cfg: RecoveryConfig, predictor: str, best_effort: bool) -> dict[str, Any]:
    drift = [
        Drift(cfg.slow_at, speed=1.0 / cfg.slowdown),
        Drift(cfg.slow_at + cfg.slow_for, speed=1.0),
    ]
    backend = SimBackend(lanes=cfg.lanes, seed=cfg.seed)
    workload = Workload.parse(cfg.model, str(cfg.deadline * 1e3))
    schedule = workload.schedule("poisson", cfg.rate, cfg.duration, cfg.seed)
    bins = max(1, math.ceil(cfg.duration / cfg.window))
    sent = [0] * bins
    met = [0] * bins
    async with Scheduler(backend, predictor=predictor, best_effort=best_effort) as sched:
        sched.register(cfg.model, max_batch_size=cfg.max_batch_size)
        await sched.ready()
        t0 = sched.now()
        # Drift times count from the backend's start; the warm-up ran between it and t0.
        backend.add_drift([Drift(t0 - backend.started_at + d.at, speed=d.speed) for d in drift])

        async def target(model: str, x: Any, deadline: float) -> Any:
            sent_at = sched.now()
            i = min(bins - 1, int((sent_at - t0) / cfg.window))
            sent[i] += 1
            out = await sched.infer(model, x, deadline)
            if sched.now() <= sent_at + deadline:
                met[i] += 1
            return out

        await OpenLoopDriver(target, schedule, clock=sched.clock).run()
        snap = sched.snapshot()
        end_at = t0 + cfg.slow_at + cfg.slow_for
        later = [e for e in sched.timeline.history if e.start >= end_at and e.ok and not e.warmup]
    attainment = [m / s if s else math.nan for m, s in zip(met, sent, strict=True)]
    end = cfg.slow_at + cfg.slow_for
    recovered = _recovered_after(attainment, cfg.window, end, cfg.target)
    after = [
        (m, s) for i, (m, s) in enumerate(zip(met, sent, strict=True)) if i * cfg.window >= end
    ]
    counts = snap.models[cfg.model]
    return {
        "predictor": predictor,
        "admission": not best_effort,
        "attainment": [None if math.isnan(a) else round(a, 4) for a in attainment],
        "recovered_after_s": recovered,
        "met_after_slowdown": sum(m for m, _ in after) / max(1, sum(s for _, s in after)),
        "met": sum(met) / max(1, sum(sent)),
        "rejected": counts.rejected,
        "mean_batch": BatchStats.from_sizes(counts.batch_sizes).mean_size,
        "mean_batch_after": sum(e.batch_size for e in later) / len(later) if later else None,
        "largest_batch_after": max((e.batch_size for e in later), default=None),
        "colocated_after": sum(not e.solo for e in later) / len(later) if later else None,
    }


def _recovered_after(
    attainment: Sequence[float], window: float, end: float, target: float
) -> float | None:
    """Seconds from ``end`` to the first window from which all later ones meet ``target``."""
    first = math.ceil(end / window - 1e-9)
    for i in range(first, len(attainment)):
        rest = [a for a in attainment[i:] if not math.isnan(a)]
        if rest and min(rest) >= target:
            return round(i * window - end, 3)
    return None


def run(cfg: RecoveryConfig) -> dict[str, Any]:
    """Every predictor with admission, and the reference without; JSON-able."""
    cfg.validate()
    runs = [run_one(cfg, p) for p in cfg.predictors]
    if cfg.best_effort:
        runs.append(run_one(cfg, DEFAULT_PREDICTOR, best_effort=True))
    return {"config": asdict(cfg), "runs": runs}
