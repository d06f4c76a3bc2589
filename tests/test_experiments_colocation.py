"""``experiment colocation``: p99 against co-located tasks, sequential vs concurrent (Fig. 3)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from aiosched.cli import experiment as experiment_cli
from aiosched.errors import InvalidConfig
from aiosched.experiments.colocation import ColocationConfig, quantile, run

TASKS = (1, 2, 3, 4, 6, 8)


@functools.cache
def sweep(batch_size: int = 1) -> dict[str, Any]:
    # resnet50 in the sim catalogue: moderate interference (about 1.2x beside one co-runner).
    return run(ColocationConfig(model="resnet50", tasks=TASKS, batch_size=batch_size, duration=3.0))


def rows(data: dict[str, Any], mode: str) -> dict[int, dict[str, Any]]:
    return {r["tasks"]: r for r in data["points"] if r["mode"] == mode}


def test_every_point_is_reported_once_per_mode() -> None:
    data = sweep()
    assert [(r["tasks"], r["mode"]) for r in data["points"]] == [
        (k, m) for k in TASKS for m in ("sequential", "concurrent")
    ]
    assert data["config"]["model"] == "resnet50" and data["config"]["tasks"] == list(TASKS)
    solo = data["solo"]
    assert solo["mean_s"] == pytest.approx(solo["truth_s"], rel=0.02)
    for r in data["points"]:
        assert r["batches"] > 100
        assert r["p50_s"] <= r["p99_s"] <= r["max_s"]
    # One task is the same thing either way.
    assert rows(data, "sequential")[1]["p99_s"] == pytest.approx(
        rows(data, "concurrent")[1]["p99_s"], rel=0.05
    )


def test_concurrent_tail_is_below_sequential_from_two_tasks() -> None:
    seq, conc = rows(sweep(), "sequential"), rows(sweep(), "concurrent")
    for k in TASKS:
        if k >= 2:
            assert conc[k]["p99_s"] < seq[k]["p99_s"]
            assert conc[k]["batches_per_s"] > seq[k]["batches_per_s"]
    # Interference: concurrent batches are slower than alone, and more so with more of them.
    solo = sweep()["solo"]["mean_s"]
    p50s = [conc[k]["p50_s"] for k in TASKS]
    assert p50s == sorted(p50s) and p50s[-1] > 2 * solo


def test_sequential_tail_grows_linearly_with_the_tasks() -> None:
    data = sweep()
    seq, solo = rows(data, "sequential"), data["solo"]["mean_s"]
    for k in TASKS:
        # Each batch waits behind the k - 1 others, then runs alone.
        assert seq[k]["p50_s"] == pytest.approx(k * solo, rel=0.03)
        assert seq[k]["p99_s"] / (k * solo) == pytest.approx(1.0, abs=0.1)
    # A straight line through the points: the slope is one solo latency per task.
    ks = list(TASKS)
    ys = [seq[k]["p99_s"] for k in ks]
    mean_k, mean_y = sum(ks) / len(ks), sum(ys) / len(ys)
    slope = sum((k - mean_k) * (y - mean_y) for k, y in zip(ks, ys, strict=True)) / sum(
        (k - mean_k) ** 2 for k in ks
    )
    assert slope == pytest.approx(solo, rel=0.05)
    # And the device does one batch at a time: the same throughput whatever k.
    assert all(seq[k]["batches_per_s"] == pytest.approx(1 / solo, rel=0.03) for k in TASKS)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_throughput_agrees_with_the_latencies(batch_size: int) -> None:
    data = sweep(batch_size)
    for r in data["points"]:
        # Little's law: k batches always outstanding = throughput x mean latency.
        assert r["batches_per_s"] * r["mean_s"] == pytest.approx(r["tasks"], rel=0.01)
        assert r["samples_per_s"] == pytest.approx(r["batches_per_s"] * batch_size)
        assert r["batches"] / r["span_s"] == pytest.approx(r["batches_per_s"])
        assert r["p99_over_solo"] == pytest.approx(r["p99_s"] / data["solo"]["mean_s"])


def test_a_batch_count_stops_each_point() -> None:
    data = run(ColocationConfig(tasks=(1, 3), batches=7, duration=100.0))
    assert [r["batches"] for r in data["points"]] == [7, 7, 21, 21]


def test_the_runs_are_reproducible() -> None:
    config = ColocationConfig(tasks=(2,), duration=0.5, seed=3)
    first, second = run(config), run(config)
    assert first["points"] == second["points"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"tasks": ()},
        {"tasks": (0, 2)},
        {"tasks": (2, 2)},
        {"modes": ("parallel",)},
        {"batch_size": 0},
        {"duration": 0.0},
        {"batches": 0},
        {"model": "nope"},
        {"backend": "tpu"},
    ],
)
def test_bad_configs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig):
        ColocationConfig(**overrides).validate()


def test_quantile_interpolates() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([5.0], 0.99) == 5.0
    assert quantile([], 0.5) != quantile([], 0.5)  # NaN


def test_the_cpu_backend_runs_it_on_the_real_clock() -> None:
    data = run(ColocationConfig(backend="cpu", model="tiny_mlp", tasks=(1, 2), batches=5))
    assert [r["batches"] for r in data["points"]] == [5, 5, 10, 10]
    assert all(r["p99_s"] > 0 for r in data["points"])


# -- the command -----------------------------------------------------------------


def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Test app."""

    experiment_cli.register(app)
    return app


runner = CliRunner()


def test_the_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "coloc.json"
    result = runner.invoke(
        app(),
        ["experiment", "colocation", "--tasks", "3", "--duration", "0.5", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "p99" in result.output and "concurrent" in result.output
    data = json.loads(out.read_text())
    assert [r["tasks"] for r in data["points"]] == [1, 1, 2, 2, 3, 3]
    assert data["config"]["backend"] == "sim" and data["config"]["duration"] == 0.5
    assert set(data["points"][0]) >= {"p50_s", "p99_s", "batches_per_s", "samples_per_s"}


def test_the_command_takes_a_list_of_task_counts(tmp_path: Path) -> None:
    out = tmp_path / "coloc.json"
    args = ["experiment", "colocation", "--tasks", "4,1", "--batch-size", "2"]
    result = runner.invoke(app(), [*args, "--batches", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [(r["tasks"], r["batches"]) for r in data["points"]] == [
        (1, 3),
        (1, 3),
        (4, 12),
        (4, 12),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "tpu"],
        ["--model", "nope"],
        ["--tasks", "0"],
        ["--tasks", "two"],
        ["--tasks", "1,x"],
        ["--tasks", "0,2"],
        ["--batch-size", "0"],
        ["--duration", "0"],
        ["--json", "/nonexistent-dir/x.json"],
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str]) -> None:
    result = runner.invoke(app(), ["experiment", "colocation", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.output or "Invalid" in result.output


def test_an_unwritable_json_path_fails_before_running(tmp_path: Path) -> None:
    result = runner.invoke(
        app(), ["experiment", "colocation", "--duration", "1000", "--json", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "directory" in result.output
