"""Small pieces on their own: queue, timeline, histogram, virtual time, solo predictor, spec."""

from __future__ import annotations

import asyncio
import math
import pickle
import selectors
from typing import Any

import pytest
import torch

import aiosched
from aiosched import simtime
from aiosched.predict import SoloPredictor
from aiosched.queue import ModelQueue, Request
from aiosched.spec import ModelSpec
from aiosched.telemetry.stats import LatencyHistogram, ModelCounters
from aiosched.timeline import Timeline


def _req(loop: asyncio.AbstractEventLoop, deadline: float, arrival: float = 0.0) -> Request:
    return Request("m", None, deadline, arrival, loop.create_future(), ModelCounters())


def test_queue_orders_by_deadline_skips_discarded_and_keeps_isolated_alone() -> None:
    loop = asyncio.new_event_loop()
    try:
        q = ModelQueue(ModelSpec("m", None))
        reqs = [_req(loop, d) for d in (5.0, 1.0, 3.0, 2.0, 4.0)]
        for r in reqs:
            q.push(r)
        assert len(q) == 5
        q.discard(reqs[1])  # deadline 1.0
        assert len(q) == 4
        head = q.peek()
        assert head is not None and head.deadline == 2.0
        reqs[2].group = [reqs[2]]  # deadline 3.0: a retry group of one
        assert [r.deadline for r in q.pop_batch(8)] == [2.0]
        assert [r.deadline for r in q.pop_batch(8)] == [3.0]
        assert [r.deadline for r in q.pop_batch(8)] == [4.0, 5.0]
        assert len(q) == 0 and q.peek() is None
        with pytest.raises(IndexError):
            q.pop()
    finally:
        loop.close()


def test_queue_in_arrival_order_ignores_deadlines() -> None:
    loop = asyncio.new_event_loop()
    try:
        q = ModelQueue(ModelSpec("m", None), order="arrival")
        for d in (5.0, 1.0, 3.0):
            q.push(_req(loop, d))
        assert [r.deadline for r in q.pop_all()] == [5.0, 1.0, 3.0]
    finally:
        loop.close()


def test_timeline_overlaps_count_only_the_shared_time() -> None:
    tl = Timeline()
    a = tl.begin("a", 4, 0, 0.0, 0.010)
    b = tl.begin("b", 2, 1, 0.004, 0.010)
    ea = tl.finish(a, 0.0, 0.010)
    c = tl.begin("c", 1, 0, 0.012, 0.010)
    eb = tl.finish(b, 0.004, 0.016)
    ec = tl.finish(c, 0.012, 0.020)
    assert [(p.model, round(p.overlap, 6)) for p in ea.overlaps] == [("b", 0.006)]
    assert sorted((p.model, round(p.overlap, 6)) for p in eb.overlaps) == [
        ("a", 0.006),
        ("c", 0.004),
    ]
    assert [(p.model, round(p.overlap, 6)) for p in ec.overlaps] == [("b", 0.004)]
    assert ea.predicted == pytest.approx(0.010)
    assert [e.id for e in tl] == [ea.id, eb.id, ec.id]
    assert not tl.in_flight


def test_histogram_percentiles_are_within_two_percent() -> None:
    h = LatencyHistogram()
    for i in range(1, 1001):
        h.record(i / 1000)
    assert h.count == 1000
    assert h.percentile(50) == pytest.approx(0.5, rel=0.02)
    assert h.percentile(99) == pytest.approx(0.99, rel=0.02)
    assert h.percentile(100) == pytest.approx(1.0, rel=0.02)
    assert math.isnan(LatencyHistogram().percentile(50))
    other = LatencyHistogram()
    other.record(2.0)
    h.merge(other)
    assert h.max == 2.0 and h.count == 1001


def test_virtual_time_jumps_instead_of_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether the loop slept is read off the real selector it wraps, not off a wall clock
    # (which a busy machine can stretch): every wait it was asked for must be a poll.
    waits: list[float | None] = []
    real = selectors.DefaultSelector

    class Recording(real):  # type: ignore[valid-type,misc]
        def select(self, timeout: float | None = None) -> Any:
            waits.append(timeout)
            return super().select(timeout)

    monkeypatch.setattr(selectors, "DefaultSelector", Recording)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    assert simtime.run(main()) == pytest.approx(3600)
    assert waits and all(w == 0 for w in waits), waits  # an hour of virtual time, no real wait


def test_solo_predictor_learns_a_high_percentile_and_interpolates() -> None:
    p = SoloPredictor(window=10, quantile=0.9)
    assert not p.knows("m")
    guess = p.predict("m", 4, (), 0.0)
    assert guess > 0 and math.isfinite(guess)
    for v in (0.010, 0.011, 0.012, 0.013, 0.014, 0.015, 0.016, 0.017, 0.018, 0.030):
        p.observe("m", 1, v)
    assert p.knows("m")
    assert 0.017 < p.predict("m", 1, (), 0.0) < 0.030
    p.observe("m", 4, 0.040)
    p1, p4 = p.predict("m", 1, (), 0.0), p.predict("m", 4, (), 0.0)
    assert p1 < p.predict("m", 2, (), 0.0) < p4
    assert p.predict("m", 8, (), 0.0) > p4  # extrapolated past the largest size seen
    clone = p.clone()
    assert not clone.knows("m") and clone.params() == p.params()
    restored = pickle.loads(pickle.dumps(p))
    assert restored.predict("m", 4, (), 0.0) == p4


def test_spec_checks_and_samples() -> None:
    spec = ModelSpec("m", None, input_shape=(2, 3), dtype=torch.float16)
    spec.check(torch.zeros(2, 3, dtype=torch.float16))
    with pytest.raises(aiosched.InvalidInput):
        spec.check(torch.zeros(3, 2, dtype=torch.float16))
    sample = spec.sample()
    assert sample is not None and sample.shape == (2, 3) and sample.dtype == torch.float16
    assert ModelSpec("free", None).sample() is None
    with pytest.raises(aiosched.InvalidConfig):
        ModelSpec("m", None, dtype="float32")  # type: ignore[arg-type]
    with pytest.raises(aiosched.InvalidConfig):
        ModelSpec("m", None, default_deadline=0)


def test_run_uses_uvloop_unless_opted_out() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert aiosched.run(loop_module(), use_uvloop=False).startswith("asyncio")
    assert aiosched.run(loop_module(), use_uvloop=True).startswith("uvloop")


def test_public_api_is_exported() -> None:
    for name in aiosched.__all__:
        assert hasattr(aiosched, name), name
    assert issubclass(aiosched.DeadlineExceeded, aiosched.DeadlineUnmeetable)
    for err in (
        aiosched.UnknownModel,
        aiosched.InvalidInput,
        aiosched.DeadlineUnmeetable,
        aiosched.Overloaded,
        aiosched.SchedulerClosed,
        aiosched.ModelError,
    ):
        assert issubclass(err, aiosched.AioschedError)


def test_backend_errors_are_aiosched_errors() -> None:
    assert issubclass(aiosched.LaneFailure, aiosched.AioschedError)
    assert issubclass(aiosched.DeviceOutOfMemory, aiosched.AioschedError)


def test_policy_authors_get_queues_and_requests_from_the_package() -> None:
    assert aiosched.ModelQueue is ModelQueue and aiosched.Request is Request
    assert {"ModelQueue", "Request", "Backend", "Predictor", "Policy"} <= set(aiosched.__all__)
