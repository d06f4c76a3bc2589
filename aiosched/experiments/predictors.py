"""The predictor comparison (the paper's Fig. 5) and the drift scenario.

Accuracy. Each model is first profiled alone (:func:`solo_profile`), as
GPUlet-style regressions assume. An open-loop Poisson workload over several
models then runs on a backend's lanes under the scheduler; its trace (every
execution with who was in flight at its dispatch and who overlapped it) is
split 75/25 in time order. Every predictor is seeded with the profile; the
offline models (``static``, ``ewma`` at several alphas) are fitted on the
first part; every predictor then replays the whole trace
(:func:`~aiosched.experiments.replay.replay`: predict at each dispatch,
learn at each finish, so online ones arrive at the test part trained) and
is scored on the executions dispatched in the second part: mean and 95th
percentile of the absolute percentage error, as fractions. The same is
repeated without the profile (``predictors_without_profile``): under load
hardly anything runs alone, so what a predictor can make of overlapped runs
alone shows there.

Drift. A second trace changes the workload part-way: the model mix shifts
and the device slows down (sim: :class:`~aiosched.backends.sim.Drift`
drops the device speed; cpu and cuda: a thread starts keeping the device
busy). The online predictors (and ``static``, for contrast) replay it from
the start, ``static`` fitted on the part before the drift. For each we
report the error before and after, and ``recovery_executions``: counting
the executions dispatched after the drift in order, the first ``n`` at which
the mean APE of executions ``n-19..n`` is below 0.10 (so at least 20;
``None`` if it never is). Where even the error
before the drift is above 0.10 (real CPUs shared with other work),
``recovery_to_before_executions`` is the same count against 1.25 times the
predictor's own error before the drift.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..predict import (
    EwmaPredictor,
    OverlapPredictor,
    Predictor,
    RlsPredictor,
    SgdPredictor,
    SoloPredictor,
    StaticPredictor,
)
from ..predict.profile import Profile
from ..timeline import Execution
from .config import PredictorsConfig
from .recording import record, solo_profile, trace_stats
from .replay import Scored, ape_summary, replay

__all__ = [
    "ALPHAS",
    "DRIFT_ROSTER",
    "RECOVERY_RELATIVE",
    "RECOVERY_THRESHOLD",
    "RECOVERY_WINDOW",
    "DriftResult",
    "PredictorsConfig",
    "PredictorsReport",
    "accuracy",
    "drift_scores",
    "record",
    "recovery",
    "roster",
    "run",
    "solo_profile",
]

ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
RECOVERY_WINDOW = 20
RECOVERY_THRESHOLD = 0.10
RECOVERY_RELATIVE = 1.25
DRIFT_ROSTER = ("static", "sgd", "rls", "overlap", "solo")


def roster() -> dict[str, Callable[[], Predictor]]:
    """Every predictor the experiment compares, by the name it reports."""
    out: dict[str, Callable[[], Predictor]] = {"static": StaticPredictor}
    for a in ALPHAS:
        out[f"ewma-{a}"] = lambda a=a: EwmaPredictor(alpha=a)  # type: ignore[misc]
    out.update(sgd=SgdPredictor, rls=RlsPredictor, overlap=OverlapPredictor, solo=SoloPredictor)
    return out


@dataclass(frozen=True)
class DriftResult:
    """One predictor through the drift: see the module docstring for the definitions."""

    recovery_executions: int | None
    mape_before: float
    mape_after: float
    recovery_to_before_executions: int | None = None


@dataclass
class PredictorsReport:
    config: PredictorsConfig
    trace: dict[str, Any]
    predictors: dict[str, dict[str, float]]
    without_profile: dict[str, dict[str, float]] = field(default_factory=dict)
    drift: dict[str, DriftResult] = field(default_factory=dict)
    drift_trace: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": "predictors",
            "config": {**asdict(self.config), "models": list(self.config.models)},
            "trace": self.trace,
            "predictors": self.predictors,
            "predictors_without_profile": self.without_profile,
            "drift": {k: asdict(v) for k, v in self.drift.items()},
            "drift_trace": self.drift_trace,
            "recovery": {
                "window": RECOVERY_WINDOW,
                "threshold": RECOVERY_THRESHOLD,
                "relative_to_before": RECOVERY_RELATIVE,
            },
            "wall_s": self.wall_s,
        }


# -- scoring -------------------------------------------------------------------------


def _fresh(
    factory: Callable[[], Predictor], train: Sequence[Execution], profile: Profile | None
) -> Predictor:
    """A new predictor, seeded with the solo profile and (offline ones) fitted on ``train``."""
    predictor = factory()
    if profile is not None:
        predictor.seed(profile)
    if isinstance(predictor, StaticPredictor):
        predictor.fit(train)
    return predictor


def accuracy(
    trace: Sequence[Execution], split: float = 0.75, profile: Profile | None = None
) -> dict[str, dict[str, float]]:
    """Fit on the first ``split`` of ``trace`` (by dispatch time); score all on the rest.

    Every predictor is seeded with ``profile`` first, when one is given.
    """
    ordered = sorted(trace, key=lambda e: (e.start, e.id))
    cut_index = min(len(ordered) - 1, int(split * len(ordered)))
    cut = ordered[cut_index].start
    train = ordered[:cut_index]
    out: dict[str, dict[str, float]] = {}

    def tested(e: Execution) -> bool:
        return not e.warmup and e.start >= cut

    for name, factory in roster().items():
        predictor = _fresh(factory, train, profile)
        scored = replay(predictor, trace, tested)
        mape, p95 = ape_summary(scored)
        out[name] = {"mape": mape, "p95_ape": p95, "count": len(scored)}
    return out


def recovery(apes: Sequence[float], threshold: float = RECOVERY_THRESHOLD) -> int | None:
    """First ``n`` (from :data:`RECOVERY_WINDOW`) whose window mean APE is under ``threshold``."""
    w = RECOVERY_WINDOW
    if len(apes) < w or not math.isfinite(threshold):
        return None
    total = sum(apes[:w])
    for n in range(w, len(apes) + 1):
        if n > w:
            total += apes[n - 1] - apes[n - 1 - w]
        if total / w < threshold:
            return n
    return None


def drift_scores(
    trace: Sequence[Execution], drift_at: float, profile: Profile | None = None
) -> dict[str, DriftResult]:
    """Replay the drift trace through the online predictors (and ``static`` for contrast).

    ``mape_before`` covers the executions that finished before the drift, in
    the second half of that period (the online ones have settled by then);
    ``mape_after`` every execution dispatched after it. ``static`` is fitted
    on everything before the drift.
    """
    factories = roster()
    before = [e for e in trace if e.end <= drift_at]
    first = min((e.start for e in trace if not e.warmup), default=0.0)
    settled = (first + drift_at) / 2
    out: dict[str, DriftResult] = {}
    for name in DRIFT_ROSTER:
        predictor = _fresh(factories[name], before, profile)
        scored: list[Scored] = replay(predictor, trace)
        pre = [s for s in scored if s.execution.end <= drift_at and s.execution.start >= settled]
        post = sorted(
            (s for s in scored if s.execution.start >= drift_at),
            key=lambda s: (s.execution.start, s.execution.id),
        )
        apes = [s.ape for s in post]
        before_mape = ape_summary(pre)[0]
        out[name] = DriftResult(
            recovery(apes),
            before_mape,
            ape_summary(post)[0],
            recovery(apes, RECOVERY_RELATIVE * before_mape),
        )
    return out


def run(
    config: PredictorsConfig, *, on_stage: Callable[[str], None] | None = None
) -> PredictorsReport:
    """The whole experiment: record, score accuracy, then (unless disabled) the drift scenario."""
    t0 = time.perf_counter()
    stage = on_stage or (lambda _: None)
    stage("profiling each model alone")
    profile = solo_profile(config)
    stage("recording the workload")
    trace, _ = record(config)
    stage("replaying the trace through every predictor")
    scores = accuracy(trace, config.split, profile)
    report = PredictorsReport(config, trace_stats(trace), scores)
    stage("replaying it again, without the solo profile")
    report.without_profile = accuracy(trace, config.split)
    if config.drift:
        stage("recording the drift workload")
        drift_trace, drift_at = record(config, drift=True)
        stage("replaying the drift trace")
        report.drift = drift_scores(drift_trace, drift_at, profile)
        report.drift_trace = trace_stats(drift_trace)
    report.wall_s = time.perf_counter() - t0
    return report
