"""``aiosched loadtest`` through typer's runner, on the sim backend (virtual time)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.cli._live import live_view, plain_line
from aiosched.loadgen import REPORT_KEYS, Progress
from aiosched.loadgen.harness import LoadtestConfig, run_loadtest
from aiosched.loadgen.result import RequestCounts
from aiosched.scheduler import Scheduler
from aiosched.telemetry.snapshot import SchedulerSnapshot

runner = CliRunner()


def _check_accounting(report: dict[str, Any]) -> None:
    r = report["requests"]
    assert r["sent"] == r["completed"] + r["rejected"] + r["failed"] + r["cancelled"]
    assert r["completed"] == r["met_deadline"] + r["missed_deadline"]
    assert sum(m["requests"]["sent"] for m in report["per_model"].values()) == r["sent"]


def test_loadtest_on_sim_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["loadtest", "--backend", "sim", "--duration", "5", "--rate", "300", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "latency, ms from the intended send time" in result.output
    report = json.loads(out.read_text())
    assert tuple(report) == REPORT_KEYS  # the shape, pinned in test_loadgen_report
    _check_accounting(report)
    assert report["config"]["backend"] == "sim"
    assert report["requests"]["sent"] > 1000
    assert report["batches"]["count"] > 0 and report["batches"]["max_concurrency"] == 2
    assert report["predictor"]["name"] == "overlap"  # the scheduler's default
    assert set(report["per_model"]) == {"resnet50", "yolov8n", "vit_b16"}


def test_same_seed_same_arrivals_for_every_policy(tmp_path: Path) -> None:
    sent = {}
    for policy in ("edf", "fifo", "sequential"):
        out = tmp_path / f"{policy}.json"
        args = ["loadtest", "--backend", "sim", "--duration", "3", "--policy", policy]
        result = runner.invoke(app, [*args, "--rate", "200", "--seed", "7", "--json", str(out)])
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        _check_accounting(report)
        sent[policy] = {k: v["requests"]["sent"] for k, v in report["per_model"].items()}
    assert sent["edf"] == sent["fifo"] == sent["sequential"]


def test_trace_replay(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = "\n".join(f"{i * 0.01:.2f},resnet50,40" for i in range(100))
    trace.write_text("offset_s,model,deadline_ms\n" + rows + "\n")
    out = tmp_path / "r.json"
    args = ["loadtest", "--backend", "sim", "--arrival", "trace", "--trace", str(trace)]
    result = runner.invoke(app, [*args, "--duration", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["requests"]["sent"] == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "tpu"], "--backend"),
        (["--backend", "sim", "--models", "nope"], "unknown model"),
        (["--backend", "sim", "--duration", "0"], "--duration"),
        (["--backend", "sim", "--lanes", "0"], "--lanes"),
        (["--backend", "sim", "--arrival", "zipf"], "zipf"),
        (["--backend", "sim", "--deadline", "a=b"], "deadline"),
        (["--backend", "sim", "--policy", "lifo"], "lifo"),
        (["--backend", "sim", "--arrival", "trace"], "--trace"),
        (["--backend", "sim", "--arrival", "trace", "--trace", "/nonexistent.csv"], "nonexist"),
        (["--backend", "sim", "--rate", "fast"], "auto"),
        (["--backend", "sim", "--rate", "peak", "--slo-attainment", "0"], "--slo-attainment"),
        (["--backend", "sim", "--rate", "peak", "--step-duration", "-1"], "--step-duration"),
    ],
)
def test_bad_options_exit_2_with_a_message_and_no_traceback(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["loadtest", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.sim
async def test_ctrl_c_stops_sending_drains_and_still_reports() -> None:
    cfg = LoadtestConfig(backend="sim", duration=20.0, rate=200.0)

    def interrupt_soon(sched: Scheduler, schedule: object) -> None:
        asyncio.get_running_loop().call_later(2.0, signal.raise_signal, signal.SIGINT)

    report, snap = await run_loadtest(cfg, on_start=interrupt_soon, handle_sigint=True)
    assert report["config"]["stopped_early"] is True
    _check_accounting(report)
    assert 0 < report["requests"]["sent"] < 200 * 20 * 0.5
    assert report["requests"]["cancelled"] == 0  # drained, not dropped
    assert snap.closed and all(m.pending == 0 for m in snap.models.values())


@pytest.mark.sim
async def test_live_view_and_plain_line_show_the_run() -> None:
    cfg = LoadtestConfig(backend="sim", duration=2.0, rate=100.0)
    seen: list[tuple[Progress, SchedulerSnapshot]] = []
    await run_loadtest(cfg, on_progress=lambda p, s: seen.append((p, s)))
    progress, snap = seen[len(seen) // 2]
    console = Console(record=True, width=120)
    console.print(live_view(progress, snap, 100.0))
    text = console.export_text()
    for word in ("offered", "goodput", "deadline miss", "p99", "lanes busy", "resnet50", "MAPE"):
        assert word in text
    # windowed and cumulative figures say which they are
    assert f"last {progress.interval_s:.1f} s" in text and "since start" in text
    line = plain_line(progress, snap, 100.0)
    assert "offered" in line and "miss" in line and "queue" in line
    assert f"last {progress.interval_s:.1f} s:" in line and "since start:" in line
    assert isinstance(progress.counts, RequestCounts)


def test_rate_peak_on_sim_searches_then_runs_at_the_peak(tmp_path: Path) -> None:
    out = tmp_path / "peak.json"
    args = ["loadtest", "--backend", "sim", "--rate", "peak", "--predictor", "solo"]
    args += ["--duration", "2", "--step-duration", "2", "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rate peak: tried" in result.output and "peak search" in result.output
    report = json.loads(out.read_text())
    assert tuple(report) == REPORT_KEYS
    _check_accounting(report)
    config = report["config"]
    assert config["rate_mode"] == "peak" and config["rate_fraction"] == 1.0
    peak = config["peak"]
    assert 1 <= len(peak["steps"]) <= peak["max_steps"] == 8
    assert {"rate_rps", "passed", "attainment", "p99_ms", "phase", "sent"} <= set(peak["steps"][0])
    if peak["found"]:
        assert config["rate_target"] == pytest.approx(peak["peak_rps"], abs=1e-3)


def test_rate_auto_runs_at_70_percent_of_a_short_search(tmp_path: Path) -> None:
    out = tmp_path / "auto.json"
    args = ["loadtest", "--backend", "sim", "--predictor", "solo", "--duration", "2"]
    result = runner.invoke(app, [*args, "--step-duration", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "rate auto: tried" in result.output
    config = json.loads(out.read_text())["config"]
    assert config["rate_mode"] == "auto" and config["rate_fraction"] == 0.7
    assert len(config["peak"]["steps"]) <= 6
    if config["peak"]["found"]:
        assert config["rate_target"] == pytest.approx(0.7 * config["peak"]["peak_rps"], abs=1e-2)
        assert "70 % of it" in result.output
