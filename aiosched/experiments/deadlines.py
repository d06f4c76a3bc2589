"""The scheduler with one predictor against another: met-deadline fractions, same arrivals.

An interference-heavy workload (by default the four heaviest simulated
models on two lanes, Poisson arrivals, one deadline for every request) runs
once per predictor on a fresh sim backend with the same seed, so every run
sees the very same requests. The figure is the fraction of *submitted*
requests that completed within their deadline: a request rejected early
(predicted unmeetable) counts as not met, as does one that completed late.
The policy (EDF) sizes batches and admits requests from the predictions, so
a better predictor shows up as more deadlines met.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from .. import simtime
from ..errors import InvalidConfig
from ..loadgen.driver import run_open_loop
from ..predict import Predictor, make_predictor
from ..scheduler import Scheduler
from .setup import experiment_backend, load_models, register_all
from .workload import Phase, poisson_schedule

__all__ = ["DeadlinesConfig", "DeadlinesResult", "compare", "parse_predictor", "run_one"]


def parse_predictor(spec: str) -> Predictor:
    """``name`` or ``name:key=value,key=value`` -> a new predictor (see ``make_predictor``)."""
    return make_predictor(spec)


@dataclass(frozen=True)
class DeadlinesConfig:
    """``rate`` requests/s in total, split evenly over ``models``; every budget ``deadline`` s."""

    models: tuple[str, ...] = ("resnet50", "vit_b16", "vgg19", "convnext_b")
    predictors: tuple[str, ...] = ("overlap:quantile=0.9", "solo", "overlap")
    lanes: int = 2
    rate: float = 250.0
    deadline: float = 0.025
    duration: float = 30.0
    max_batch_size: int = 8
    seed: int = 0

    def validate(self) -> None:
        for spec in self.predictors:
            parse_predictor(spec)
        if not self.predictors:
            raise InvalidConfig("give at least one predictor")
        if not (self.rate > 0 and self.deadline > 0 and self.duration > 0):
            raise InvalidConfig("rate, deadline and duration must be > 0")
        if self.lanes < 1 or self.max_batch_size < 1:
            raise InvalidConfig("lanes and max_batch_size must be >= 1")
        load_models("sim", self.models)

    def with_overrides(self, **overrides: Any) -> DeadlinesConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class DeadlinesResult:
    """Counts over every request of one run; ``met`` is ``met_deadline / submitted``."""

    submitted: int
    met_deadline: int
    missed_deadline: int
    rejected: int
    met: float
    p99_latency_s: float
    predictor_mape: float
    predictor_p95_ape: float


async def _run(config: DeadlinesConfig, predictor: str) -> DeadlinesResult:
    entries = load_models("sim", config.models)
    even = {m: config.rate / len(config.models) for m in config.models}
    schedule = poisson_schedule(
        [Phase(config.duration, even)],
        dict.fromkeys(config.models, config.deadline),
        seed=config.seed,
    )
    backend = experiment_backend("sim", config.lanes, seed=config.seed)
    async with Scheduler(backend, predictor=parse_predictor(predictor)) as sched:
        register_all(sched, entries, config.max_batch_size)
        await sched.ready()
        inputs = {e.name: e.sample for e in entries}
        await run_open_loop(
            sched.infer, schedule, make_input=inputs.__getitem__, drain_timeout=None
        )
        snap = sched.snapshot()
    models = snap.models.values()
    submitted = sum(m.submitted for m in models)
    met = sum(m.met_deadline for m in models)
    p99 = max((m.latency.p99 for m in models if m.latency.count), default=float("nan"))
    return DeadlinesResult(
        submitted=submitted,
        met_deadline=met,
        missed_deadline=sum(m.missed_deadline for m in models),
        rejected=sum(m.rejected for m in models),
        met=met / submitted if submitted else float("nan"),
        p99_latency_s=p99,
        predictor_mape=snap.predictor_mape,
        predictor_p95_ape=snap.predictor_p95_ape,
    )


def run_one(config: DeadlinesConfig, predictor: str) -> DeadlinesResult:
    """One run in virtual time."""
    return simtime.run(_run(config, predictor))


def compare(config: DeadlinesConfig) -> dict[str, Any]:
    """Every predictor of ``config`` on the same arrivals; a JSON-ready report."""
    config.validate()
    t0 = time.perf_counter()
    results = {name: run_one(config, name) for name in config.predictors}
    return {
        "experiment": "deadlines",
        "backend": "sim",
        "config": {**asdict(config), "models": list(config.models)},
        "results": {name: asdict(r) for name, r in results.items()},
        "wall_s": time.perf_counter() - t0,
    }
