"""The learners (least squares, SGD, RLS), the features, and the coarse predictors built on them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from aiosched.errors import InvalidConfig
from aiosched.predict import EwmaPredictor, RlsPredictor, SgdPredictor, StaticPredictor
from aiosched.predict.features import FeatureSpace, peer_spans, realized_segments
from aiosched.predict.interpolate import interpolate
from aiosched.predict.learners import RLS, SGD, fit_least_squares
from aiosched.predict.overlap import OverlapPredictor
from aiosched.predict.solotable import SoloTable
from aiosched.timeline import Execution, Peer, Running
from tests.predict_helpers import running, served, trace

TRUE_W = np.array([0.5, -1.0, 2.0, 0.25])


def linear_stream(n: int, seed: int = 0, noise: float = 0.01) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = np.concatenate([[1.0], rng.normal(size=3)])
        out.append((x, float(TRUE_W @ x) + noise * float(rng.normal())))
    return out


def updates_to_converge(learner: RLS | SGD, tol: float = 0.05) -> int:
    for i, (x, y) in enumerate(linear_stream(5000), 1):
        learner.update(x, y)
        if np.max(np.abs(learner.theta - TRUE_W)) < tol:
            return i
    return 10**9


def test_rls_converges_on_a_linear_target_faster_than_sgd() -> None:
    rls = updates_to_converge(RLS(4, forgetting=1.0))
    sgd = updates_to_converge(SGD(4, learning_rate=0.05))
    assert rls < 20
    assert rls * 5 < sgd < 10**9


def test_rls_with_forgetting_tracks_a_step_change() -> None:
    def error_after_step(forgetting: float) -> float:
        learner = RLS(4, forgetting=forgetting)
        stream = linear_stream(600, seed=1)
        for i, (x, y) in enumerate(stream):
            learner.update(x, y + (1.0 if i >= 300 else 0.0))  # the intercept jumps
        return abs(float(learner.theta[0]) - float(TRUE_W[0] + 1.0))

    assert error_after_step(0.95) < 0.02
    assert error_after_step(1.0) > 0.2  # without forgetting the past outweighs the change


def test_rls_covariance_stays_symmetric_positive_under_forgetting() -> None:
    # Collinear, rarely excited features under strong forgetting: the case that used to
    # drive the covariance indefinite and the weights to infinity.
    learner = RLS(6, forgetting=0.95, delta=10.0)
    rng = random.Random(0)
    for i in range(5000):
        x = np.zeros(6)
        x[0] = x[1] = 1.0
        if i % 50 == 0:
            x[rng.randrange(2, 6)] = rng.choice((1.0, 8.0))
        learner.update(x, 1.0 + 0.01 * rng.random())
        assert np.array_equal(learner.cov, learner.cov.T)
    assert np.linalg.eigvalsh(learner.cov).min() >= -1e-9
    assert np.max(np.abs(learner.theta)) < 10
    assert np.max(np.diagonal(learner.cov)) <= learner.delta * 1.2


def test_rls_grows_new_weights_with_the_prior_variance() -> None:
    learner = RLS(2, forgetting=1.0, delta=10.0)
    for x, _ in linear_stream(50):
        learner.update(x[:2], float(TRUE_W[:2] @ x[:2]))
    learner.grow(4)
    assert learner.cov[3, 3] == 10.0 and learner.weights[2:] == [0.0, 0.0]
    for x, y in linear_stream(50, seed=2):
        learner.update(x, y)
    assert np.allclose(learner.theta, TRUE_W, atol=0.05)


def test_rls_per_weight_forgetting_keeps_a_long_memory_where_asked() -> None:
    learner = RLS(2, forgetting=0.9)
    learner.set_forgetting(0, 1, 1.0)
    for _ in range(200):
        learner.update(np.array([1.0, 1.0]), 1.0)
    # Only the forgetting weight's variance is refreshed each step; the other shrinks.
    assert learner.cov[0, 0] < learner.cov[1, 1]


def test_least_squares_recovers_the_weights_and_leaves_unseen_ones_at_zero() -> None:
    stream = linear_stream(200)
    x = np.vstack([np.concatenate([x, [0.0]]) for x, _ in stream])
    y = np.array([y for _, y in stream])
    w = fit_least_squares(x, y)
    assert np.allclose(w[:4], TRUE_W, atol=0.01)
    assert w[4] == pytest.approx(0.0)


def test_learner_settings_are_validated() -> None:
    with pytest.raises(InvalidConfig):
        RLS(2, forgetting=0.0)
    with pytest.raises(InvalidConfig):
        RLS(2, delta=-1.0)
    with pytest.raises(InvalidConfig):
        SGD(2, learning_rate=2.5)


# -- features ----------------------------------------------------------------------


def test_feature_space_blocks_and_pair_terms() -> None:
    space = FeatureSpace(bias=True)
    x = space.phi([("a", 4), ("b", 1)])
    a, b = space.block("a"), space.block("b")
    assert x[0] == 1.0  # bias
    assert [x[a], x[a + 1], x[a + 2]] == [1.0, 2.0, 4.0]
    assert [x[b], x[b + 1], x[b + 2]] == [1.0, 1.0, 1.0]
    assert x[space.pair_index] == 1.0 and x[space.pair_index + 1] == 2.0  # one pair, sqrt(4*1)
    assert space.dim == 3 + 2 * 3


def execution(
    start: float,
    end: float,
    at_dispatch: tuple[Running, ...],
    overlaps: tuple[Peer, ...],
    ident: int = 1,
) -> Execution:
    return Execution(ident, "m", 1, 0, start, end, 0.01, at_dispatch, overlaps)


def test_peer_spans_place_known_later_and_inside_peers() -> None:
    known = Running(2, "a", 1, 1, -0.5, 0.3)
    e = execution(
        0.0,
        1.0,
        (known,),
        (Peer(2, "a", 1, 0.3), Peer(3, "b", 2, 0.2), Peer(4, "c", 1, 0.4)),
    )
    spans = {s.peer.id: (s.start, s.end, s.known) for s in peer_spans(e, {3: 0.5})}
    assert spans[2] == (0.0, 0.3, True)  # running at dispatch: from the start
    assert spans[3] == pytest.approx((0.5, 0.7, False))  # started and ended inside
    assert spans[4] == pytest.approx((0.6, 1.0, False))  # still running at the end


def test_realized_segments_cover_the_execution() -> None:
    known = Running(2, "a", 1, 1, -0.5, 0.3)
    e = execution(0.0, 1.0, (known,), (Peer(2, "a", 1, 0.3), Peer(4, "c", 1, 0.4)))
    segments = realized_segments(e, {})
    assert sum(s.fraction for s in segments) == pytest.approx(1.0)
    assert [(round(s.fraction, 6), len(s.peers), s.known) for s in segments] == [
        (0.3, 1, 1),
        (0.3, 0, 0),
        (0.4, 1, 0),
    ]


def by_name(x: dict[int, float], pairs: int, blocks: dict[str, int]) -> dict[object, float]:
    """A feature vector keyed by (co-runner, feature) or ("pairs", feature), not by index."""
    names = {i: m for m, i in blocks.items()}
    out: dict[object, float] = {}
    for i, v in x.items():
        if i < pairs + 2:
            out[("pairs", i - pairs)] = v
        else:
            k = (i - pairs - 2) % 3
            out[(names[i - k], k)] = v
    return out


def test_overlap_features_match_the_stretch_by_stretch_definition() -> None:
    # The predictor sums features per peer and per pair of peers, in each target's own
    # layout; that must equal the definition, stretch by stretch, on real multi-lane traces.
    predictor = OverlapPredictor()
    worst = 0.0
    checked = 0
    for e in sorted(trace(lanes=4, rate=400.0, duration=1.0), key=lambda e: e.end):
        if e.ok and e.latency > 0 and e.model in predictor._targets:
            target = predictor._targets[e.model]
            before = dict(target.blocks)
            x, _, shares, _ = predictor._overlap_features(e, target)
            # Blocks are only ever added, each where it was, and the RLS has exactly those.
            assert all(target.blocks[m] == i for m, i in before.items())
            assert target.rls.dim == 5 + 3 * len(target.blocks)
            space = FeatureSpace()
            expected: dict[int, float] = {}
            by_key: dict[tuple[int, int], float] = {}
            peers: dict[str, None] = {}  # the co-runner models, in order of appearance
            for seg in realized_segments(e, predictor._starts):
                key = (len(e.at_dispatch), seg.known)
                by_key[key] = by_key.get(key, 0.0) + seg.fraction
                space.phi(((p.model, p.batch_size) for p in seg.peers), expected, seg.fraction)
                peers.update(dict.fromkeys(p.model for p in seg.peers))
            got = by_name(x, 3, target.blocks)
            want = by_name(expected, 0, {m: space.block(m) for m in peers})
            for k in set(got) | set(want):
                worst = max(worst, abs(got.get(k, 0.0) - want.get(k, 0.0)))
            for k in set(shares) | set(by_key):
                worst = max(worst, abs(shares.get(k, 0.0) - by_key.get(k, 0.0)))
            checked += 1
        predictor.learn(e)
    assert checked > 100
    assert worst < 1e-9


# -- solo table ------------------------------------------------------------------------


def test_interpolate_between_below_and_beyond_known_sizes() -> None:
    levels = {2: 2.0, 4: 3.0}
    sizes = [2, 4]
    assert interpolate(levels, sizes, 3) == 2.5
    assert interpolate(levels, sizes, 1) == 2.0
    assert interpolate(levels, sizes, 8) == 5.0
    assert interpolate({4: 2.0}, [4], 8) == 4.0


def test_solo_table_averages_first_then_follows_with_an_ewma() -> None:
    table = SoloTable(rate=0.5)
    for value in (1.0, 3.0):
        table.observe("m", 1, value)
    assert table.get("m", 1) == 2.0  # plain mean of the first 1 / rate
    table.observe("m", 1, 4.0)
    assert table.get("m", 1) == 3.0  # then an EWMA of weight 0.5
    assert not table.knows("x") and table.get("x", 4) == pytest.approx(0.02)


# -- coarse predictors -----------------------------------------------------------------


def test_static_is_never_updated_by_learn_but_tracks_its_error() -> None:
    executions = sorted(trace(), key=lambda e: e.end)
    half = len(executions) // 2
    static = StaticPredictor()
    static.fit(executions[:half])
    probe = running(("vgg19", 4, 0.01))
    before = static.predict("resnet50", 2, probe, 0.0)
    for e in executions[half:]:
        static.learn(e)
    assert static.predict("resnet50", 2, probe, 0.0) == before
    assert static.error().count == len(served(executions[half:]))


def test_static_fit_learns_that_co_runners_slow_a_batch_down() -> None:
    static = StaticPredictor()
    static.fit(trace())
    alone = static.predict("resnet50", 2, (), 0.0)
    beside = static.predict("resnet50", 2, running(("vgg19", 8, 0.03)), 0.0)
    assert beside > alone * 1.1


def test_ewma_with_alpha_one_is_static_and_smaller_alpha_remembers_co_location() -> None:
    executions = sorted(trace(), key=lambda e: e.end)
    static, ewma1, ewma = StaticPredictor(), EwmaPredictor(alpha=1.0), EwmaPredictor(alpha=0.1)
    for p in (static, ewma1, ewma):
        p.fit(executions)
    probe = running(("vgg19", 4, 0.01))
    assert ewma1.predict("resnet50", 2, probe, 0.0) == pytest.approx(
        static.predict("resnet50", 2, probe, 0.0)
    )
    # Nothing in flight now, but the smoothed signal still remembers the recent co-runners.
    signal = ewma._features(())
    assert signal[0] == pytest.approx(1.0)  # the bias is always there
    assert sum(v for i, v in signal.items() if i >= 3) > 0
    # One more step moves the smoothed signal by alpha towards the new observation.
    before = dict(ewma._smooth)
    ewma.learn(executions[-1])
    x = ewma._space.phi((r.model, r.batch_size) for r in executions[-1].at_dispatch)
    for i in set(before) | set(x):
        assert ewma._smooth.get(i, 0.0) == pytest.approx(
            0.9 * before.get(i, 0.0) + 0.1 * x.get(i, 0.0)
        )


def test_online_coarse_predictors_learn_the_slowdown() -> None:
    for predictor in (SgdPredictor(), RlsPredictor()):
        for e in sorted(trace(), key=lambda e: e.end):
            predictor.learn(e)
        alone = predictor.predict("resnet50", 2, (), 0.0)
        beside = predictor.predict("resnet50", 2, running(("vgg19", 8, 0.03)), 0.0)
        assert beside > alone
        assert predictor.error().mape < 0.2
        assert math.isfinite(beside)
