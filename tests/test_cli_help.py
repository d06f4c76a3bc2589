"""The command line's entry points: ``--version``, ``python -m aiosched``, help without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import aiosched
from aiosched._version import __version__
from aiosched.cli import app
from aiosched.cli._lazy import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

# Runs the command line in a fresh interpreter, then prints whether torch was imported.
# With stub=True the package ``aiosched`` is entered without running its __init__ (which
# imports the whole library, torch included): what the command line itself imports.
_PROBE = textwrap.dedent(
    """
    import sys, types
    if {stub!r}:
        pkg = types.ModuleType("aiosched")
        pkg.__path__ = [{pkg!r}]
        sys.modules["aiosched"] = pkg
    sys.argv = ["aiosched", *{args!r}]
    from aiosched.cli import main
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    extras = [m for m in ("matplotlib", "mlperf_loadgen") if m in sys.modules]
    print("EXTRAS", ",".join(extras) or "-")
    print("EXIT", code, "TORCH", "torch" in sys.modules)
    """
)


def _probe(args: list[str], *, stub: bool) -> tuple[int | None, bool, str]:
    code = _PROBE.format(stub=stub, pkg=str(ROOT / "aiosched"), args=args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    last = out.stdout.strip().splitlines()[-1]
    _, exit_code, _, torch = last.split()
    return (None if exit_code == "None" else int(exit_code)), torch == "True", out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["loadtest", "--help"],
        ["compare", "--help"],
        ["profile", "--help"],
        ["experiment", "--help"],
        ["experiment", "predictors", "--help"],
        ["report", "--help"],
        ["mlperf", "--help"],
    ],
)
def test_the_command_line_itself_imports_no_torch_for_help(args: list[str]) -> None:
    code, torch, out = _probe(args, stub=True)
    assert code in (0, None), out
    assert not torch, f"aiosched {' '.join(args)} imported torch"
    assert ("aiosched" in out) and (__version__ in out if args == ["--version"] else True)


@pytest.mark.parametrize("args", [["report", "--help"], ["mlperf", "--help"]])
def test_help_imports_no_optional_extra(args: list[str]) -> None:
    """matplotlib (report) and LoadGen (mlperf) are imported when the command runs, not before."""
    code, _, out = _probe(args, stub=False)
    assert code in (0, None), out
    extras = [line for line in out.splitlines() if line.startswith("EXTRAS ")][-1]
    assert extras == "EXTRAS -", f"aiosched {' '.join(args)} imported {extras.split()[1]}"


@pytest.mark.parametrize("args", [["--help"], ["loadtest", "--help"], ["--version"]])
def test_help_imports_no_torch_end_to_end(args: list[str]) -> None:
    """The package's own __init__ included (it loads its names on first use)."""
    code, torch, out = _probe(args, stub=False)
    assert code in (0, None), out
    assert not torch


def test_python_m_aiosched_runs_the_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "aiosched", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"aiosched {__version__}"


def test_version_option_and_the_package_agree() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"aiosched {aiosched.__version__}"
    assert aiosched.__version__ == __version__


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_commands_own(name: str) -> None:
    """The root help lists summaries without importing the commands: they must not drift."""
    import typer

    from aiosched.cli._lazy import LazyCommands

    group = typer.main.get_command(app)
    assert isinstance(group, LazyCommands)
    command = group.load(name)
    assert command.help is not None
    first = " ".join(command.help.strip().split("\n\n")[0].split())
    assert first == COMMANDS[name][1]


def test_the_root_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_the_listed_choices_are_the_registries() -> None:
    """``--help`` lists names without importing the registries: they must not drift."""
    from aiosched.backends import BACKENDS as ALL_BACKENDS
    from aiosched.cli import _choices
    from aiosched.experiments.setup import BACKENDS
    from aiosched.integrations.mlperf import SCENARIOS
    from aiosched.loadgen.arrivals import ARRIVALS
    from aiosched.policy import POLICIES
    from aiosched.predict import PREDICTORS

    def names(listed: str) -> set[str]:
        words = listed.split(", with options")[0].replace(" or ", ", ").split(", ")
        return {w.split("[")[0].strip() for w in words}

    assert names(_choices.BACKENDS) == set(ALL_BACKENDS)
    assert names(_choices.DEVICE_BACKENDS) == set(BACKENDS)
    assert names(_choices.POLICIES) == set(POLICIES)
    assert names(_choices.PREDICTORS) == set(PREDICTORS)
    assert names(_choices.ARRIVALS) == set(ARRIVALS)
    assert names(_choices.SCENARIOS) == set(SCENARIOS)


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["loadtest"], ["edf, fifo or sequential", "overlap or oracle", "poisson", "sim"]),
        (["compare"], ["edf, fifo or sequential", "overlap or oracle", "gamma", "cuda"]),
        (["experiment"], ["predictors", "deadlines", "colocation", "recovery"]),
        (["experiment", "predictors"], ["sim, cpu or cuda"]),
        (["experiment", "deadlines"], ["overlap or oracle"]),
        (["experiment", "recovery"], ["overlap or oracle"]),
        (["experiment", "colocation"], ["sim, cpu or cuda"]),
        (["profile"], ["sim, cpu or cuda"]),
        (["mlperf"], ["server, offline or singlestream", "sim or cpu"]),
    ],
)
def test_each_commands_help_lists_its_choices(args: list[str], listed: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    for words in listed:
        assert words in text, f"aiosched {' '.join(args)} --help does not list {words!r}"


def test_version_command_imports_no_torch() -> None:
    code, torch, out = _probe(["version"], stub=False)
    assert code in (0, None), out
    assert not torch, "aiosched version imported torch"
    assert f"aiosched {__version__}, torch " in out
