"""Per-second time series of a run, the report's metadata, and trace replay's offered rate."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiosched._version import __version__
from aiosched.cli import app
from aiosched.errors import DeadlineUnmeetable
from aiosched.loadgen import (
    CSV_COLUMNS,
    OpenLoopDriver,
    TimeSeries,
    Workload,
    build_report,
    load_trace,
)
from aiosched.loadgen.report import LATENCY_KEYS

runner = CliRunner()


def test_bins_count_sends_by_intended_time_and_outcomes_when_they_happen() -> None:
    s = TimeSeries()
    for at in (0.1, 0.5, 1.2, 3.7):
        s.offered(at)
    s.resolved(0.2, "met", 0.1)
    s.resolved(0.9, "missed", 0.4)
    s.resolved(1.5, "rejected")
    s.resolved(3.9, "met", 0.2)
    rows = list(s.rows())
    assert [r.t_s for r in rows] == [0, 1, 2, 3]  # no gaps
    assert [r.offered for r in rows] == [2, 1, 0, 1]
    assert [(r.completed, r.met, r.missed, r.rejected) for r in rows] == [
        (2, 1, 1, 0),
        (0, 0, 0, 1),
        (0, 0, 0, 0),
        (1, 1, 0, 0),
    ]
    assert rows[0].p50_ms == pytest.approx(250.0) and rows[0].p99_ms == pytest.approx(397.0)
    assert rows[1].p50_ms is None and rows[2].p99_ms is None


def test_the_bin_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TimeSeries(0)


def _rejecting_target(every: int) -> object:
    n = [0]

    async def infer(model: str, x: object, deadline: float) -> None:
        import asyncio

        n[0] += 1
        if n[0] % every == 0:
            raise DeadlineUnmeetable("no")
        await asyncio.sleep(0.004)

    return infer


@pytest.mark.sim
async def test_the_driver_records_a_series_that_adds_up_to_the_report() -> None:
    workload = Workload.parse("a:1,b:1", "10")
    schedule = workload.schedule("poisson", 200.0, 5.0, 3)

    driver = OpenLoopDriver(_rejecting_target(5), schedule)  # type: ignore[arg-type]
    result = await driver.run()
    assert result.series is driver.series
    report = build_report(result)
    series = driver.series
    rows = list(series.rows())
    requests = report["requests"]
    assert isinstance(requests, dict)
    assert len(rows) in (5, 6)  # responses to the last sends may land in second 5
    assert sum(r.offered for r in rows) == requests["sent"] == len(schedule)
    assert sum(r.completed for r in rows) == requests["completed"]
    assert sum(r.met for r in rows) == requests["met_deadline"]
    assert sum(r.rejected for r in rows) == requests["rejected"] > 0
    for r in rows:
        if r.completed:
            assert r.p50_ms is not None and r.p99_ms is not None
            assert 3.99 <= r.p50_ms <= r.p99_ms  # every request took the target's 4 ms


@pytest.mark.sim
async def test_the_report_has_p95_mean_version_and_timestamp() -> None:
    schedule = Workload.parse("a", "10").schedule("constant", 100.0, 1.0, 0)

    import asyncio

    async def infer(model: str, x: object, deadline: float) -> None:
        await asyncio.sleep(0.002)

    driver = OpenLoopDriver(infer, schedule)
    report = build_report(await driver.run())
    lat = report["latency_ms"]
    assert isinstance(lat, dict) and tuple(lat) == LATENCY_KEYS
    assert lat["p50"] <= lat["p95"] <= lat["p99"]
    assert lat["mean"] == pytest.approx(2.0, abs=0.01)
    config = report["config"]
    assert isinstance(config, dict)
    assert config["aiosched_version"] == __version__
    assert datetime.fromisoformat(config["timestamp"]).tzinfo is not None


def test_loadtest_csv_and_the_resolved_config(tmp_path: Path) -> None:
    out, series = tmp_path / "r.json", tmp_path / "s.csv"
    args = ["loadtest", "--backend", "sim", "--models", "resnet50:2,vit_b16"]
    args += ["--deadline", "50,vit_b16=80", "--rate", "400", "--duration", "4", "--no-live"]
    result = runner.invoke(app, [*args, "--json", str(out), "--csv", str(series)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    config = report["config"]
    assert config["rate_requested"] == 400.0 and config["rate_mode"] == "fixed"
    assert config["models"] == {
        "resnet50": {"share": 2.0, "deadline_ms": 50.0},
        "vit_b16": {"share": 1.0, "deadline_ms": 80.0},
    }
    assert config["models_option"] == "resnet50:2,vit_b16"
    assert config["aiosched_version"] == __version__ and config["timestamp"]
    with open(series, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) >= 4 and [float(r["t_s"]) for r in rows[:4]] == [0, 1, 2, 3]
    assert sum(int(r["offered"]) for r in rows) == report["requests"]["sent"]
    assert sum(int(r["met"]) for r in rows) == report["requests"]["met_deadline"]
    assert sum(int(r["rejected"]) for r in rows) == report["requests"]["rejected"]


def test_loadtest_refuses_an_unwritable_csv_before_running(tmp_path: Path) -> None:
    args = ["loadtest", "--backend", "sim", "--rate", "100", "--duration", "1"]
    result = runner.invoke(app, [*args, "--csv", str(tmp_path)])
    assert result.exit_code == 2
    assert "--csv" in result.output


def _trace(tmp_path: Path, n: int, gap_s: float) -> Path:
    path = tmp_path / "t.csv"
    rows = "\n".join(f"{i * gap_s:.6f},resnet50,40" for i in range(n))
    path.write_text("offset_s,model,deadline_ms\n" + rows + "\n")
    return path


def test_a_short_trace_is_offered_at_its_own_rate(tmp_path: Path) -> None:
    path = _trace(tmp_path, 201, 0.005)  # 1 s at 200/s
    workload = Workload.for_trace(load_trace(path), None, default_deadline_ms=50)
    schedule = workload.replay(load_trace(path), duration=30.0)
    assert schedule.duration_s == pytest.approx(1.0)
    assert schedule.offered_rps == pytest.approx(201.0)
    out = tmp_path / "r.json"
    args = ["loadtest", "--backend", "sim", "--arrival", "trace", "--trace", str(path)]
    result = runner.invoke(app, [*args, "--duration", "30", "--no-live", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["offered_rps"] == pytest.approx(201.0)
    assert report["config"]["send_window_s"] == pytest.approx(1.0)


def test_a_trace_cut_by_the_duration_is_offered_over_the_duration(tmp_path: Path) -> None:
    path = _trace(tmp_path, 400, 0.005)  # 2 s at 200/s, cut at 1 s
    trace = load_trace(path)
    schedule = Workload.for_trace(trace, None, default_deadline_ms=50).replay(trace, duration=1.0)
    assert schedule.duration_s == 1.0 and len(schedule) == 200
    assert schedule.offered_rps == pytest.approx(200.0)


def test_past_bins_keep_their_percentiles_not_their_samples() -> None:
    import numpy as np

    from aiosched.loadgen.timeseries import TimeSeries

    series = TimeSeries()
    rng = np.random.default_rng(0)
    latencies = {k: rng.uniform(0.001, 0.1, size=200) for k in range(5)}
    for k, lat in latencies.items():
        for i, x in enumerate(lat):
            series.offered(k + i / 200)
            series.resolved(k + i / 200, "met", float(x))
    assert all(len(a) == 0 for a in series._latency[:4])  # a long run holds one bin's samples
    for row in series.rows():
        k = int(row.t_s)
        p50, p99 = np.percentile(latencies[k], (50.0, 99.0))
        assert row.p50_ms == pytest.approx(p50 * 1000.0)
        assert row.p99_ms == pytest.approx(p99 * 1000.0)
        assert row.met == 200
