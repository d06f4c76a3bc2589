"""``aiosched report`` and ``aiosched loadtest --timeline``, on files the sim backend wrote.

The input checks run without matplotlib; the drawing tests skip without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.loadgen.timelinefile import (
    TIMELINE_FIELDS,
    TimelineError,
    read_timeline,
    write_timeline,
)
from aiosched.report.inputs import CompareInput, RunInput, cdf_points, load_inputs
from aiosched.report.series import contender_curves, default_window, prediction_error

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A loadtest report with its timeline (JSON lines and CSV) and a comparison, on sim."""
    d = tmp_path_factory.mktemp("inputs")
    out = {
        "run": d / "run.json",
        "timeline": d / "run.jsonl",
        "csv": d / "run2.csv",
        "compare": d / "cmp.json",
    }
    base = ["loadtest", "--backend", "sim", "--duration", "2", "--rate", "300", "--no-live"]
    result = runner.invoke(
        app, [*base, "--json", str(out["run"]), "--timeline", str(out["timeline"])]
    )
    assert result.exit_code == 0, result.output
    assert "timeline (" in result.output
    result = runner.invoke(app, [*base, "--seed", "1", "--timeline", str(out["csv"])])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "compare",
            "--backend",
            "sim",
            "--models",
            "resnet50",
            "--policies",
            "edf,fifo",
            "--rates",
            "300/s,900/s",
            "--duration",
            "2",
            "--json",
            str(out["compare"]),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


# -- the timeline file --------------------------------------------------------


def test_the_timeline_holds_every_batch_of_the_measured_run(files: dict[str, Path]) -> None:
    rows = read_timeline(files["timeline"])
    report = json.loads(files["run"].read_text())
    assert len(rows) == report["batches"]["count"]
    assert {r.model for r in rows} == set(report["per_model"])
    assert {r.lane for r in rows} == {0, 1}
    assert rows[0].start_s == 0.0 and all(r.end_s >= r.start_s for r in rows)
    assert all(r.predicted_ms is not None and r.predicted_ms > 0 for r in rows)
    by_id = {r.id: r for r in rows}
    for r in rows:  # "beside" is mutual, and they did overlap in time
        for other in (by_id[i] for i in r.beside):
            assert r.id in other.beside
            assert min(r.end_s, other.end_s) > max(r.start_s, other.start_s)
    assert any(r.beside for r in rows)
    mape, n = prediction_error(rows)
    assert n == len(rows) and mape is not None
    assert mape == pytest.approx(report["predictor"]["mape"], abs=0.01)


def test_csv_and_json_lines_round_trip(files: dict[str, Path], tmp_path: Path) -> None:
    rows = read_timeline(files["timeline"])
    assert files["csv"].read_text().splitlines()[0] == ",".join(TIMELINE_FIELDS)
    for name in ("t.csv", "t.jsonl"):
        write_timeline(rows, tmp_path / name)
        assert read_timeline(tmp_path / name) == rows


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", "", "no executions"),
        ("b.jsonl", "[1, 2]\n", "b.jsonl:1: not a JSON object"),
        ("c.jsonl", '{"id": 1}\n', "c.jsonl:1: missing model"),
        ("d.csv", "id,model\n1,a\n", "d.csv:1: the header"),
    ],
)
def test_a_malformed_timeline_names_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TimelineError, match=message):
        read_timeline(path)


def test_loadtest_refuses_an_unwritable_timeline_before_running() -> None:
    args = ["loadtest", "--backend", "sim", "--timeline", "/nonexistent-dir/t.jsonl"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--timeline" in lines[0]


# -- inputs and the numbers behind the figures (no matplotlib) ---------------


def test_inputs_are_recognised_by_their_content(files: dict[str, Path]) -> None:
    inputs = load_inputs([files["compare"], files["run"], files["csv"], files["timeline"]])
    assert [r.path for r in inputs.runs] == [files["run"]]
    assert [c.path for c in inputs.compares] == [files["compare"]]
    assert [t.path for t in inputs.timelines] == [files["csv"], files["timeline"]]
    run = inputs.runs[0]
    assert isinstance(run, RunInput) and run.deadlines_ms() == {
        "resnet50": 50.0,
        "yolov8n": 50.0,
        "vit_b16": 50.0,
    }
    points = cdf_points(run.report)
    assert [q for _, q in points] == [0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
    assert [x for x, _ in points] == sorted(x for x, _ in points)


def test_contender_curves_from_a_comparison(files: dict[str, Path]) -> None:
    (cmp,) = load_inputs([files["compare"]]).compares
    assert isinstance(cmp, CompareInput)
    curves = {c.label: c for c in contender_curves(cmp.doc)}
    assert set(curves) == {"edf", "fifo"}
    for curve in curves.values():
        assert [p.rate_rps for p in curve.points] == [300.0, 900.0]
        assert all(p.runs == 1 and p.attainment is not None for p in curve.points)
        assert curve.points[0].attainment == pytest.approx(1.0, abs=0.01)


def test_rounds_at_one_rate_are_pooled() -> None:
    def report(sent: int, met: int, goodput: float) -> dict[str, Any]:
        return {
            "requests": {"sent": sent, "met_deadline": met},
            "offered_rps": 100.0,
            "goodput_rps": goodput,
        }

    doc = {
        "runs": [
            {"policy": "edf", "predictor": "a", "rate_rps": 100.0, "report": report(100, 90, 9)},
            {"policy": "edf", "predictor": "a", "rate_rps": 100.0, "report": report(100, 70, 7)},
            {"policy": "edf", "predictor": "b", "rate_rps": 100.0, "report": report(10, 10, 1)},
        ]
    }
    curves = {c.label: c for c in contender_curves(doc)}
    assert set(curves) == {"edf + a", "edf + b"}  # two predictors: both named
    (p,) = curves["edf + a"].points
    assert p.runs == 2 and p.attainment == pytest.approx(0.8) and p.goodput_rps == 8.0


def test_the_default_window_is_from_the_middle(files: dict[str, Path]) -> None:
    rows = read_timeline(files["timeline"])
    start, end = default_window(rows, count=10)
    inside = [r for r in rows if r.start_s >= start and r.start_s < end]
    assert 10 <= len(inside) <= 14
    assert start > 0.5


# -- the command's input checks (one line, exit 2; no matplotlib needed) -----


def _one_line_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _bad_inputs(tmp_path: Path, files: dict[str, Path]) -> list[tuple[list[str], str]]:
    (tmp_path / "notjson.json").write_text("{oops")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    report = json.loads(files["run"].read_text())
    report["requests"]["sent"] = "many"
    (tmp_path / "badreport.json").write_text(json.dumps(report))
    cmp = json.loads(files["compare"].read_text())
    cmp["runs"][1]["rate_rps"] = -1
    (tmp_path / "badcmp.json").write_text(json.dumps(cmp))
    (tmp_path / "empty.json").write_text('{"runs": []}')
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "model": "a"}\n')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    return [
        ([str(tmp_path / "missing.json")], "no such file"),
        ([str(tmp_path)], "is a directory"),
        ([str(tmp_path / "notjson.json")], "not JSON"),
        ([str(tmp_path / "binary.json")], "not a text file"),
        ([str(tmp_path / "list.json")], "neither"),
        ([str(tmp_path / "other.json")], "neither"),
        ([str(files["run"]), str(tmp_path / "badreport.json")], "requests.sent"),
        ([str(tmp_path / "badcmp.json")], "runs[1]: rate_rps"),
        ([str(tmp_path / "empty.json")], "non-empty"),
        ([str(tmp_path / "bad.jsonl")], "bad.jsonl:1: missing"),
        ([str(files["timeline"]), "--window", "2:1"], "--window"),
        ([str(files["timeline"]), "--window", "a:b"], "--window"),
    ]


def test_missing_or_malformed_inputs_are_one_line_and_exit_2(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    for args, message in _bad_inputs(tmp_path, files):
        result = runner.invoke(app, ["report", *args, "--out", str(out)])
        _one_line_error(result, message)
    assert not out.exists()  # refused before anything was written


def test_no_input_is_a_usage_error() -> None:
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 2


def test_an_out_that_is_a_file_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    (tmp_path / "f").write_text("")
    result = runner.invoke(app, ["report", str(files["run"]), "--out", str(tmp_path / "f")])
    _one_line_error(result, "not a directory")


def test_without_matplotlib_one_line_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, Path]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    result = runner.invoke(app, ["report", str(files["run"]), "--out", str(tmp_path / "o")])
    _one_line_error(result, "matplotlib", "aiosched[plot]")


# -- drawing (matplotlib) ------------------------------------------------------


def test_report_writes_pngs_and_one_self_contained_page(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    args = [str(files[k]) for k in ("run", "compare", "timeline", "csv")]
    result = runner.invoke(app, ["report", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    listed = [Path(line) for line in result.output.strip().splitlines()]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in listed)
    names = {p.name for p in listed}
    assert names == {
        "latency_cdf-run.png",
        "goodput-cmp.png",
        "predicted-run.png",
        "lanes-run.png",
        "predicted-run2.png",
        "lanes-run2.png",
        "index.html",
    }
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page
    for title in ("Load test", "Comparison", "Timeline"):
        assert title in page


def test_a_report_alone_says_where_the_timeline_figures_come_from(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r"
    result = runner.invoke(app, ["report", str(files["run"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "latency_cdf-run.png"]
    assert "--timeline" in (out / "index.html").read_text()


def test_a_window_outside_the_run_draws_an_empty_lane_figure(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "w"
    args = ["report", str(files["timeline"]), "--out", str(out), "--window", "100:101"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "lanes-run.png").exists()
