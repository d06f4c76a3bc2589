"""The ``solo`` predictor after a slowdown: no batch size is left predicted too slow (a size
the policy stops choosing never shows that the device recovered), and a run alone much
faster than an outlier-inflated level takes no other size below its latency."""

from __future__ import annotations

import math
import random

import pytest

from aiosched.experiments.recovery import RecoveryConfig, run_one
from aiosched.predict import SoloPredictor

MS = 1e-3
# Alone on the sim's resnet50, about: batch b takes 2.6 + 1.1 b ms.
ALONE = {b: (2.6 + 1.1 * b) * MS for b in range(1, 9)}


def _warm(p: SoloPredictor, runs: dict[int, int]) -> None:
    """``runs[b]`` runs of each size at its latency alone (+-3 %, deterministic)."""
    rng = random.Random(1)
    for b, n in runs.items():
        for _ in range(n):
            p.observe("m", b, ALONE[b] * rng.uniform(0.97, 1.03))


def test_sizes_that_saw_a_slowdown_and_did_not_run_since_come_back() -> None:
    # Sizes 1-5 ran often before the slowdown, 6-8 seldom; each of 6-8 then ran once 20x
    # slower. After it, the policy runs only sizes it predicts will make the deadline: 1-5.
    p = SoloPredictor()
    _warm(p, {1: 20, 2: 20, 3: 20, 4: 20, 5: 20, 6: 2, 7: 2, 8: 2})
    for b in (6, 7, 8):
        p.observe("m", b, 20 * ALONE[b])
    assert p.predict("m", 8, (), 0.0) > 5 * ALONE[8]  # learned: the slowdown was real
    _warm(p, {5: 20, 4: 5, 3: 5})  # after it, only 1-5 run
    for b in (6, 7, 8):
        # Bounded by what the sizes run since measured: back within the batching shape.
        assert p.predict("m", b, (), 0.0) <= 1.3 * ALONE[b]
        assert p.predict("m", b, (), 0.0) >= ALONE[b]  # and not below what they take
    # Its own window still holds the slow run; running it again says the device is back.
    p.observe("m", 8, ALONE[8])
    assert p.predict("m", 8, (), 0.0) == pytest.approx(ALONE[8], rel=0.1)


def test_a_run_alone_under_an_inflated_level_takes_no_other_size_below_its_latency() -> None:
    p = SoloPredictor()
    _warm(p, {b: 20 for b in range(1, 9)})
    before = {b: p.predict("m", b, (), 0.0) for b in range(1, 9)}
    # Two runs of size 1 caught the slowdown's start: its 90th percentile is inflated.
    p.observe("m", 1, 10 * ALONE[1])
    p.observe("m", 1, 15 * ALONE[1])
    fast = 0.9 * ALONE[1]  # a run alone, a little faster than most
    assert p.predict("m", 1, (), 0.0) > 2.0 * fast
    p.observe("m", 1, fast)  # under half of that level: it shows the device sped up
    assert p.predict("m", 1, (), 0.0) == pytest.approx(before[1], rel=0.05)
    for b in range(2, 9):  # sizes that never saw the slowdown keep their levels
        assert p.predict("m", b, (), 0.0) == pytest.approx(before[b], rel=0.01)


def test_after_a_long_slowdown_one_fast_run_opens_every_size() -> None:
    p = SoloPredictor()
    _warm(p, {b: 20 for b in range(1, 9)})
    for b in range(1, 9):  # every window full of runs 20x slower
        for _ in range(20):
            p.observe("m", b, 20 * ALONE[b])
    p.observe("m", 1, ALONE[1])  # a probe: the device is back
    assert p.predict("m", 1, (), 0.0) == pytest.approx(ALONE[1])
    for b in range(2, 9):  # no slower per item than the probe
        assert p.predict("m", b, (), 0.0) <= b * ALONE[1] * 1.0001


def test_a_size_just_slowed_is_not_lowered_by_an_older_or_lagging_one() -> None:
    p = SoloPredictor()
    _warm(p, {b: 20 for b in range(1, 9)})
    for _ in range(5):  # size 8 has seen the slowdown start
        p.observe("m", 8, 5 * ALONE[8])
    slowed = p.predict("m", 8, (), 0.0)
    assert slowed > 4 * ALONE[8]
    # Size 4 then runs once, slow too; its level still lags (one slow run in 21).
    p.observe("m", 4, 5 * ALONE[4])
    assert p.predict("m", 8, (), 0.0) == pytest.approx(slowed)
    assert p.predict("m", 2, (), 0.0) == pytest.approx(ALONE[2], rel=0.05)  # not raised


def _brute(
    levels: dict[int, float], seen: dict[int, int], now: dict[int, float]
) -> dict[int, float]:
    out = {}
    for b, level in levels.items():
        for a in levels:
            if seen[a] > seen[b]:
                level = min(level, now[a] if a > b else now[a] * b / a)
        out[b] = level
    return out


def test_the_incremental_bounds_are_the_pairwise_ones() -> None:
    from aiosched.predict.solo import _Curve

    rng = random.Random(3)
    for _ in range(50):
        curve, levels, seen, now = _Curve(), {}, {}, {}
        for step in range(100):
            b, level, last = rng.randint(1, 10), rng.uniform(1, 100), rng.uniform(1, 100)
            curve.update(b, level, last)
            levels[b], seen[b], now[b] = level, step, max(level, last)
            expected = _brute(levels, seen, now)
            assert all(math.isclose(curve.bounded[k], v) for k, v in expected.items())


def test_solo_recovers_from_the_slowdown_for_good_with_full_batches() -> None:
    # The recovery experiment's setting, shortened: resnet50 at 600/s (a lane's worth of
    # batches of 5), 50 ms, the device 20x slower for 1 s. Solo used to stop at batches of
    # 5 after it (sizes 6-8 stuck at the slowdown's latency), so Poisson bursts were turned
    # away for the rest of the run.
    cfg = RecoveryConfig(duration=6.0, slow_at=1.0, slow_for=1.0, predictors=("solo",))
    result = run_one(cfg, "solo")
    assert result["largest_batch_after"] == 8
    assert result["recovered_after_s"] is not None and result["recovered_after_s"] <= 2.0
    assert result["met_after_slowdown"] >= 0.99
