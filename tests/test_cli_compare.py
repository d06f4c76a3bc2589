"""``aiosched compare`` through typer's runner, on the sim backend (virtual time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.cli.compare import parse_rates
from aiosched.errors import InvalidConfig
from aiosched.loadgen import REPORT_KEYS

runner = CliRunner()

# Short runs and a short search keep this fast; the predictor is fixed so that
# the test does not depend on the default one.
FAST = ["compare", "--backend", "sim", "--duration", "2", "--step-duration", "2"]
FAST += ["--peak-steps", "4", "--predictors", "solo"]


def _invoke(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "compare.json"
    result = runner.invoke(app, [*FAST, *args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_compare_on_sim_writes_the_documented_json(tmp_path: Path) -> None:
    doc, output = _invoke(tmp_path, "--policies", "edf,fifo", "--rates", "0.5,100/s")
    assert set(doc) == {"runs", "peak_rps", "peak_steps", "config"}
    assert list(doc["peak_rps"]) == ["edf/solo"]  # the first policy's peak, by default
    peak = doc["peak_rps"]["edf/solo"]
    assert 1 <= len(doc["peak_steps"]["edf/solo"]) <= 4
    assert doc["config"]["contenders"] == ["edf/solo", "fifo/solo"]
    assert doc["config"]["rates"] == ["0.5", "100/s"]
    runs = doc["runs"]
    assert len(runs) == 4
    for run in runs:
        assert set(run) == {"policy", "predictor", "rate_rps", "report"}
        assert tuple(run["report"]) == REPORT_KEYS
        assert run["report"]["config"]["policy"] == run["policy"]
        assert run["predictor"] == "solo"
    rates = sorted({run["rate_rps"] for run in runs})
    assert 100.0 in rates
    if peak > 0:
        assert any(r == pytest.approx(0.5 * peak, abs=1e-3) for r in rates)
    # identical arrivals for every contender at each rate
    for rate in rates:
        sent = {
            run["policy"]: {m: s["requests"]["sent"] for m, s in run["report"]["per_model"].items()}
            for run in runs
            if run["rate_rps"] == rate
        }
        assert sent["edf"] == sent["fifo"]
    assert "goodput/s" in output and "edf/solo" in output and "peak search" in output


def test_compare_is_deterministic_and_peak_of_all(tmp_path: Path) -> None:
    args = ("--policies", "edf,sequential", "--rates", "0.8", "--peak-of", "all")
    first, _ = _invoke(tmp_path, *args)
    second, _ = _invoke(tmp_path, *args)
    for doc in (first, second):  # the wall-clock start of each run is all that differs
        for run in doc["runs"]:
            assert run["report"]["config"].pop("timestamp")
    assert first == second
    assert set(first["peak_rps"]) == {"edf/solo", "sequential/solo"}
    assert set(first["peak_steps"]) == {"edf/solo", "sequential/solo"}


def test_every_search_starts_from_one_rate(tmp_path: Path) -> None:
    # fifo never consults the predictor, so its peak must not depend on it. Each session's
    # capacity estimate comes from its own predictor; searches that started from their own
    # walked other steps and found other peaks (237.7 against 252.5/s on a bursty workload).
    out = tmp_path / "compare.json"
    args = [*FAST[:-2], "--predictors", "solo,oracle", "--policies", "fifo"]
    args += ["--rates", "1.0", "--peak-of", "all", "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    solo, oracle = doc["peak_steps"]["fifo/solo"], doc["peak_steps"]["fifo/oracle"]
    assert solo == oracle
    assert doc["peak_rps"]["fifo/solo"] == doc["peak_rps"]["fifo/oracle"]
    assert solo[0]["rate_rps"] == doc["config"]["peak_start_rps"]


def test_absolute_rates_need_no_peak(tmp_path: Path) -> None:
    doc, output = _invoke(tmp_path, "--policies", "edf,fifo", "--rates", "150/s")
    assert doc["peak_rps"] == {} and doc["peak_steps"] == {}
    assert "peak search" not in output
    assert [run["rate_rps"] for run in doc["runs"]] == [150.0, 150.0]


def test_repeat_runs_rounds_of_their_own_arrivals_in_rotating_order(tmp_path: Path) -> None:
    doc, output = _invoke(tmp_path, "--policies", "edf,fifo", "--rates", "150/s", "--repeat", "3")
    runs = doc["runs"]
    assert [(r["round"], r["policy"]) for r in runs] == [
        (0, "edf"),
        (0, "fifo"),
        (1, "fifo"),
        (1, "edf"),
        (2, "edf"),
        (2, "fifo"),
    ]
    sent = [r["report"]["requests"]["sent"] for r in runs]
    assert sent[0] == sent[1] and sent[2] == sent[3]  # one schedule within a round
    seeds = {r["round"]: r["report"]["requests"]["sent"] for r in runs}
    assert len(set(seeds.values())) > 1  # a round has arrivals of its own
    assert doc["config"]["repeat"] == 3
    assert "best" in output and "/3" in output


def test_parse_rates() -> None:
    specs = parse_rates("0.3, 1.5,300/s")
    assert [(s.value, s.absolute) for s in specs] == [(0.3, False), (1.5, False), (300.0, True)]
    assert specs[0].rps(200.0) == pytest.approx(60.0) and specs[2].rps(None) == 300.0
    with pytest.raises(InvalidConfig):
        specs[0].rps(None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rates", ""], "--rates"),
        (["--rates", " , "], "--rates"),
        (["--rates", "0,1"], "> 0"),
        (["--rates", "-0.5"], "> 0"),
        (["--rates", "fast"], "fast"),
        (["--rates", "nan/s"], "> 0"),
        (["--policies", "edf,lifo"], "lifo"),
        (["--policies", "edf,edf"], "twice"),
        (["--predictors", "crystal_ball"], "crystal_ball"),
        (["--peak-of", "fifo"], "--peak-of"),
        (["--backend", "tpu"], "--backend"),
        (["--duration", "0"], "--duration"),
        (["--models", "nope"], "unknown model"),
        (["--arrival", "zipf"], "zipf"),
        (["--json", "/nonexistent-dir/x.json"], "--json"),
        (["--repeat", "0"], "--repeat"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["compare", "--backend", "sim", "--policies", "edf", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert "aiosched compare:" not in result.stdout  # nothing ran
