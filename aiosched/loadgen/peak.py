"""A bounded search for the peak rate that still meets a latency SLO.

The criterion (:func:`meets_slo`): at least ``slo_attainment`` of the
requests sent met their deadline, and for every model the p99 latency of
its served (completed) requests is within that model's deadline.

The search (:func:`search_peak`) works like perf_analyzer's binary search and
MLPerf LoadGen's peak finding: from a start rate (the prediction-based
capacity estimate is a good one) it grows the rate geometrically until a step
fails, then bisects between the last passing and the first failing rate. If
the very first step fails it goes down geometrically instead until one
passes. It stops when the bracket is within ``tolerance`` (relative to the
passing rate) or after ``max_steps`` steps, whichever comes first, and
returns every step it tried. The peak is the highest passing rate; 0 (with
``found=False``) if none passed.

The search knows nothing of schedulers: ``measure(rate)`` runs one step and
returns its :class:`PeakStep` (or its report, through :func:`step_from_report`).
:meth:`~aiosched.loadgen.harness.LoadtestSession.measure_step` is the usual
``measure``: a fresh schedule at the rate on the same warmed-up scheduler.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .errors import LoadgenError
from .workload import Workload

__all__ = [
    "DEFAULT_GROWTH",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_SLO_ATTAINMENT",
    "DEFAULT_TOLERANCE",
    "Measure",
    "PeakResult",
    "PeakStep",
    "meets_slo",
    "search_peak",
    "step_from_report",
]

DEFAULT_SLO_ATTAINMENT = 0.99
DEFAULT_MAX_STEPS = 8
DEFAULT_TOLERANCE = 0.05
DEFAULT_GROWTH = 2.0

Phase = Literal["start", "grow", "down", "bisect"]


@dataclass(frozen=True, slots=True)
class PeakStep:
    """One rate tried: how it went and whether it met the SLO."""

    rate_rps: float
    passed: bool
    attainment: float | None = None
    """met_deadline / sent; ``None`` when nothing was sent."""
    p99_ms: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    """p99 latency of served requests per model, ms (``None``: none served)."""
    sent: int = 0
    phase: Phase = "start"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_rps": _round(self.rate_rps),
            "phase": self.phase,
            "passed": self.passed,
            "attainment": None if self.attainment is None else round(self.attainment, 6),
            "p99_ms": dict(self.p99_ms),
            "sent": self.sent,
        }


@dataclass(frozen=True, slots=True)
class PeakResult:
    """The outcome of :func:`search_peak`."""

    peak_rps: float
    """The highest rate that passed; 0 when none did (``found`` is then False)."""
    steps: tuple[PeakStep, ...]
    found: bool
    """Some rate passed."""
    bounded: bool
    """Some rate failed, so the peak is bracketed from above (False: every step passed)."""
    converged: bool
    """The bracket [peak, first failing rate above it] is within ``tolerance``."""
    start_rps: float
    slo_attainment: float
    tolerance: float
    max_steps: int

    @property
    def upper_rps(self) -> float | None:
        """The lowest failing rate above the peak, if any."""
        fails = [s.rate_rps for s in self.steps if not s.passed and s.rate_rps > self.peak_rps]
        return min(fails) if fails else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_rps": _round(self.peak_rps),
            "found": self.found,
            "bounded": self.bounded,
            "converged": self.converged,
            "upper_rps": None if self.upper_rps is None else _round(self.upper_rps),
            "start_rps": _round(self.start_rps),
            "slo_attainment": self.slo_attainment,
            "tolerance": self.tolerance,
            "max_steps": self.max_steps,
            "steps": [s.to_dict() for s in self.steps],
        }

    def describe(self) -> str:
        """One line: the steps tried (rate and pass/fail) and the peak."""
        tried = ", ".join(f"{s.rate_rps:.1f}/s {'ok' if s.passed else 'fail'}" for s in self.steps)
        if not self.found:
            return f"{len(self.steps)} steps ({tried}): no rate met the SLO"
        bound = "" if self.bounded else " (every step passed: a lower bound)"
        return f"{len(self.steps)} steps ({tried}): peak {self.peak_rps:.1f}/s{bound}"


def _round(x: float) -> float:
    return round(float(x), 3)


def _deadlines_ms(deadlines: Workload | Mapping[str, float]) -> dict[str, float]:
    if isinstance(deadlines, Workload):
        return {m.name: m.deadline_s * 1000.0 for m in deadlines.models}
    return {name: float(s) * 1000.0 for name, s in deadlines.items()}


def _attainment_and_p99(report: Mapping[str, Any]) -> tuple[float | None, dict[str, float | None]]:
    r = report["requests"]
    sent = int(r["sent"])
    attainment = r["met_deadline"] / sent if sent else None
    p99 = {name: m["latency_ms"]["p99"] for name, m in report["per_model"].items()}
    return attainment, p99


def meets_slo(
    report: Mapping[str, Any],
    deadlines: Workload | Mapping[str, float],
    slo_attainment: float = DEFAULT_SLO_ATTAINMENT,
) -> bool:
    """Whether a load test report meets the SLO.

    ``deadlines`` is the workload, or ``{model: deadline in seconds}``. The
    SLO is met when ``met_deadline / sent >= slo_attainment`` and, for every
    model that was sent requests, the p99 latency of its served requests is
    at most its deadline. A model that was sent requests and served none
    fails (its p99 is unknown); a run that sent nothing fails.
    """
    attainment, p99 = _attainment_and_p99(report)
    if attainment is None or attainment < slo_attainment:
        return False
    limits = _deadlines_ms(deadlines)
    for name, section in report["per_model"].items():
        if not section["requests"]["sent"]:
            continue
        latency = p99[name]
        if latency is None:
            return False
        limit = limits.get(name)
        if limit is None:
            raise LoadgenError(f"no deadline for model {name!r} of the report")
        if latency > limit:
            return False
    return True


def step_from_report(
    rate: float,
    report: Mapping[str, Any],
    deadlines: Workload | Mapping[str, float],
    slo_attainment: float = DEFAULT_SLO_ATTAINMENT,
) -> PeakStep:
    """The :class:`PeakStep` of one run at ``rate`` (phase ``"start"``; the search sets it)."""
    attainment, p99 = _attainment_and_p99(report)
    return PeakStep(
        rate_rps=float(rate),
        passed=meets_slo(report, deadlines, slo_attainment),
        attainment=attainment,
        p99_ms=MappingProxyType(p99),
        sent=int(report["requests"]["sent"]),
    )


Measure = Callable[[float], "PeakStep | Awaitable[PeakStep]"]
"""Runs one step at a rate (requests/s) and returns its :class:`PeakStep` (or awaits it)."""


async def search_peak(
    measure: Measure,
    start_rps: float,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    tolerance: float = DEFAULT_TOLERANCE,
    growth: float = DEFAULT_GROWTH,
    slo_attainment: float = DEFAULT_SLO_ATTAINMENT,
    on_step: Callable[[PeakStep], None] | None = None,
) -> PeakResult:
    """Find the highest rate ``measure`` passes, in at most ``max_steps`` steps.

    Grows the rate by ``growth`` from ``start_rps`` while steps pass (or
    divides it while they fail), then bisects (arithmetic midpoint) between
    the highest pass and the lowest fail above it until ``(fail - pass) <=
    tolerance * pass``. ``slo_attainment`` is only recorded in the result:
    ``measure`` decides pass or fail. ``on_step`` sees each step as it ends.
    """
    if not (math.isfinite(start_rps) and start_rps > 0):
        raise LoadgenError(f"the start rate must be > 0 requests/s, got {start_rps!r}")
    if max_steps < 1:
        raise LoadgenError(f"max_steps must be >= 1, got {max_steps}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise LoadgenError(f"tolerance must be > 0, got {tolerance!r}")
    if not (math.isfinite(growth) and growth > 1):
        raise LoadgenError(f"growth must be > 1, got {growth!r}")
    steps: list[PeakStep] = []

    async def run(rate: float, phase: Phase) -> bool:
        outcome = measure(rate)
        step = await outcome if inspect.isawaitable(outcome) else outcome
        assert isinstance(step, PeakStep)
        step = PeakStep(step.rate_rps, step.passed, step.attainment, step.p99_ms, step.sent, phase)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        return step.passed

    lo: float | None = None  # highest pass
    hi: float | None = None  # lowest fail above lo
    rate = float(start_rps)
    if await run(rate, "start"):
        lo = rate
        while len(steps) < max_steps:
            rate = lo * growth
            if not await run(rate, "grow"):
                hi = rate
                break
            lo = rate
    else:
        hi = rate
        while len(steps) < max_steps:
            rate = hi / growth
            if await run(rate, "down"):
                lo = rate
                break
            hi = rate
    while lo is not None and hi is not None and len(steps) < max_steps:
        if hi - lo <= tolerance * lo:
            break
        rate = (lo + hi) / 2.0
        if await run(rate, "bisect"):
            lo = rate
        else:
            hi = rate
    converged = lo is not None and hi is not None and hi - lo <= tolerance * lo
    return PeakResult(
        peak_rps=lo if lo is not None else 0.0,
        steps=tuple(steps),
        found=lo is not None,
        bounded=hi is not None,
        converged=converged,
        start_rps=float(start_rps),
        slo_attainment=slo_attainment,
        tolerance=tolerance,
        max_steps=max_steps,
    )
