"""The contract every registered predictor keeps (new ones are covered automatically)."""

from __future__ import annotations

import asyncio
import copy
import math
import pickle

import pytest

import aiosched
from aiosched import simtime
from aiosched.predict import PREDICTORS, Predictor, StaticPredictor, make_predictor
from tests.conftest import flat_model, sim
from tests.predict_helpers import profile, running, served, trace

NAMES = sorted(PREDICTORS)

# The oracle reads a started sim backend (tests/test_predict_oracle.py covers it there). Alone it
# guesses, knows nothing and ignores profiles, so the contract tests that need it to learn from a
# recorded trace or a profile do not apply; the rest (guesses before learning, the error from the
# base class, clone, pickling, make_predictor, driving a scheduler on sim) do.
_NEEDS_A_BACKEND = pytest.mark.skip(
    reason="oracle: learns nothing from traces or profiles; it reads an attached sim backend"
)
LEARNING = [pytest.param(n, marks=_NEEDS_A_BACKEND) if n == "oracle" else n for n in NAMES]


def queries() -> list[tuple[str, int, tuple[aiosched.Running, ...], float]]:
    return [
        ("resnet50", 1, (), 0.0),
        ("resnet50", 8, running(("vgg19", 4, 0.01)), 0.0),
        ("yolov8n", 3, running(("resnet50", 2, 0.003), ("vgg19", 8, 0.02)), 0.0),
        ("never-seen", 2, running(("resnet50", 1, 0.002)), 0.0),
    ]


def trained(name: str) -> Predictor:
    predictor = PREDICTORS[name]()
    executions = trace()
    if isinstance(predictor, StaticPredictor):
        predictor.fit(executions)
    for e in sorted(executions, key=lambda e: e.end):
        predictor.learn(e)
    return predictor


@pytest.mark.parametrize("name", NAMES)
def test_predictions_are_finite_and_positive_before_any_learning(name: str) -> None:
    predictor = PREDICTORS[name]()
    assert not predictor.knows("resnet50")
    for model, b, in_flight, now in queries():
        value = predictor.predict(model, b, in_flight, now)
        assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("name", LEARNING)
def test_predictions_stay_finite_and_positive_after_learning(name: str) -> None:
    predictor = trained(name)
    assert predictor.knows("resnet50")
    for model, b, in_flight, now in queries():
        value = predictor.predict(model, b, in_flight, now)
        assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("name", NAMES)
def test_learn_does_not_mutate_its_input(name: str) -> None:
    predictor = PREDICTORS[name]()
    executions = sorted(trace(), key=lambda e: e.end)[:200]
    before = copy.deepcopy(executions)
    for e in executions:
        predictor.learn(e)
    assert executions == before


@pytest.mark.parametrize("name", NAMES)
def test_clone_starts_fresh_with_the_same_settings(name: str) -> None:
    predictor = trained(name)
    clone = predictor.clone()
    assert type(clone) is type(predictor)
    assert clone.params() == predictor.params()
    assert not clone.knows("resnet50")
    fresh = PREDICTORS[name]()
    for model, b, in_flight, now in queries():
        assert clone.predict(model, b, in_flight, now) == fresh.predict(model, b, in_flight, now)
    assert clone.error().count == 0


@pytest.mark.parametrize("name", NAMES)
def test_pickling_round_trips(name: str) -> None:
    predictor = trained(name)
    copy_ = pickle.loads(pickle.dumps(predictor))
    for model, b, in_flight, now in queries():
        assert copy_.predict(model, b, in_flight, now) == predictor.predict(
            model, b, in_flight, now
        )
    assert copy_.error() == predictor.error()
    # And it goes on learning like the original.
    extra = served(trace(rate=150.0))[:50]
    for e in extra:
        copy_.learn(e)
        predictor.learn(e)
    for model, b, in_flight, now in queries():
        assert copy_.predict(model, b, in_flight, now) == predictor.predict(
            model, b, in_flight, now
        )


@pytest.mark.parametrize("name", NAMES)
def test_running_error_comes_from_the_base_class(name: str) -> None:
    predictor = trained(name)
    err = predictor.error()
    assert err.count == len(served(trace()))
    assert 0 <= err.mape < 1 and err.mape <= err.p95_ape


@pytest.mark.parametrize("name", LEARNING)
def test_seeding_from_a_profile_makes_models_known(name: str) -> None:
    predictor = PREDICTORS[name]()
    predictor.seed(profile())
    assert predictor.knows("resnet50") and predictor.knows("vgg19")
    solo = profile().latency("vgg19", 4)
    assert predictor.predict("vgg19", 4, (), 0.0) == pytest.approx(solo, rel=0.35)


@pytest.mark.parametrize("name", NAMES)
def test_make_predictor_resolves_the_name(name: str) -> None:
    predictor = make_predictor(name)
    assert isinstance(predictor, PREDICTORS[name]().__class__)
    assert predictor.name == name
    assert repr(predictor).startswith(type(predictor).__name__ + "(")


@pytest.mark.parametrize("name", NAMES)
def test_every_predictor_drives_a_scheduler(name: str) -> None:
    async def main() -> None:
        async with aiosched.Scheduler(sim(lanes=2, m=flat_model(0.005)), predictor=name) as s:
            s.register("m", max_batch_size=4)
            await s.ready()
            results = await asyncio.gather(
                *(s.infer("m", i, deadline=1.0) for i in range(40)), return_exceptions=True
            )
            assert results == list(range(40))
            assert s.predictor.error().count > 0

    simtime.run(main())
