"""One unit for deadlines and latencies in every command: milliseconds, or a number with a unit.

Each command is stopped by a spy where its run would start, and the value it
was about to run with is checked: ``50``, ``50ms``, ``0.05s`` and ``50000us``
are the same deadline everywhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.cli import compare as compare_cli
from aiosched.cli import loadtest as loadtest_cli
from aiosched.cli._parse import deadline_spec, milliseconds
from aiosched.experiments import deadlines as deadlines_exp
from aiosched.experiments import predictors as predictors_exp
from aiosched.experiments import recovery as recovery_exp
from aiosched.integrations import mlperf as mlperf_int

runner = CliRunner()

SAME = ["50", "50ms", "50 ms", "0.05s", "50000us", "5e1"]


class Stop(Exception):
    """Raised by a spy once it has what the command was about to run with."""


@pytest.mark.parametrize("text", SAME)
def test_every_spelling_is_the_same_milliseconds(text: str) -> None:
    assert milliseconds(text, "--deadline") == pytest.approx(50.0)


@pytest.mark.parametrize("text", ["", "ms", "fast", "50min", "5e", "-5", "0", "inf", "nan"])
def test_a_bad_duration_is_refused(text: str) -> None:
    import typer

    with pytest.raises(typer.BadParameter, match=r"duration|milliseconds"):
        milliseconds(text, "--deadline")


def test_a_per_model_spec_keeps_its_names_and_resolves_each_unit() -> None:
    assert deadline_spec("0.1s, a=50ms,b = 20") == "100.0,a=50.0,b=20.0"
    assert deadline_spec(None) is None
    assert deadline_spec("50,") == "50.0,"  # the library names the empty item


def _capture(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    seen: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[0] if args else kwargs)
        raise Stop

    monkeypatch.setattr(module, name, spy)
    return seen


def _run_until_spy(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, Stop), result.output


@pytest.mark.parametrize("text", SAME)
def test_loadtest_and_compare_deadlines(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    seen = _capture(monkeypatch, loadtest_cli, "_run")
    _run_until_spy(["loadtest", "--backend", "sim", "--deadline", f"{text},vit_b16=0.08s"])
    assert seen[0].deadline == "50.0,vit_b16=80.0"
    seen = _capture(monkeypatch, compare_cli, "_run")
    _run_until_spy(["compare", "--backend", "sim", "--deadline", text])
    assert seen[0].base.deadline == "50.0"


@pytest.mark.parametrize("text", SAME)
def test_experiment_deadlines_are_milliseconds(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    seen = _capture(monkeypatch, predictors_exp, "run")
    _run_until_spy(["experiment", "predictors", "--deadline", text])
    assert seen[0].deadline == pytest.approx(0.05)  # the library's configs hold seconds
    seen = _capture(monkeypatch, deadlines_exp, "compare")
    _run_until_spy(["experiment", "deadlines", "--deadline", text])
    assert seen[0].deadline == pytest.approx(0.05)
    seen = _capture(monkeypatch, recovery_exp, "run")
    _run_until_spy(["experiment", "recovery", "--deadline", text])
    assert seen[0].deadline == pytest.approx(0.05)


@pytest.mark.parametrize("text", SAME)
def test_mlperf_latencies(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(mlperf_int, "require_loadgen", lambda: None)
    seen = _capture(monkeypatch, mlperf_int, "run_mlperf")
    _run_until_spy(["mlperf", "--latency", text, "--expected-latency", text])
    assert seen[0].latency_ms == pytest.approx(50.0)
    assert seen[0].expected_latency_ms == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["loadtest", "--backend", "sim", "--deadline", "50min"], "--deadline"),
        (["loadtest", "--backend", "sim", "--deadline", "a=fast"], "--deadline"),
        (["compare", "--backend", "sim", "--deadline", "0"], "--deadline"),
        (["experiment", "predictors", "--deadline", "-1ms"], "--deadline"),
        (["experiment", "deadlines", "--deadline", "inf"], "--deadline"),
        (["experiment", "recovery", "--deadline", "soon"], "--deadline"),
        (["mlperf", "--latency", "1h"], "--latency"),
        (["mlperf", "--expected-latency", "0s"], "--expected-latency"),
    ],
)
def test_a_bad_deadline_is_one_line_and_exit_2(args: list[str], option: str) -> None:
    result = runner.invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["loadtest"],
        ["compare"],
        ["experiment", "predictors"],
        ["experiment", "deadlines"],
        ["experiment", "recovery"],
        ["mlperf"],
    ],
)
def test_every_deadline_option_names_its_unit_in_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "ms; a unit may be given: 50ms, 0.05s" in " ".join(result.output.split())
