"""The overlap predictor at scale: each target's RLS covers only the co-runners it has seen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiosched.errors import InvalidConfig
from aiosched.predict.learners import RLS
from aiosched.predict.overlap import OverlapPredictor
from aiosched.timeline import Execution, Peer, Running


def beside(k: int, model: str, corunner: str, b: int = 2) -> Execution:
    """Execution ``k`` of ``model`` with one batch of ``corunner`` beside it from the start."""
    start = k * 0.01
    peer = 1_000_000 + k
    at_dispatch = (Running(peer, corunner, b, 1, start - 0.001, start + 0.003),)
    latency = 0.004 + 0.001 * (k % 3)
    return Execution(
        k,
        model,
        4,
        0,
        start,
        start + latency,
        0.005,
        at_dispatch,
        (Peer(peer, corunner, b, 0.003),),
    )


def test_a_thousand_models_keep_each_target_dimension_to_what_it_has_seen() -> None:
    models = [f"m{i}" for i in range(1000)]
    predictor = OverlapPredictor()
    seen: dict[str, set[str]] = {m: set() for m in models}
    for k in range(6000):
        target = models[k % 1000]
        corunner = models[(k % 1000 + 1 + (k // 1000) % 3) % 1000]  # three neighbours each
        predictor.learn(beside(k, target, corunner, b=1 + k % 4))
        seen[target].add(corunner)
    for model in models:
        t = predictor._targets[model]
        assert set(t.blocks) == seen[model]
        assert t.rls.dim == 5 + 3 * len(seen[model]) == 14
        assert t.rls.cov.shape == (14, 14)
        assert sorted(t.blocks.values()) == [5, 8, 11]
    # The whole predictor holds 1000 small fits, not 1000 fits over every model's block.
    assert sum(t.rls.cov.size for t in predictor._targets.values()) == 1000 * 14 * 14
    for model in models[:10]:
        value = predictor.predict(model, 4, (Running(1, models[-1], 2, 1, 0.0, 0.01),), 0.0)
        assert math.isfinite(value) and value > 0


def test_the_least_recently_seen_co_runners_are_forgotten_beyond_the_bound() -> None:
    predictor = OverlapPredictor(max_corunners=8)
    for k in range(400):
        predictor.learn(beside(k, "t", f"c{k % 40}"))
        target = predictor._targets["t"]
        assert len(target.blocks) <= 8
        assert target.rls.dim == 5 + 3 * len(target.blocks)
        assert sorted(target.blocks.values()) == list(range(5, 5 + 3 * len(target.blocks), 3))
    target = predictor._targets["t"]
    assert list(target.blocks) == [f"c{k % 40}" for k in range(392, 400)]
    assert np.array_equal(target.rls.cov, target.rls.cov.T)
    # A forgotten co-runner counts as one never seen beside it: the mean of those kept.
    forgotten = predictor._contribution(target, "c0", 2)
    kept = [predictor._contribution(target, c, 2) for c in target.blocks]
    assert forgotten == pytest.approx(sum(kept) / len(kept))
    assert OverlapPredictor(max_corunners=8).clone().max_corunners == 8
    with pytest.raises(InvalidConfig):
        OverlapPredictor(max_corunners=0)


def test_rls_drop_leaves_the_marginal_of_the_other_weights() -> None:
    rng = np.random.default_rng(0)
    learner = RLS(6, forgetting=0.99, delta=10.0)
    learner.set_forgetting(0, 2, 0.999)
    for _ in range(50):
        learner.update(rng.normal(size=6), float(rng.normal()))
    theta, cov, lam = learner.theta.copy(), learner.cov.copy(), learner._lam.copy()
    learner.drop([2, 3, 4])
    keep = [0, 1, 5]
    assert np.array_equal(learner.theta, theta[keep])
    assert np.array_equal(learner.cov, cov[np.ix_(keep, keep)])
    assert np.array_equal(learner._lam, lam[keep])
    assert learner.weights == theta[keep].tolist()
    learner.update(np.ones(3), 1.0)  # still a working fit of the smaller dimension
    assert learner.dim == 3


def test_more_co_runners_in_one_execution_than_the_bound_are_trimmed_after_it() -> None:
    predictor = OverlapPredictor(max_corunners=1)
    predictor.learn(beside(0, "t", "a"))
    start = 0.01
    at_dispatch = (
        Running(101, "b", 2, 1, start - 0.001, start + 0.003),
        Running(102, "c", 2, 2, start - 0.001, start + 0.002),
    )
    overlaps = (Peer(101, "b", 2, 0.003), Peer(102, "c", 2, 0.002))
    predictor.learn(Execution(1, "t", 4, 0, start, start + 0.005, 0.005, at_dispatch, overlaps))
    target = predictor._targets["t"]
    assert len(target.blocks) == 1 and target.rls.dim == 8
    assert target.blocks == {"c": 5}
