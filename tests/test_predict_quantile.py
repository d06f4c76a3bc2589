"""The quantile wrapper: its margin, the specs that build it, and what it hands to the inner one."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any

import pytest

from aiosched.backends.sim import SimBackend
from aiosched.errors import InvalidConfig
from aiosched.experiments.replay import replay
from aiosched.predict import (
    OraclePredictor,
    OverlapPredictor,
    Predictor,
    QuantilePredictor,
    Recipe,
    RlsPredictor,
    SoloPredictor,
    make_predictor,
)
from aiosched.scheduler import DEFAULT_PREDICTOR
from aiosched.timeline import Execution, Running
from tests.predict_helpers import profile, trace


class Fixed(Predictor):
    """Always predicts ``latency``; knows a model once it learnt or observed it."""

    name = "fixed"

    def __init__(self, latency: float = 0.01) -> None:
        super().__init__()
        self.latency = latency
        self.seen: set[str] = set()
        self.attached: Any = None

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        return self.latency

    def _learn(self, execution: Execution) -> None:
        self.seen.add(execution.model)

    def knows(self, model: str) -> bool:
        return model in self.seen

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        self.seen.add(model)

    def attach(self, backend: Any) -> None:
        self.attached = backend


def run(latency: float, predicted: float, *, model: str = "m", **kw: Any) -> Execution:
    return Execution(1, model, 1, 0, 0.0, latency, predicted, (), (), **kw)


def test_the_margin_takes_pinball_steps_once_the_inner_predictor_knows_the_model() -> None:
    q = QuantilePredictor(Fixed(0.01), quantile=0.9, step=0.01)
    q.learn(run(0.02, 0.01))  # the inner one still guessed: no step
    assert q.margin("m") == 0.0 and q.predict("m", 1, (), 0.0) == 0.01
    q.learn(run(0.02, 0.01))  # over the prediction: up by step * quantile
    assert q.margin("m") == pytest.approx(0.009)
    q.learn(run(0.005, 0.01))  # under it: down by step * (1 - quantile)
    assert q.margin("m") == pytest.approx(0.008)
    assert q.predict("m", 1, (), 0.0) == 0.01 * math.exp(q.margin("m"))
    assert q.predict("other", 1, (), 0.0) == 0.01  # each model has its own
    for skipped in (run(1.0, 0.01, warmup=True), run(1.0, 0.01, ok=False), run(1.0, math.nan)):
        q.learn(skipped)
    assert q.margin("m") == pytest.approx(0.008)


def test_it_converges_to_the_quantile_of_a_noisy_latency() -> None:
    q = QuantilePredictor(Fixed(0.01), quantile=0.9, step=0.02)
    q.observe("m", 1, 0.01)
    latencies = [0.01 * (1 + 0.3 * ((i * 7919) % 100) / 100) for i in range(5000)]
    under = 0
    for i, latency in enumerate(latencies):
        predicted = q.predict("m", 1, (), 0.0)
        q.learn(run(latency, predicted))
        under += i >= 1000 and latency <= predicted
    assert under / 4000 == pytest.approx(0.9, abs=0.03)


def test_quantile_predictions_cover_that_fraction_of_executions() -> None:
    executions = trace(lanes=2, rate=250.0, duration=6.0)
    cut = sorted(e.start for e in executions)[len(executions) // 2]
    predictor = QuantilePredictor(OverlapPredictor(), 0.9)
    scored = replay(predictor, executions, lambda e: not e.warmup and e.start >= cut)
    covered = sum(s.execution.latency <= s.predicted for s in scored) / len(scored)
    assert 0.8 < covered < 0.97
    mean = replay(OverlapPredictor(), executions, lambda e: not e.warmup and e.start >= cut)
    assert sum(s.predicted for s in scored) > sum(s.predicted for s in mean)


def test_specs_wrap_any_predictor() -> None:
    default = make_predictor(DEFAULT_PREDICTOR)
    assert isinstance(default, QuantilePredictor) and isinstance(default.inner, OverlapPredictor)
    assert default.quantile == 0.9 and default.step == 0.01 and default.name == "overlap"

    p = make_predictor("overlap:quantile=0.95,device_rate=0,quantile_step=0.02")
    assert isinstance(p, QuantilePredictor) and isinstance(p.inner, OverlapPredictor)
    assert (p.quantile, p.step, p.inner.device_rate) == (0.95, 0.02, 0)

    rls = make_predictor("rls:quantile=0.9")
    assert isinstance(rls, QuantilePredictor) and isinstance(rls.inner, RlsPredictor)
    assert rls.name == "rls"

    # solo takes a quantile of its own (its window's percentile): it gets it, unwrapped.
    solo = make_predictor("solo:quantile=0.9")
    assert isinstance(solo, SoloPredictor) and solo.quantile == 0.9
    assert type(make_predictor("overlap:quantile=none")) is OverlapPredictor

    bad = ("overlap:quantile=2", "overlap:quantile_step=0.02", "rls:quantile=0.9,quantile_step=1")
    for spec in bad:
        with pytest.raises(InvalidConfig):
            make_predictor(spec)


def test_it_hands_profiles_and_the_backend_to_the_inner_predictor() -> None:
    inner = Fixed()
    q = QuantilePredictor(inner)
    q.seed(profile())
    assert q.knows("resnet50") and inner.knows("resnet50")
    backend = SimBackend()
    q.attach(backend)
    assert inner.attached is backend
    # The oracle refuses any backend but sim, through the wrapper too.
    with pytest.raises(InvalidConfig):
        QuantilePredictor(OraclePredictor()).attach(object())


def test_params_describe_a_fresh_inner_predictor() -> None:
    q = QuantilePredictor(OverlapPredictor(device_rate=0.0), 0.8)
    for e in sorted(trace(), key=lambda e: e.end):
        q.learn(e)
    params = q.params()
    assert params["inner"] == Recipe(OverlapPredictor, OverlapPredictor(device_rate=0.0).params())
    clone = q.clone()
    assert clone.params() == params and not clone.inner.knows("resnet50")
    assert clone.margin("resnet50") == 0.0 and q.margin("resnet50") != 0.0
    assert repr(q).startswith("QuantilePredictor(inner=OverlapPredictor(forgetting=0.995, ")
    copied = pickle.loads(pickle.dumps(q))
    assert copied.margin("resnet50") == q.margin("resnet50")
    with pytest.raises(InvalidConfig):
        QuantilePredictor("overlap")  # type: ignore[arg-type]
