"""The JSON report: exact shape, accounting, and the summary table."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from aiosched import simtime
from aiosched.cli._render import render_summary
from aiosched.errors import Overloaded
from aiosched.loadgen import (
    REPORT_KEYS,
    BatchStats,
    LoadResult,
    OpenLoopDriver,
    PredictorStats,
    Workload,
    build_report,
    write_report,
)
from aiosched.loadgen.report import (
    BATCH_KEYS,
    LATENCY_KEYS,
    MODEL_KEYS,
    PREDICTOR_KEYS,
    REQUEST_KEYS,
    SEND_LAG_KEYS,
)


def mixed_result() -> LoadResult:
    schedule = Workload.parse("resnet18:3,mobilenet_v3_small:1", "20").schedule(
        "poisson", 300.0, 5.0, seed=11
    )
    calls = [0]

    async def infer(model: str, x: Any, deadline: float) -> Any:
        calls[0] += 1
        k = calls[0] % 10
        if k == 0:
            raise Overloaded(model)
        if k == 1:
            raise KeyError(model)
        await asyncio.sleep(0.005 if k < 7 else 0.05)
        return x

    async def main() -> LoadResult:
        driver = OpenLoopDriver(infer, schedule, drain_timeout=0.01)
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() + 4.0, driver.stop)
        return await driver.run()

    return simtime.run(main())


def check_section(s: dict[str, Any], keys: tuple[str, ...]) -> None:
    assert tuple(s) == keys
    assert tuple(s["requests"]) == REQUEST_KEYS
    assert tuple(s["latency_ms"]) == LATENCY_KEYS
    assert tuple(s["send_lag_ms"]) == SEND_LAG_KEYS
    assert tuple(s["batches"]) == BATCH_KEYS
    assert tuple(s["predictor"]) == PREDICTOR_KEYS
    r = s["requests"]
    assert r["sent"] == r["completed"] + r["rejected"] + r["failed"] + r["cancelled"]
    assert r["completed"] == r["met_deadline"] + r["missed_deadline"]


def test_report_shape_and_accounting() -> None:
    report = build_report(mixed_result(), config={"policy": "edf"})
    assert tuple(report) == REPORT_KEYS
    assert REPORT_KEYS == (
        "config",
        "duration_s",
        "offered_rps",
        "achieved_rps",
        "goodput_rps",
        "requests",
        "latency_ms",
        "send_lag_ms",
        "per_model",
        "batches",
        "predictor",
    )
    check_section(report, REPORT_KEYS)
    assert set(report["per_model"]) == {"resnet18", "mobilenet_v3_small"}
    for section in report["per_model"].values():
        check_section(section, MODEL_KEYS)
    r = report["requests"]
    for key in REQUEST_KEYS:
        assert r[key] == sum(s["requests"][key] for s in report["per_model"].values())
    assert r["rejected"] > 0 and r["failed"] > 0 and r["cancelled"] > 0
    assert r["met_deadline"] > 0 and r["missed_deadline"] > 0
    # rates
    assert report["config"]["stopped_early"] is True
    assert report["config"]["send_window_s"] == pytest.approx(4.0)
    assert report["config"]["policy"] == "edf"
    assert report["config"]["arrival"] == "poisson"
    assert report["offered_rps"] == pytest.approx(r["sent"] / 4.0, abs=1e-3)
    assert report["achieved_rps"] == pytest.approx(r["completed"] / report["duration_s"], abs=1e-3)
    assert report["goodput_rps"] == pytest.approx(
        r["met_deadline"] / report["duration_s"], abs=1e-3
    )
    lat = report["latency_ms"]
    assert lat["p50"] == pytest.approx(5.0, rel=1e-3)
    assert lat["max"] == pytest.approx(50.0, rel=1e-3)
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert report["send_lag_ms"] == {"p50": 0.0, "p99": 0.0, "max": 0.0}
    assert report["batches"] == dict.fromkeys(BATCH_KEYS)
    assert report["predictor"] == dict.fromkeys(PREDICTOR_KEYS)
    json.dumps(report, allow_nan=False)


def test_scheduler_statistics_from_outside() -> None:
    batches = BatchStats.from_sizes({1: 10, 4: 5, 8: 5}, max_concurrency=2)
    assert batches.count == 20 and batches.mean_size == pytest.approx(3.5)
    report = build_report(
        mixed_result(),
        batches=batches,
        predictor=PredictorStats("rls", 0.081, float("nan")),
        per_model_batches={"resnet18": BatchStats(3, 2.0, 1)},
    )
    assert report["batches"] == {"count": 20, "mean_size": 3.5, "max_concurrency": 2}
    assert report["predictor"] == {"name": "rls", "mape": 0.081, "p95_ape": None}
    assert report["per_model"]["resnet18"]["batches"]["count"] == 3
    assert report["per_model"]["mobilenet_v3_small"]["batches"]["count"] is None
    assert BatchStats.from_sizes({}).mean_size is None


@pytest.mark.sim
async def test_empty_run_has_nulls_not_nans(tmp_path: Path) -> None:
    async def infer(model: str, x: Any, deadline: float) -> Any:
        return x

    schedule = Workload.parse("a").schedule("constant", 10.0, 1.0)

    driver = OpenLoopDriver(infer, schedule)
    driver.stop()
    report = build_report(await driver.run())
    assert report["requests"]["sent"] == 0
    assert report["latency_ms"] == dict.fromkeys(LATENCY_KEYS)
    assert report["send_lag_ms"] == dict.fromkeys(SEND_LAG_KEYS)
    assert report["offered_rps"] is None and report["achieved_rps"] is None
    path = tmp_path / "r.json"
    write_report(report, path)
    assert json.loads(path.read_text())["requests"]["sent"] == 0
    render_summary(report)


def test_summary_table() -> None:
    report = build_report(
        mixed_result(), batches=BatchStats(5, 2.0, 2), predictor=PredictorStats("rls", 0.1, 0.3)
    )
    table = render_summary(report)
    assert isinstance(table, Table)
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(table)
    text = out.getvalue()
    assert "resnet18" in text and "mobilenet_v3_small" in text and "total" in text
    assert "goodput" in text and "send lag" in text and "predictor rls" in text
    assert "stopped early" in text
