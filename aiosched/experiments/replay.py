"""Replaying a recorded trace through a predictor, as if it had been the live one.

Events are taken in time order: at an execution's start the predictor
predicts it from what was in flight at its dispatch; at its end the
predictor learns it (finishes before dispatches at the same instant, as in
the scheduler, where a finish wakes the dispatcher). Two details keep the
replay faithful to a live run:

- The in-flight executions' ``expected_end`` is rewritten with the replayed
  predictor's *own* earlier predictions (the recording run's predictor made
  the originals), so a predictor that projects co-runners forward projects
  its own estimates.
- The execution it learns carries that prediction as ``predicted``, so the
  predictor's running error (:meth:`~aiosched.predict.Predictor.error`) is
  its own.

The first execution of each model is the cold run the scheduler never
learns from: skipped here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from ..predict.base import Predictor
from ..timeline import Execution

__all__ = ["Scored", "ape_summary", "cold_runs", "replay"]


@dataclass(frozen=True, slots=True)
class Scored:
    """One evaluated execution: what the predictor said at dispatch, and what happened."""

    execution: Execution
    predicted: float

    @property
    def ape(self) -> float:
        actual = self.execution.latency
        return abs(self.predicted - actual) / actual


def cold_runs(trace: Iterable[Execution]) -> set[int]:
    """Ids of the first execution of each model (the unlearnt cold run)."""
    first: dict[str, Execution] = {}
    for e in trace:
        seen = first.get(e.model)
        if e.warmup and (seen is None or e.start < seen.start):
            first[e.model] = e
    return {e.id for e in first.values()}


def replay(
    predictor: Predictor,
    trace: Sequence[Execution],
    evaluate: Callable[[Execution], bool] = lambda e: not e.warmup,
) -> list[Scored]:
    """Run ``trace`` through ``predictor`` in time order; score what ``evaluate`` picks."""
    skip = cold_runs(trace)
    events: list[tuple[float, int, int, Execution]] = []
    for e in trace:
        if e.id in skip:
            continue
        events.append((e.start, 1, e.id, e))
        events.append((e.end, 0, e.id, e))
    events.sort(key=lambda ev: (ev[0], ev[1], ev[2]))
    own: dict[int, float] = {}
    scored: list[Scored] = []
    for _, kind, _, e in events:
        if kind == 1:
            at_dispatch = tuple(
                replace(r, expected_end=r.start + own[r.id]) if r.id in own else r
                for r in e.at_dispatch
            )
            p = predictor.predict(e.model, e.batch_size, at_dispatch, e.start)
            own[e.id] = p
            if e.ok and evaluate(e):
                scored.append(Scored(e, p))
            continue
        if not e.ok:
            continue
        at_dispatch = tuple(
            replace(r, expected_end=r.start + own[r.id]) if r.id in own else r
            for r in e.at_dispatch
        )
        predictor.learn(replace(e, predicted=own.get(e.id, e.predicted), at_dispatch=at_dispatch))
    return scored


def ape_summary(scored: Sequence[Scored]) -> tuple[float, float]:
    """(MAPE, p95 APE) as fractions; NaN for nothing."""
    if not scored:
        return math.nan, math.nan
    apes = sorted(s.ape for s in scored)
    n = len(apes)
    return sum(apes) / n, apes[min(n - 1, math.ceil(0.95 * n) - 1)]
