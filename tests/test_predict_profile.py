"""Profiles: measuring on the sim backend, interpolation, JSON, seeding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiosched import simtime
from aiosched.backends.sim import SimBackend
from aiosched.errors import InvalidConfig
from aiosched.predict import OverlapPredictor, Profile, ProfilePoint, SoloPredictor
from aiosched.predict.profile import measure
from aiosched.spec import ModelSpec
from tests.conftest import flat_model


def small_profile() -> Profile:
    return Profile.from_latencies(
        "sim",
        {"m": {1: [0.010, 0.011, 0.012], 4: [0.020, 0.024, 0.022]}, "n": {2: [0.005]}},
        {"note": "test"},
    )


def test_points_summarise_latencies() -> None:
    point = ProfilePoint.from_latencies(4, [0.03, 0.01, 0.02, 0.04])
    assert point.median == pytest.approx(0.025)
    assert point.p99 == 0.04
    assert point.samples == 4
    assert point.throughput == pytest.approx(4 / 0.025)


def test_missing_sizes_are_interpolated() -> None:
    profile = small_profile()
    assert profile.latency("m", 1) == pytest.approx(0.011)
    assert profile.latency("m", 4) == pytest.approx(0.022)
    assert profile.latency("m", 2) == pytest.approx(0.011 + (0.022 - 0.011) / 3)
    assert profile.latency("m", 8) == pytest.approx(0.022 + 4 * (0.022 - 0.011) / 3)
    assert profile.latency("n", 4) == pytest.approx(0.010)  # one size: scaled linearly
    assert profile.latency("m", 2, quantile="p99") > profile.latency("m", 2)
    assert profile.throughput("m", 4) == pytest.approx(4 / 0.022)
    with pytest.raises(InvalidConfig):
        profile.latency("nope", 1)
    with pytest.raises(InvalidConfig):
        profile.latency("m", 1, quantile="p50")


def test_json_round_trip(tmp_path: Path) -> None:
    profile = small_profile()
    path = tmp_path / "profile.json"
    profile.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "aiosched-profile/1"
    assert data["models"]["m"][0]["throughput"] == pytest.approx(1 / 0.011)
    loaded = Profile.load(path)
    assert loaded == profile


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"format": "something else"}),
        json.dumps({"format": "aiosched-profile/1", "backend": "sim", "models": {"m": [{}]}}),
        json.dumps(
            {
                "format": "aiosched-profile/1",
                "backend": "sim",
                "models": {"m": [{"batch_size": 1, "median_s": -1, "p99_s": 1, "samples": 1}]},
            }
        ),
    ],
)
def test_bad_files_are_rejected_with_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidConfig):
        Profile.load(path)
    with pytest.raises(InvalidConfig, match="cannot read"):
        Profile.load(tmp_path / "missing.json")


@pytest.mark.sim
async def test_measure_on_the_sim_backend_runs_each_size_alone() -> None:
    calls: list[tuple[str, int]] = []
    model = flat_model(0.010, per_item=0.002)
    backend = SimBackend(lanes=2, models={"m": model})
    spec = ModelSpec("m", None, max_batch_size=4)

    profile = await measure(
        backend, [spec], [1, 4], repeats=3, warmup=1, on_run=lambda m, b: calls.append((m, b))
    )
    assert calls == [("m", 1)] * 4 + [("m", 4)] * 4
    point = profile.point("m", 1)
    assert point is not None and point.samples == 3
    assert point.median == pytest.approx(0.010) and point.p99 == pytest.approx(0.010)
    assert profile.latency("m", 4) == pytest.approx(0.016)
    assert profile.meta["repeats"] == 3


def test_measure_rejects_bad_settings() -> None:
    spec = ModelSpec("m", None)
    with pytest.raises(InvalidConfig):
        simtime.run(measure(SimBackend(models={"m": flat_model()}), [spec], [0]))
    with pytest.raises(InvalidConfig):
        simtime.run(measure(SimBackend(models={"m": flat_model()}), [spec], [1], repeats=0))


def test_seed_gives_every_measured_point_to_the_predictor() -> None:
    profile = small_profile()
    solo = SoloPredictor(quantile=0.5)
    solo.seed(profile)
    assert solo.predict("m", 1, (), 0.0) == pytest.approx(0.011)
    assert solo.predict("m", 4, (), 0.0) == pytest.approx(0.022)
    overlap = OverlapPredictor()
    overlap.seed(profile)
    assert overlap.knows("m") and overlap.knows("n")
    assert overlap.predict("m", 1, (), 0.0) == pytest.approx(0.011, rel=0.05)
    assert overlap.predict("m", 4, (), 0.0) == pytest.approx(0.022, rel=0.05)
