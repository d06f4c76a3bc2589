"""The predictor experiments and the CLI commands around them, on the sim backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from aiosched.cli import experiment as experiment_cli
from aiosched.cli import profile as profile_cli
from aiosched.errors import InvalidConfig
from aiosched.experiments.deadlines import DeadlinesConfig, compare, parse_predictor
from aiosched.experiments.predictors import (
    RECOVERY_WINDOW,
    PredictorsConfig,
    accuracy,
    recovery,
    roster,
)
from aiosched.experiments.replay import replay
from aiosched.experiments.workload import Phase, poisson_schedule
from aiosched.predict import OverlapPredictor, Predictor, QuantilePredictor
from aiosched.timeline import Execution, Running
from tests.predict_helpers import profile, trace


def app() -> typer.Typer:
    """A local app with the two commands (the real one lists them in its ``_COMMANDS``)."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Test app."""

    profile_cli.register(app)
    experiment_cli.register(app)
    return app


runner = CliRunner()


# -- library -----------------------------------------------------------------------


def test_poisson_schedules_are_reproducible_and_follow_the_phases() -> None:
    phases = [Phase(10.0, {"a": 50.0, "b": 50.0}), Phase(10.0, {"a": 10.0})]
    first = poisson_schedule(phases, {"a": 0.1, "b": 0.2}, seed=3)
    again = poisson_schedule(phases, {"a": 0.1, "b": 0.2}, seed=3)
    other = poisson_schedule(phases, {"a": 0.1, "b": 0.2}, seed=4)
    assert np.array_equal(first.offsets, again.offsets)
    assert np.array_equal(first.model_index, again.model_index)
    assert not np.array_equal(first.offsets[:10], other.offsets[:10])
    assert first.models == ("a", "b") and first.duration_s == 20.0
    early = first.offsets < 10.0
    assert 800 < early.sum() < 1200 and 60 < (~early).sum() < 140
    assert (first.model_index[~early] == 0).all() and (first.deadlines_s[~early] == 0.1).all()
    b = first.model_index == 1
    assert (first.deadlines_s[b] == 0.2).all()
    assert (np.diff(first.offsets) >= 0).all()


def test_recovery_counts_executions_until_the_window_mean_is_under_threshold() -> None:
    w = RECOVERY_WINDOW
    assert recovery([0.05] * w) == w
    # The window ending at n holds 30 - n of the bad ones: under 0.10 once at most 2 are.
    assert recovery([0.5] * 10 + [0.05] * 100) == 28
    assert recovery([0.5] * 100) is None
    assert recovery([0.01] * (w - 1)) is None


class Recorder(Predictor):
    """Records what the replay hands it."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int, tuple[Running, ...]]] = []

    def predict(self, model: str, batch_size: int, running: object, now: float) -> float:
        self.events.append(("predict", int(now * 1e6), tuple(running)))  # type: ignore[arg-type]
        return 0.001 * (1 + len(self.events))

    def _learn(self, execution: Execution) -> None:
        self.events.append(("learn", execution.id, execution.at_dispatch))

    def knows(self, model: str) -> bool:
        return True

    def params(self) -> dict[str, object]:
        return {}


def test_replay_predicts_in_time_order_with_its_own_expected_ends() -> None:
    executions = trace()
    recorder = Recorder()
    scored = replay(recorder, executions)
    own = {s.execution.id: s.predicted for s in scored}
    learnt = [e for kind, e, _ in recorder.events if kind == "learn"]
    assert len(learnt) == len([e for e in executions if e.ok]) - 3  # the cold runs skipped
    for _, _, running in recorder.events:
        for r in running:
            if r.id in own:
                assert r.expected_end - r.start == pytest.approx(own[r.id])
    times = [t for kind, t, _ in recorder.events if kind == "predict"]
    assert times == sorted(times)


def test_accuracy_scores_every_predictor_of_the_roster() -> None:
    scores = accuracy(trace(), 0.75, profile())
    assert set(scores) == set(roster())
    for row in scores.values():
        assert 0 < row["mape"] <= row["p95_ape"] and row["count"] > 100
    assert scores["overlap"]["mape"] < scores["solo"]["mape"]


def test_parse_predictor_specs() -> None:
    predictor = parse_predictor("overlap:quantile=0.9,device_rate=0")
    assert isinstance(predictor, QuantilePredictor) and predictor.quantile == 0.9
    assert isinstance(predictor.inner, OverlapPredictor) and predictor.inner.device_rate == 0
    for bad in ("nope", "overlap:quantile", "overlap:bogus=1"):
        with pytest.raises(InvalidConfig):
            parse_predictor(bad)


def test_deadline_comparison_runs_each_predictor_on_the_same_arrivals() -> None:
    config = DeadlinesConfig(predictors=("overlap:quantile=0.9", "solo"), duration=2.0)
    data = compare(config)
    results = data["results"]
    assert set(results) == {"overlap:quantile=0.9", "solo"}
    submitted = {r["submitted"] for r in results.values()}
    assert len(submitted) == 1  # same arrivals
    for r in results.values():
        assert 0 < r["met"] <= 1
        assert r["met_deadline"] + r["missed_deadline"] + r["rejected"] == r["submitted"]


def test_config_validation() -> None:
    with pytest.raises(InvalidConfig):
        PredictorsConfig(lanes=0).validate()
    with pytest.raises(InvalidConfig):
        PredictorsConfig.for_backend("gpu")
    assert PredictorsConfig.for_backend("cpu").models[0] == "mobilenet_v3_small"


# -- command line -----------------------------------------------------------------------


def test_profile_command_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    result = runner.invoke(
        app(),
        [
            "profile",
            "--backend",
            "sim",
            "--models",
            "resnet50,vgg19",
            "--batch-sizes",
            "1,4",
            "--repeats",
            "3",
            "--warmup",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "samples/s" in result.output and "vgg19" in result.output
    data = json.loads(out.read_text())
    assert [p["batch_size"] for p in data["models"]["resnet50"]] == [1, 4]


@pytest.mark.parametrize(
    "args",
    [
        ["profile", "--backend", "gpu"],
        ["profile", "--models", "resnet50,nope"],
        ["profile", "--models", ","],
        ["profile", "--batch-sizes", "0,2"],
        ["profile", "--batch-sizes", "two"],
        ["profile", "--repeats", "0"],
        ["experiment", "predictors", "--backend", "tpu"],
        ["profile", "--backend", "cuda"]
        if not torch.cuda.is_available()
        else ["profile", "--repeats", "-1"],
        ["experiment", "predictors", "--models", "nope"],
        ["experiment", "predictors", "--lanes", "0"],
        ["experiment", "deadlines", "--predictor", "nope"],
        ["experiment", "deadlines", "--predictor", "overlap:quantile=2"],
    ],
)
def test_bad_options_exit_2_with_a_message_not_a_traceback(args: list[str]) -> None:
    result = runner.invoke(app(), args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.output or "Invalid" in result.output


def test_experiment_predictors_command_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    result = runner.invoke(
        app(),
        [
            "experiment",
            "predictors",
            "--backend",
            "sim",
            "--models",
            "resnet50,yolov8n,vgg19",
            "--rate",
            "200",
            "--duration",
            "3",
            "--drift-duration",
            "4",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.output and "recovery" in result.output
    data = json.loads(out.read_text())
    assert set(data["predictors"]) == set(roster())
    for row in data["predictors"].values():
        assert set(row) >= {"mape", "p95_ape"}
    for name in ("sgd", "rls", "overlap"):
        assert set(data["drift"][name]) == {
            "recovery_executions",
            "recovery_to_before_executions",
            "mape_before",
            "mape_after",
        }


def test_experiment_deadlines_command(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = runner.invoke(
        app(),
        [
            "experiment",
            "deadlines",
            "--duration",
            "2",
            "--predictor",
            "overlap:quantile=0.9",
            "--predictor",
            "solo",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "met" in result.output
    assert set(json.loads(out.read_text())["results"]) == {"overlap:quantile=0.9", "solo"}
