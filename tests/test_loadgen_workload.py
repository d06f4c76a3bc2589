"""Workloads: model mixes, deadlines, seeded schedules and trace replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiosched.errors import AioschedError
from aiosched.loadgen import (
    Bursty,
    LoadgenError,
    ModelLoad,
    Schedule,
    Workload,
    WorkloadError,
    load_trace,
    parse_deadlines,
    parse_models,
)


def test_parse_models() -> None:
    assert parse_models("a") == {"a": 1.0}
    assert parse_models("resnet18:3, mobilenet_v3_small:1") == {
        "resnet18": 3.0,
        "mobilenet_v3_small": 1.0,
    }
    assert list(parse_models("b,a:0.5")) == ["b", "a"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty model name"),
        ("a,,b", "empty model name"),
        (":3", "empty model name"),
        ("a:x", "share 'x' is not a number"),
        ("a:0", "share must be a positive number"),
        ("a:-2", "share must be a positive number"),
        ("a:inf", "share must be a positive number"),
        ("a,b,a", "listed twice"),
    ],
)
def test_parse_models_errors(spec: str, message: str) -> None:
    with pytest.raises(WorkloadError) as info:
        parse_models(spec)
    assert message in str(info.value)
    assert isinstance(info.value, AioschedError) and isinstance(info.value, ValueError)


def test_parse_deadlines() -> None:
    names = ("a", "b", "c")
    assert parse_deadlines(None, names) == {"a": 100.0, "b": 100.0, "c": 100.0}
    assert parse_deadlines("50", names) == {"a": 50.0, "b": 50.0, "c": 50.0}
    assert parse_deadlines("a=20,c=75ms", names) == {"a": 20.0, "b": 100.0, "c": 75.0}
    assert parse_deadlines("30,b=5", names) == {"a": 30.0, "b": 5.0, "c": 30.0}
    assert parse_deadlines("b=5", names, default_ms=40) == {"a": 40.0, "b": 5.0, "c": 40.0}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fast", "'fast' is not a number"),
        ("0", "positive number of milliseconds"),
        ("a=-1", "positive number of milliseconds"),
        ("z=10", "names model 'z', which is not in --models (a, b)"),
        ("a=1,a=2", "sets model 'a' twice"),
        ("10,20", "more than one default"),
        ("a=1,,b=2", "empty item"),
    ],
)
def test_parse_deadlines_errors(spec: str, message: str) -> None:
    with pytest.raises(WorkloadError) as info:
        parse_deadlines(spec, ("a", "b"))
    assert message in str(info.value)


def test_workload_parse() -> None:
    w = Workload.parse("a:3,b", "a=20,80")
    assert w.models == (ModelLoad("a", 3.0, 0.02), ModelLoad("b", 1.0, 0.08))
    assert w.names == ("a", "b")


def test_workload_validation() -> None:
    with pytest.raises(WorkloadError, match="at least one model"):
        Workload(())
    with pytest.raises(WorkloadError, match="listed twice"):
        Workload((ModelLoad("a"), ModelLoad("a")))
    with pytest.raises(WorkloadError, match="deadline"):
        ModelLoad("a", 1.0, 0.0)
    with pytest.raises(WorkloadError, match="share"):
        ModelLoad("a", -1.0)


@pytest.mark.parametrize("arrival", ["poisson", "constant", "gamma:cv=3", Bursty(0.5, 0.5)])
def test_same_seed_same_schedule(arrival: object) -> None:
    w = Workload.parse("a:3,b:1,c:1", "a=10,b=20,c=30")
    s1 = w.schedule(arrival, 500.0, 10.0, seed=42)  # type: ignore[arg-type]
    s2 = w.schedule(arrival, 500.0, 10.0, seed=42)  # type: ignore[arg-type]
    s3 = w.schedule(arrival, 500.0, 10.0, seed=43)  # type: ignore[arg-type]
    assert np.array_equal(s1.offsets, s2.offsets)
    assert np.array_equal(s1.model_index, s2.model_index)
    assert np.array_equal(s1.deadlines_s, s2.deadlines_s)
    assert not np.array_equal(s1.model_index, s3.model_index)


def test_schedule_mix_and_deadlines() -> None:
    w = Workload.parse("a:3,b:1", "a=10,b=20")
    s = w.schedule("poisson", 1000.0, 20.0, seed=1)
    assert isinstance(s, Schedule)
    assert s.models == ("a", "b")
    assert s.duration_s == 20.0
    assert s.offered_rps == pytest.approx(1000.0, rel=0.02)
    counts = s.counts()
    assert sum(counts.values()) == len(s)
    # binomial(n, 0.75): sd about 0.3 % of n
    assert counts["a"] / len(s) == pytest.approx(0.75, abs=0.02)
    assert np.all(s.deadlines_s[s.model_index == 0] == 0.01)
    assert np.all(s.deadlines_s[s.model_index == 1] == 0.02)
    assert s.config["arrival"] == "poisson"
    assert s.config["seed"] == 1
    assert s.config["models"]["b"] == {"share": 1.0, "deadline_ms": 20.0}


def test_schedule_rejects_bad_rate_and_duration() -> None:
    w = Workload.parse("a")
    with pytest.raises(WorkloadError, match="rate"):
        w.schedule("poisson", 0.0, 1.0)
    with pytest.raises(WorkloadError, match="duration"):
        w.schedule("poisson", 1.0, 0.0)
    with pytest.raises(LoadgenError, match="unknown arrival process"):
        w.schedule("nope", 1.0, 1.0)


def test_replay(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("offset_s,model,deadline_ms\n0,b,5\n0.25,a,\n0.5,a,7\n1.5,b,\n", encoding="utf-8")
    w = Workload.parse("a,b", "a=10,b=20")
    s = w.replay(load_trace(p))
    assert np.array_equal(s.offsets, [0.0, 0.25, 0.5, 1.5])
    assert s.model_index.tolist() == [1, 0, 0, 1]
    assert np.allclose(s.deadlines_s, [0.005, 0.01, 0.007, 0.02])
    assert s.duration_s == 1.5
    assert s.config["arrival"] == "trace"
    cut = w.replay(load_trace(p), duration=0.5)
    assert len(cut) == 2 and cut.duration_s == 0.5


def test_workload_for_trace(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(
        '{"offset_s": 0, "model": "b"}\n{"offset_s": 1, "model": "a", "deadline_ms": 9}\n',
        encoding="utf-8",
    )
    trace = load_trace(p)
    w = Workload.for_trace(trace, "b=30", default_deadline_ms=60)
    assert w.models == (ModelLoad("b", 1.0, 0.03), ModelLoad("a", 1.0, 0.06))
    s = w.replay(trace)
    assert np.allclose(s.deadlines_s, [0.03, 0.009])


def test_schedule_checks_arrays() -> None:
    with pytest.raises(WorkloadError):
        Schedule(np.array([1.0, 0.5]), np.zeros(2, dtype=np.intp), np.ones(2), ("a",), 2.0)
    with pytest.raises(WorkloadError):
        Schedule(np.array([1.0]), np.zeros(2, dtype=np.intp), np.ones(2), ("a",), 2.0)
