"""Every command ends a bad value the same way: one line, exit code 2, before any run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched.backends.cpu import usable_cores
from aiosched.cli import app
from aiosched.cli import loadtest as loadtest_cli
from aiosched.cli import profile as profile_cli
from aiosched.experiments import colocation as colocation_exp
from aiosched.experiments import deadlines as deadlines_exp
from aiosched.experiments import predictors as predictors_exp
from aiosched.experiments import recovery as recovery_exp

runner = CliRunner()

UNWRITABLE = "/nonexistent-dir/out.json"


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value must be caught before the work: any run here is a failure."""

    def ran(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the command ran before refusing its options")

    monkeypatch.setattr(loadtest_cli, "_run", ran)
    monkeypatch.setattr(profile_cli, "measure_profile", ran)
    for module in (predictors_exp, recovery_exp, colocation_exp):
        monkeypatch.setattr(module, "run", ran)
    monkeypatch.setattr(deadlines_exp, "compare", ran)


BAD = [
    (["loadtest", "--backend", "sim", "--seed", "-1"], "--seed"),
    (["loadtest", "--backend", "sim", "--rate", "1e9"], "at most 10,000,000"),
    (["loadtest", "--backend", "sim", "--rate", "inf"], "finite"),
    (["loadtest", "--backend", "sim", "--duration", "inf"], "finite"),
    (["loadtest", "--backend", "sim", "--lanes", "1000"], "--lanes"),
    (["loadtest", "--backend", "cpu", "--lanes", str(usable_cores() + 1)], "core"),
    (["loadtest", "--backend", "sim", "--lanes", "two"], "--lanes"),
    (["loadtest", "--backend", "sim", "--models", ""], "--models"),
    (["loadtest", "--backend", "sim", "--models", " "], "--models"),
    (["loadtest", "--backend", "sim", "--max-batch-size", "1000000"], "--max-batch-size"),
    (["loadtest", "--backend", "sim", "--json", UNWRITABLE], "--json"),
    (["loadtest", "--backend", "tpu"], "--backend"),
    (["profile", "--json", UNWRITABLE], "--json"),
    (["profile", "--repeats", "0"], "--repeats"),
    (["profile", "--batch-sizes", "1,100000"], "--batch-sizes"),
    (["profile", "--models", ","], "--models"),
    (["experiment", "predictors", "--json", UNWRITABLE], "--json"),
    (["experiment", "predictors", "--seed", "-1"], "--seed"),
    (["experiment", "predictors", "--rate", "1e9"], "at most"),
    (["experiment", "predictors", "--lanes", "1000"], "--lanes"),
    (["experiment", "deadlines", "--json", UNWRITABLE], "--json"),
    (["experiment", "deadlines", "--rate", "1e9"], "at most"),
    (["experiment", "deadlines", "--seed", "-1"], "--seed"),
    (["experiment", "recovery", "--seed", "-1"], "--seed"),
    (["experiment", "recovery", "--rate", "1e9"], "at most"),
    (["experiment", "colocation", "--tasks", "1000"], "--tasks"),
    (["experiment", "colocation", "--seed", "-1"], "--seed"),
    (["nonesuch"], "nonesuch"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_a_bad_value_is_one_line_and_exit_code_2_before_any_run(
    args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_directory_given_as_json_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["loadtest", "--backend", "sim", "--json", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output
    assert list(tmp_path.iterdir()) == []


def test_checking_a_json_path_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["loadtest", "--backend", "sim", "--json", str(out)])
    assert "ran before" in str(result.exception)  # the check passed; the spy stopped the run
    assert not out.exists()


def test_no_arguments_and_help_still_show_the_help() -> None:
    for args in ([], ["--help"], ["loadtest", "--help"]):
        result = runner.invoke(app, args)
        assert "Usage" in result.output and "error:" not in result.output
    assert runner.invoke(app, ["--help"]).exit_code == 0
