"""Queue wait (arrival to dispatch) in the scheduler's counters, and the cumulative buckets
that histogram exporters read, on the sim backend in virtual time."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from conftest import flat_model, sim
from hypothesis import given
from hypothesis import strategies as st

import aiosched
from aiosched.errors import ModelError
from aiosched.telemetry.snapshot import HISTOGRAM_BOUNDS
from aiosched.telemetry.stats import LatencyHistogram


async def _call(sched: aiosched.Scheduler, arrivals: dict[int, float], k: int) -> Any:
    arrivals[k] = sched.now()
    return await sched.infer("m", k, deadline=1.0)


def _dispatches(sched: aiosched.Scheduler) -> list[tuple[float, int]]:
    """(start, batch size) of each request-carrying execution, in dispatch order."""
    runs = sorted(sched.timeline.history, key=lambda e: e.id)
    return [(e.start, e.batch_size) for e in runs if not e.warmup]


@pytest.mark.sim
async def test_each_wait_is_dispatch_minus_arrival() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()
        arrivals: dict[int, float] = {}
        tasks = []
        for k in range(9):  # one lane busy 10 ms a batch: later ones queue behind it
            tasks.append(asyncio.create_task(_call(sched, arrivals, k)))
            await asyncio.sleep(0.003)
        await asyncio.gather(*tasks)
        # Same deadline budget, so EDF runs them in arrival order: batch i holds the next ones.
        waits = []
        for start, size in _dispatches(sched):
            for _ in range(size):
                waits.append(start - arrivals[len(waits)])
        wait = sched.snapshot().models["m"].queue_wait

    assert len(waits) == 9 and len(set(waits)) > 3  # a real spread of waits, some queueing
    assert wait.count == 9
    assert wait.max == max(waits)
    assert wait.total == pytest.approx(math.fsum(waits), rel=1e-12, abs=1e-15)
    assert wait.mean == pytest.approx(math.fsum(waits) / 9, rel=1e-12)
    for bound, count in wait.buckets:
        assert sum(w <= bound for w in waits) <= count <= sum(w <= bound * 1.02 for w in waits)


@pytest.mark.sim
async def test_a_retried_request_waits_until_its_first_dispatch_only() -> None:
    bad = flat_model(0.010, fails=lambda x: x == 3)
    async with aiosched.Scheduler(sim(lanes=1, m=bad)) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()
        arrivals: dict[int, float] = {}
        first = asyncio.create_task(_call(sched, arrivals, 0))
        await asyncio.sleep(0.001)
        rest = [asyncio.create_task(_call(sched, arrivals, k)) for k in range(1, 5)]
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        dispatches = _dispatches(sched)
        m = sched.snapshot().models["m"]

    assert isinstance(results[3], ModelError)
    assert m.completed == 4 and m.failed == 1 and m.rejected == 0
    # 0 alone, then 1..4 together (which fails, and is bisected down to 3 alone)
    assert [size for _, size in dispatches[:2]] == [1, 4]
    assert sum(size for _, size in dispatches) > 5
    assert m.queue_wait.count == 5  # one per request, not per dispatch
    expected = [dispatches[0][0] - arrivals[0]]
    expected += [dispatches[1][0] - arrivals[k] for k in range(1, 5)]
    assert m.queue_wait.total == pytest.approx(math.fsum(expected), rel=1e-12, abs=1e-15)
    assert m.queue_wait.max == max(expected)


@pytest.mark.sim
async def test_queue_wait_is_in_the_snapshot_and_its_json() -> None:
    async with aiosched.Scheduler(sim(lanes=1)) as sched:
        sched.register("m", max_batch_size=2)
        await sched.ready()
        idle = sched.snapshot().models["m"].queue_wait
        await asyncio.gather(*(sched.infer("m", k, deadline=1.0) for k in range(5)))
        snap = sched.snapshot()

    assert idle.count == 0 and math.isnan(idle.p50) and idle.buckets == ()  # warm-ups are not
    wait = snap.models["m"].queue_wait
    assert wait.count == 5 and 0.0 <= wait.p50 <= wait.p99 <= wait.max * 1.01
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["models"]["m"]["queue_wait"]["count"] == 5
    assert [b for b, _ in data["models"]["m"]["queue_wait"]["buckets"]] == list(HISTOGRAM_BOUNDS)


seconds = st.floats(min_value=0.0, max_value=30.0, allow_nan=False)


@given(st.lists(seconds, min_size=1, max_size=200), st.lists(seconds, max_size=30))
def test_cumulative_counts_are_monotone_and_within_a_bucket_of_the_truth(
    values: list[float], raw_bounds: list[float]
) -> None:
    h = LatencyHistogram()
    h.record_many(values)
    bounds = sorted(raw_bounds)
    counts = h.cumulative(bounds)
    assert counts == sorted(counts)
    for bound, count in zip(bounds, counts, strict=True):
        # never misses a value at or below the bound; may take some up to 2 % above it
        assert sum(v <= bound for v in values) <= count
        assert count <= sum(v <= bound * 1.0201 + 2e-6 for v in values)
    assert h.cumulative([max(values) * 1.03 + 1e-6]) == [len(values)]
    qs = [0, 10, 50, 90, 99, 99.9, 100]
    assert h.percentiles(qs) == [h.percentile(q) for q in qs]  # one pass, same answers
    exact = sorted(values)
    for q, p in zip(qs, h.percentiles(qs), strict=True):
        truth = exact[max(1, math.ceil(len(values) * q / 100)) - 1]
        assert p == pytest.approx(truth, rel=0.0101, abs=1.1e-6)


def test_cumulative_wants_ascending_bounds() -> None:
    with pytest.raises(ValueError, match="ascending"):
        LatencyHistogram().cumulative([0.1, 0.01])
