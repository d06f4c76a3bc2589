"""Faults, hangs and misuse are contained: each request resolves, the rest go on (issue 10)."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from typing import Any

import pytest

import aiosched
from aiosched import simtime
from aiosched.backends.cpu import CpuBackend
from aiosched.queue import ModelQueue, Request
from aiosched.spec import ModelSpec
from aiosched.telemetry.stats import ModelCounters
from tests.conftest import flat_model, sim


def _runs(sched: aiosched.Scheduler) -> int:
    return sum(1 for e in sched.timeline if not e.warmup)


@pytest.mark.sim
async def test_a_poisoned_batch_is_bisected_not_rerun_one_by_one() -> None:
    """A batch of 8 with one bad input: log2(8) rounds of halves find it, the other seven
    are served, and far fewer runs than eight reruns alone."""
    model = flat_model(0.010, fails=lambda x: x == 5)

    async with aiosched.Scheduler(sim(lanes=1, m=model), predictor="solo") as sched:
        sched.register("m", max_batch_size=8, warmup=False)
        results = await asyncio.gather(
            *(sched.infer("m", i, deadline=10.0) for i in range(8)), return_exceptions=True
        )
        runs = _runs(sched)
    assert [r for i, r in enumerate(results) if i != 5] == [0, 1, 2, 3, 4, 6, 7]
    assert isinstance(results[5], aiosched.ModelError)
    assert runs <= 1 + 2 * 3  # the batch, then two halves per round at most


@pytest.mark.sim
async def test_a_hung_batch_is_given_up_and_its_innocent_requests_served_elsewhere() -> None:
    """One input hangs the model: its lane is reported stuck, the batch's other requests
    run alone on the other lanes, the hanging one hangs a second lane and fails alone,
    and closing does not wait for either."""
    model = flat_model(0.010, hangs=lambda x: x == "hang")

    backend = sim(lanes=3, m=model)
    async with aiosched.Scheduler(backend, predictor="solo", hang_after=0.2) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()  # learnt from its warm-up: hang_after applies (not the 30 s floor)
        inputs = ["a", "hang", "b", "c"]
        t0 = sched.now()
        results = await asyncio.gather(
            *(sched.infer("m", x, deadline=5.0) for x in inputs), return_exceptions=True
        )
        assert results[0] == "a" and results[2:] == ["b", "c"]
        assert isinstance(results[1], aiosched.ModelError)
        assert "hung" in str(results[1])
        snap = sched.snapshot()
        assert sum(lane.stuck for lane in snap.lanes) == 2
        assert snap.models["m"].failed == 1 and snap.models["m"].completed == 3
        assert sched.now() - t0 < 2.0  # found within a few hang_after, not the hour
        # A stuck lane takes no work; the model is still served on the other one.
        assert await sched.infer("m", "d", deadline=1.0) == "d"


@pytest.mark.sim
async def test_a_slow_first_run_is_not_taken_for_a_hang() -> None:
    """A model whose batches take 1.5 s, past the default hang_after of 1 s: before the
    predictor has learnt from a run, its guess (10 ms) says nothing, so the watchdog waits
    30 s; after, 50x the prediction. Every warm-up run and request completes."""
    model = aiosched.SimModel(base=1.5, per_item=0.1, noise=0.0)
    async with aiosched.Scheduler(sim(lanes=2, big=model)) as sched:
        sched.register("big", max_batch_size=4)
        await sched.ready()
        assert all(e.ok for e in sched.timeline.history) and sched.predictor.knows("big")
        assert await sched.infer("big", 1.0, deadline=30.0) is not None
        assert not any(lane.stuck for lane in sched.snapshot().lanes)


@pytest.mark.sim
async def test_a_first_run_that_hangs_is_given_up_after_the_long_floor() -> None:
    model = flat_model(0.010, hangs=lambda x: True)
    async with aiosched.Scheduler(sim(lanes=2, m=model), predictor="solo") as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        t0 = sched.now()
        with pytest.raises(aiosched.ModelError, match="hung"):
            await sched.infer("m", 1, deadline=100.0)
        assert 30.0 <= sched.now() - t0 < 31.0


@pytest.mark.sim
async def test_a_model_slower_than_the_first_run_floor_is_learnt_when_its_run_comes_back() -> None:
    # Every run takes 40 s: the first is given up at 30 s, and when it comes back its
    # latency teaches the predictor, so later requests are judged by a prediction.
    model = aiosched.SimModel(base=40.0, per_item=0.0, noise=0.0)
    async with aiosched.Scheduler(sim(lanes=2, slow=model)) as sched:
        sched.register("slow", max_batch_size=1)
        await sched.ready()
        await asyncio.sleep(50.0)  # the first run is back
        assert sched.predictor.knows("slow")
        outs = [await sched.infer("slow", 1.0, deadline=1000.0) for _ in range(2)]
        assert all(o is not None for o in outs)
        await sched.aclose(drain=False, timeout=0.1)


@pytest.mark.sim
async def test_close_with_a_timeout_resolves_everything_even_if_the_device_never_answers() -> None:
    model = flat_model(0.010, hangs=lambda x: True)

    sched = aiosched.Scheduler(sim(lanes=1, m=model), predictor="solo", hang_after=3600.0)
    await sched.start()
    sched.register("m", max_batch_size=2, warmup=False)
    tasks = [asyncio.create_task(sched.infer("m", i)) for i in range(5)]
    await asyncio.sleep(0.05)
    await sched.aclose(timeout=0.5)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, aiosched.SchedulerClosed) for r in results)
    assert sched.closed
    snap = sched.snapshot()
    m = snap.models["m"]
    assert m.submitted == m.rejected + m.failed == 5


def test_a_batch_given_up_by_a_close_timeout_may_still_come_back() -> None:
    """aclose(timeout=) fails what is in flight and lets the lanes go; when the backend
    then answers for that batch (the sim backend does as it closes), nothing breaks: no
    exception in the loop's callbacks (found by tests/test_properties_ops.py)."""
    model = flat_model(0.010)

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        sched = aiosched.Scheduler(sim(lanes=1, m=model), predictor="solo")
        await sched.start()
        sched.register("m", max_batch_size=2, warmup=False)
        tasks = [asyncio.create_task(sched.infer("m", i)) for i in range(3)]
        await asyncio.sleep(0.001)  # the first batch is running
        await sched.aclose(timeout=0.001)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, aiosched.SchedulerClosed) for r in results)
        m = sched.snapshot().models["m"]
        assert m.submitted == m.rejected + m.failed == 3
        return errors

    errors = simtime.run(main())
    assert not errors, [(c["message"], c.get("exception")) for c in errors]


def test_a_hung_cpu_lane_does_not_hold_up_the_close() -> None:
    """On real threads: the watchdog gives the hung batch up, its caller gets a ModelError,
    and aclose() returns without joining the stuck thread (released after, for the test)."""
    release = threading.Event()

    def model(batch: Any) -> Any:
        if any(x == "hang" for x in batch):
            release.wait(30.0)
        return list(batch)

    async def main() -> None:
        sched = aiosched.Scheduler(CpuBackend(lanes=1), predictor="solo", hang_after=0.2)
        async with sched:
            sched.register("m", model, max_batch_size=1, warmup=False)
            # One run to learn from first: before it, the watchdog's floor is 30 s.
            assert await sched.infer("m", "ok", deadline=30.0) == "ok"
            with pytest.raises(aiosched.ModelError, match="hung"):
                await sched.infer("m", "hang", deadline=30.0)
        assert sched.closed

    try:
        aiosched.run(main(), use_uvloop=False)
    finally:
        release.set()
    for t in threading.enumerate():
        if t.name.startswith("aiosched-"):
            t.join(5.0)


def test_ready_before_start_and_use_from_another_loop_are_typed_errors() -> None:
    sched = aiosched.Scheduler("sim")

    async def early() -> None:
        with pytest.raises(aiosched.SchedulerClosed, match="not started"):
            await sched.ready()

    simtime.run(early())

    async def owner() -> aiosched.Scheduler:
        s = aiosched.Scheduler("sim")
        await s.start()
        s.register("resnet50", warmup=False)
        return s

    loop = asyncio.new_event_loop()
    try:
        started = loop.run_until_complete(owner())
        other = asyncio.new_event_loop()
        try:
            with pytest.raises(aiosched.WrongEventLoop):
                other.run_until_complete(started.infer("resnet50", 0.0, deadline=1.0))
        finally:
            other.close()
        assert started.snapshot().models["resnet50"].submitted == 0  # counters untouched
        loop.run_until_complete(started.aclose())
    finally:
        loop.close()


def test_a_scheduler_left_open_when_its_loop_ends_releases_its_lanes() -> None:
    """``asyncio.run`` ends (or a second Ctrl-C) without ``aclose()``: the dispatcher is
    cancelled, queued callers get SchedulerClosed and the lane threads end."""
    box: dict[str, Any] = {}

    async def main() -> None:
        sched = aiosched.Scheduler(CpuBackend(lanes=1), predictor="solo")
        await sched.start()
        sched.register("m", lambda b: list(b), max_batch_size=1, warmup=False)
        assert await sched.infer("m", 1, deadline=5.0) == 1
        box["sched"] = sched  # never closed

    asyncio.run(main())
    sched = box.pop("sched")
    assert sched.closed
    for t in threading.enumerate():
        if t.name.startswith("aiosched-"):
            t.join(5.0)
            assert not t.is_alive()
    with pytest.raises(aiosched.SchedulerClosed):
        asyncio.run(sched.infer("m", 1, deadline=1.0))


def test_an_unclosed_scheduler_warns_as_asyncio_does() -> None:
    async def main() -> None:
        sched = aiosched.Scheduler("sim")
        await sched.start()
        sched._closed = False  # as if its loop were still running and nobody closed it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sched.__del__()
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        await sched.aclose()

    simtime.run(main())
    gc.collect()


@pytest.mark.sim
async def test_an_unhashable_model_name_is_unknown_not_a_type_error() -> None:
    async with aiosched.Scheduler("sim") as sched:
        with pytest.raises(aiosched.UnknownModel):
            await sched.infer(["resnet50"], 0.0)  # type: ignore[arg-type]


def test_cancelled_requests_do_not_pile_up_in_the_heap() -> None:
    loop = asyncio.new_event_loop()
    try:
        q = ModelQueue(ModelSpec("m", None))
        reqs = [
            Request("m", None, float(i), 0.0, loop.create_future(), ModelCounters())
            for i in range(10_000)
        ]
        for r in reqs:
            q.push(r)
        for r in reqs[:-10]:
            q.discard(r)
        assert len(q) == 10
        assert len(q._heap) <= 2 * len(q) + 64
        assert [r.deadline for r in q.pop_batch(100)] == [float(i) for i in range(9990, 10_000)]
    finally:
        loop.close()
