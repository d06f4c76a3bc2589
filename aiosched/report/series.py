"""The numbers behind the figures, computed from the inputs (no matplotlib here).

* :func:`contender_curves`: goodput and attainment against offered load, one
  curve per (policy, predictor) of a compare document; rounds of ``--repeat``
  at one rate are pooled (goodput: their mean; attainment: met over sent).
* :func:`default_window`: the part of a timeline the lane figure shows when
  no ``--window`` is given.
* :func:`prediction_error`: mean absolute percentage error of a timeline's
  predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..loadgen.timelinefile import TimelineRow

__all__ = [
    "WINDOW_EXECUTIONS",
    "Curve",
    "CurvePoint",
    "contender_curves",
    "default_window",
    "prediction_error",
]

WINDOW_EXECUTIONS = 40
"""How many executions the default lane window holds (the paper's Fig. 4 shows a few dozen)."""


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One contender at one rate."""

    rate_rps: float
    """The rate asked for."""
    offered_rps: float
    """The mean offered rate of its runs (what the x axis shows)."""
    goodput_rps: float
    attainment: float | None
    """Met their deadline over sent; ``None`` when nothing was sent."""
    runs: int


@dataclass(frozen=True, slots=True)
class Curve:
    label: str
    points: tuple[CurvePoint, ...]


def _label(run: dict[str, Any], predictors: set[str | None]) -> str:
    policy = str(run["policy"])
    if len(predictors) > 1 and run.get("predictor") is not None:
        return f"{policy} + {run['predictor']}"
    return policy


def contender_curves(doc: dict[str, Any]) -> list[Curve]:
    """One curve per contender, its points by increasing rate (see the module doc)."""
    runs: list[dict[str, Any]] = doc["runs"]
    predictors = {r.get("predictor") for r in runs}
    grouped: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for run in runs:
        by_rate = grouped.setdefault(_label(run, predictors), {})
        by_rate.setdefault(float(run["rate_rps"]), []).append(run["report"])
    curves: list[Curve] = []
    for label, by_rate in grouped.items():
        points: list[CurvePoint] = []
        for rate, reports in sorted(by_rate.items()):
            offered = [float(r["offered_rps"]) for r in reports if r.get("offered_rps") is not None]
            goodput = [float(r["goodput_rps"]) for r in reports if r.get("goodput_rps") is not None]
            sent = sum(int(r["requests"]["sent"]) for r in reports)
            met = sum(int(r["requests"]["met_deadline"]) for r in reports)
            points.append(
                CurvePoint(
                    rate_rps=rate,
                    offered_rps=sum(offered) / len(offered) if offered else rate,
                    goodput_rps=sum(goodput) / len(goodput) if goodput else 0.0,
                    attainment=met / sent if sent else None,
                    runs=len(reports),
                )
            )
        curves.append(Curve(label, tuple(points)))
    return curves


def default_window(
    rows: Sequence[TimelineRow], count: int = WINDOW_EXECUTIONS
) -> tuple[float, float]:
    """``count`` executions from the middle of the run (past any start-up), in seconds."""
    ordered = sorted(rows, key=lambda r: r.start_s)
    if len(ordered) <= count:
        return ordered[0].start_s, max(r.end_s for r in ordered)
    mid = len(ordered) // 2 - count // 2
    chosen = ordered[mid : mid + count]
    return chosen[0].start_s, max(r.end_s for r in chosen)


def prediction_error(rows: Sequence[TimelineRow]) -> tuple[float | None, int]:
    """(MAPE, number of executions with a prediction and a latency > 0)."""
    apes = [
        abs(r.predicted_ms - r.latency_ms) / r.latency_ms
        for r in rows
        if r.predicted_ms is not None and r.latency_ms > 0 and math.isfinite(r.predicted_ms)
    ]
    return (sum(apes) / len(apes) if apes else None), len(apes)
