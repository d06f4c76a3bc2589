"""The bounded peak search and its SLO criterion; a warmed session on the sim backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiosched.cli._render import render_steps
from aiosched.loadgen import Workload
from aiosched.loadgen.errors import LoadgenError
from aiosched.loadgen.harness import LoadtestConfig, LoadtestSession, SearchSettings
from aiosched.loadgen.peak import (
    PeakStep,
    meets_slo,
    search_peak,
    step_from_report,
)


def _threshold(capacity: float) -> Any:
    """A synthetic system: a step passes iff its rate is at most ``capacity``."""

    def measure(rate: float) -> PeakStep:
        return PeakStep(rate, rate <= capacity, 1.0 if rate <= capacity else 0.5)

    return measure


@pytest.mark.parametrize("start", [20.0, 77.0, 100.0, 137.0, 400.0])
def test_search_finds_a_known_capacity_within_tolerance_and_steps(start: float) -> None:
    capacity = 137.0
    result = asyncio.run(search_peak(_threshold(capacity), start, max_steps=8, tolerance=0.05))
    assert result.found and result.bounded
    assert len(result.steps) <= 8
    assert result.peak_rps <= capacity
    assert result.peak_rps >= capacity / 1.1
    if result.converged:
        upper = result.upper_rps
        assert upper is not None and upper > capacity
        assert upper - result.peak_rps <= 0.05 * result.peak_rps
    # every step is recorded, in order, with its verdict
    assert result.steps[0].rate_rps == start and result.steps[0].phase == "start"
    for step in result.steps:
        assert step.passed == (step.rate_rps <= capacity)
    assert result.peak_rps == max(s.rate_rps for s in result.steps if s.passed)


def test_search_converges_from_a_nearby_start() -> None:
    result = asyncio.run(search_peak(_threshold(100.0), 90.0, max_steps=8, tolerance=0.05))
    assert result.converged
    assert 100.0 / 1.05 <= result.peak_rps <= 100.0
    phases = [s.phase for s in result.steps]
    assert phases[:2] == ["start", "grow"] and set(phases[2:]) == {"bisect"}


def test_all_fail_goes_down_geometrically_and_reports_zero() -> None:
    seen: list[PeakStep] = []
    result = asyncio.run(
        search_peak(lambda r: PeakStep(r, False), 64.0, max_steps=5, on_step=seen.append)
    )
    assert not result.found and result.peak_rps == 0.0 and result.bounded
    assert [s.rate_rps for s in result.steps] == [64.0, 32.0, 16.0, 8.0, 4.0]
    assert [s.phase for s in result.steps] == ["start", "down", "down", "down", "down"]
    assert seen == list(result.steps)
    assert "no rate" in result.describe()
    assert "no rate" in str(render_steps(result.to_dict()).caption)


def test_all_pass_grows_to_max_steps_and_is_unbounded() -> None:
    result = asyncio.run(search_peak(lambda r: PeakStep(r, True), 10.0, max_steps=4, growth=2.0))
    assert result.found and not result.bounded and not result.converged
    assert [s.rate_rps for s in result.steps] == [10.0, 20.0, 40.0, 80.0]
    assert result.peak_rps == 80.0 and result.upper_rps is None


def test_start_fails_then_one_below_passes_then_bisects() -> None:
    result = asyncio.run(search_peak(_threshold(30.0), 100.0, max_steps=8, growth=2.0))
    phases = [s.phase for s in result.steps]
    assert phases[:3] == ["start", "down", "down"]  # 100 fail, 50 fail, 25 ok
    assert result.steps[2].passed and set(phases[3:]) == {"bisect"}
    assert 25.0 <= result.peak_rps <= 30.0


def test_an_async_measure_works_too() -> None:
    async def measure(rate: float) -> PeakStep:
        await asyncio.sleep(0)
        return PeakStep(rate, rate <= 50.0)

    result = asyncio.run(search_peak(measure, 40.0))
    assert 50.0 / 1.05 <= result.peak_rps <= 50.0


@pytest.mark.parametrize(
    "kwargs", [{"start_rps": 0.0}, {"max_steps": 0}, {"tolerance": 0.0}, {"growth": 1.0}]
)
def test_bad_search_arguments_raise(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"start_rps": 10.0, **kwargs}
    start = args.pop("start_rps")
    with pytest.raises(LoadgenError):
        asyncio.run(search_peak(lambda r: PeakStep(r, True), start, **args))


def _model(sent: int, met: int, p99: float | None, completed: int | None = None) -> dict[str, Any]:
    return {
        "requests": {
            "sent": sent,
            "met_deadline": met,
            "completed": met if completed is None else completed,
        },
        "latency_ms": {"p99": p99},
    }


def _report(**models: dict[str, Any]) -> dict[str, Any]:
    sent = sum(m["requests"]["sent"] for m in models.values())
    met = sum(m["requests"]["met_deadline"] for m in models.values())
    return {"requests": {"sent": sent, "met_deadline": met}, "per_model": models}


DEADLINES = {"a": 0.050, "b": 0.100}


def test_meets_slo_on_hand_built_reports() -> None:
    ok = _report(a=_model(500, 500, 40.0), b=_model(500, 496, 99.0))
    assert meets_slo(ok, DEADLINES)  # 99.6 % met, every p99 within its deadline
    assert meets_slo(ok, Workload.parse("a,b", "a=50,b=100"))
    assert not meets_slo(ok, DEADLINES, slo_attainment=0.999)
    low = _report(a=_model(500, 480, 40.0), b=_model(500, 500, 90.0))
    assert not meets_slo(low, DEADLINES)  # 98 % met
    slow = _report(a=_model(1000, 1000, 51.0), b=_model(1, 1, 10.0))
    assert not meets_slo(slow, DEADLINES)  # a's p99 over its 50 ms deadline
    none_served = _report(a=_model(1000, 1000, 10.0), b=_model(3, 0, None, completed=0))
    assert not meets_slo(none_served, DEADLINES, slo_attainment=0.9)
    idle = _report(a=_model(100, 100, 10.0), b=_model(0, 0, None))
    assert meets_slo(idle, DEADLINES)  # a model with nothing sent does not count
    assert not meets_slo(_report(a=_model(0, 0, None)), DEADLINES)  # nothing sent at all


def test_step_from_report_records_attainment_and_p99() -> None:
    report = _report(a=_model(100, 99, 45.0), b=_model(100, 100, 60.0))
    step = step_from_report(250.0, report, DEADLINES)
    assert step.passed and step.sent == 200 and step.rate_rps == 250.0
    assert step.attainment == pytest.approx(0.995)
    assert dict(step.p99_ms) == {"a": 45.0, "b": 60.0}
    d = step.to_dict()
    assert set(d) == {"rate_rps", "phase", "passed", "attainment", "p99_ms", "sent"}


@pytest.mark.sim
async def test_session_runs_schedules_back_to_back_with_per_run_statistics() -> None:
    cfg = LoadtestConfig(backend="sim", rate=150.0, duration=2.0, predictor="solo")

    async with LoadtestSession(cfg) as session:
        before = session.scheduler.snapshot()
        reports = [await session.run(session.schedule()) for _ in range(2)]
        after = session.scheduler.snapshot()
    batches = sum(sum(m.batch_sizes.values()) for m in after.models.values())
    warm = sum(sum(m.batch_sizes.values()) for m in before.models.values())
    first, second = reports
    assert first["requests"]["sent"] == second["requests"]["sent"] > 0  # the same schedule
    assert first["batches"]["count"] + second["batches"]["count"] == batches - warm
    for r in reports:
        assert r["requests"]["cancelled"] == 0
        assert r["predictor"]["name"] == "solo" and r["predictor"]["mape"] is not None
        assert 1 <= r["batches"]["max_concurrency"] <= 2
        per_model = sum(m["batches"]["count"] for m in r["per_model"].values())
        assert per_model == r["batches"]["count"]


@pytest.mark.sim
async def test_session_find_peak_on_sim_records_bounded_steps() -> None:
    cfg = LoadtestConfig(backend="sim", duration=2.0, predictor="solo", rate_mode="peak")
    settings = SearchSettings(
        max_steps=4, tolerance=0.1, growth=1.5, step_s_real=1.0, step_s_sim=2.0
    )

    async with LoadtestSession(cfg) as session:
        result = await session.find_peak(settings)
    assert 1 <= len(result.steps) <= 4
    assert result.start_rps == result.steps[0].rate_rps > 0
    for s in result.steps:
        assert s.sent > 0 and set(s.p99_ms) == {"resnet50", "yolov8n", "vit_b16"}
    if result.found:
        assert result.peak_rps == max(s.rate_rps for s in result.steps if s.passed)
