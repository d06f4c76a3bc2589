"""The contract every registered predictor keeps (new ones are covered automatically).

The clauses live in :func:`aiosched.testing.check_predictor`, the kit users run on their
own predictors; what is checked here beyond it concerns the built-in ones only (the
registry of names, and that they are accurate enough on a recorded trace).
"""

from __future__ import annotations

import pytest

from aiosched.predict import (
    PREDICTORS,
    OverlapPredictor,
    Predictor,
    QuantilePredictor,
    SoloPredictor,
    StaticPredictor,
    make_predictor,
)
from aiosched.testing import check_predictor
from tests.predict_helpers import MODELS, running, served, trace

NAMES = sorted(PREDICTORS)

# The oracle reads a started sim backend (tests/test_predict_oracle.py covers it there). Alone it
# guesses, knows nothing and ignores profiles, so the clauses that need it to learn from a
# recorded trace or a profile do not apply (check_predictor's learns=False).
LEARNING = [n for n in NAMES if n != "oracle"]

# The quantile wrapper, as the specs build it, around predictors of each kind: the default
# (overlap), an online coarse regression, and an offline one (which learns online too).
WRAPPED = ["overlap:quantile=0.9", "rls:quantile=0.9", "static:quantile=0.5,quantile_step=0.05"]


def trained(name: str) -> Predictor:
    predictor = PREDICTORS[name]()
    executions = trace()
    if isinstance(predictor, StaticPredictor):
        predictor.fit(executions)
    for e in sorted(executions, key=lambda e: e.end):
        predictor.learn(e)
    return predictor


@pytest.mark.parametrize("name", NAMES)
def test_every_predictor_keeps_the_contract(name: str) -> None:
    check_predictor(PREDICTORS[name](), learns=name != "oracle")


# A clone is built from params(), so settings other than the defaults must survive it.
OTHER_SETTINGS: dict[str, dict[str, object]] = {
    "solo": {"window": 5, "quantile": 0.5},
    "overlap": {"device_rate": 0.0, "max_corunners": 4},
}


@pytest.mark.parametrize(("name", "settings"), list(OTHER_SETTINGS.items()))
def test_the_contract_holds_with_other_settings(name: str, settings: dict[str, object]) -> None:
    predictor = PREDICTORS[name](**settings)
    check_predictor(predictor)
    assert predictor.clone().params() == predictor.params()


@pytest.mark.parametrize("name", LEARNING)
def test_built_in_predictors_are_accurate_on_a_recorded_trace(name: str) -> None:
    err = trained(name).error()
    assert err.count == len(served(trace()))
    assert 0 <= err.mape < 1 and err.mape <= err.p95_ape


@pytest.mark.parametrize("name", NAMES)
def test_make_predictor_resolves_the_name(name: str) -> None:
    predictor = make_predictor(name)
    assert isinstance(predictor, PREDICTORS[name]().__class__)
    assert predictor.name == name
    assert repr(predictor).startswith(type(predictor).__name__ + "(")


@pytest.mark.parametrize("spec", WRAPPED)
def test_the_quantile_wrapper_keeps_the_contract(spec: str) -> None:
    predictor = make_predictor(spec)
    assert isinstance(predictor, QuantilePredictor)
    check_predictor(predictor)
    assert predictor.clone().params() == predictor.params()


def test_a_wrapper_around_a_wrapper_keeps_the_contract() -> None:
    check_predictor(QuantilePredictor(QuantilePredictor(OverlapPredictor(), 0.5), 0.9))


@pytest.mark.parametrize("spec", [*LEARNING, *WRAPPED])
def test_forget_drops_a_model_as_target_and_as_co_runner_and_spares_the_others(spec: str) -> None:
    predictor = make_predictor(spec)
    executions = trace()
    fresh = predictor.clone()
    inner = predictor.inner if isinstance(predictor, QuantilePredictor) else predictor
    if isinstance(inner, StaticPredictor):
        inner.fit(executions)
    for e in sorted(executions, key=lambda e: e.end):
        predictor.learn(e)
    gone, kept = MODELS[0], MODELS[1]
    assert predictor.knows(gone) and predictor.knows(kept)
    now = max(e.end for e in executions)
    kept_alone = [predictor.predict(kept, b, (), now) for b in (1, 4)]
    beside_gone = running((gone, 4, 0.02), now=now)
    beside_new = running(("never-seen", 4, 0.02), now=now)
    if not isinstance(inner, SoloPredictor):  # (solo does not look at co-runners)
        before = predictor.predict(kept, 2, beside_gone, now)
        assert before != predictor.predict(kept, 2, beside_new, now)

    predictor.forget(gone)
    predictor.forget("never-registered")  # ignored
    assert not predictor.knows(gone)
    # As the batch predicted: the default guess of a predictor that never saw it.
    for b in (1, 4):
        assert predictor.predict(gone, b, (), now) == fresh.predict(gone, b, (), now)
    # As a co-runner: like a model never seen beside the others.
    assert predictor.predict(kept, 2, beside_gone, now) == pytest.approx(
        predictor.predict(kept, 2, beside_new, now)
    )
    # The others keep what they learnt.
    assert [predictor.predict(kept, b, (), now) for b in (1, 4)] == kept_alone


def test_the_oracle_has_nothing_to_forget() -> None:
    predictor = make_predictor("oracle")
    predictor.forget("m")
    assert not predictor.knows("m")
