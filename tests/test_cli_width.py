"""Every table and view of the command line is readable at 80 columns: no number is cut to "…".

Rich shortens a cell that does not fit to "…"; a number cut so reads as another
number. The tables here are drawn from real sim runs at width 80 and every key
figure must appear whole.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.cli._render import render_summary
from aiosched.cli.compare import Contender, RateSpec, rate_table
from aiosched.cli.loadtest import _run
from aiosched.loadgen.harness import LoadtestConfig

runner = CliRunner()


def _at_80(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(renderable)
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    return text


def _report(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "r.json"
    cli = ["loadtest", "--backend", "sim", "--duration", "20", "--rate", "500", "--lanes", "4"]
    result = runner.invoke(app, [*cli, *args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_the_loadtest_summary_shows_every_figure_whole_at_80_columns(tmp_path: Path) -> None:
    # Four models, one with a long name, five-digit counts: the widest ordinary summary.
    models = "resnet50:3,roberta_base,convnext_b,vit_b16"
    report = _report(tmp_path, "--models", models, "--deadline", "50,roberta_base=120.5")
    text = _at_80(render_summary(report))
    assert report["requests"]["sent"] >= 10_000
    for name, section in [*report["per_model"].items(), ("total", report)]:
        assert name in text
        r, lat = section["requests"], section["latency_ms"]
        for count in ("sent", "met_deadline", "missed_deadline", "rejected"):
            assert str(r[count]) in text
        assert f"{section['goodput_rps']:.1f}" in text
        for key in ("mean", "p50", "p95", "p99", "max"):
            assert f"{lat[key]:.1f}" in text
    assert "120.5" in text  # the deadline column, in ms
    assert f"goodput {report['goodput_rps']:.1f}/s" in text


def test_the_compare_table_shows_every_figure_whole_at_80_columns(tmp_path: Path) -> None:
    report = _report(tmp_path)
    long = Contender("sequential", "overlap:quantile=0.9,device_rate=0")
    rows = [(Contender("edf", "solo"), report), (long, report)]
    text = _at_80(rate_table(512.3, RateSpec(1.5, False), rows, "edf/solo"))
    r = report["requests"]
    for figure in (
        f"{report['goodput_rps']:.1f}",
        f"{100.0 * r['met_deadline'] / r['sent']:.2f}",
        f"{report['latency_ms']['p50']:.1f}",
        f"{report['latency_ms']['p99']:.1f}",
        str(r["rejected"]),
        str(r["missed_deadline"]),
        f"{report['batches']['mean_size']:.2f}",
    ):
        assert figure in text
    assert "p99 ms" in text and "512.3 requests/s" in text


@pytest.mark.parametrize("peak", [False, True])
def test_the_live_view_on_sim_leaves_its_final_screen(peak: bool) -> None:
    """On sim the live view runs in virtual time and its last screen stays up, 80 wide."""
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    if peak:
        cfg = LoadtestConfig(backend="sim", duration=2.0, rate_mode="auto", step_duration=2.0)
    else:
        cfg = LoadtestConfig(backend="sim", duration=3.0, rate=300.0)
    report, snap, _ = _run(cfg, console, True)
    text = out.getvalue()
    final = text[text.rindex("offered ") :]  # the last screen drawn
    assert "since start" in final and "drain" in final and "…" not in final
    assert f"sent {report['requests']['sent']} of" in final
    for model in report["per_model"]:
        assert model in final
    assert snap.closed
