"""Scheduler logic on the sim backend, in virtual time (deterministic, no sleeps)."""

from __future__ import annotations

import asyncio
import math
from types import MappingProxyType

import pytest
import torch

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from tests.conftest import ToyPredictor, flat_model, sim


@pytest.mark.sim
async def test_infer_returns_own_output_after_model_latency() -> None:
    async with aiosched.Scheduler(sim(m=flat_model(0.010)), predictor="solo") as sched:
        sched.register("m", max_batch_size=4, warmup=False)
        t0 = sched.now()
        y = await sched.infer("m", 7, deadline=1.0)
        assert y == 7
        assert sched.now() - t0 == pytest.approx(0.010)


@pytest.mark.sim
async def test_concurrent_requests_are_batched_and_each_gets_its_output() -> None:
    async with aiosched.Scheduler(sim(lanes=1)) as sched:
        sched.register("m", max_batch_size=8, warmup=False)
        outs = await asyncio.gather(*(sched.infer("m", i, deadline=1.0) for i in range(20)))
        assert outs == list(range(20))
        snap = sched.snapshot()
        sizes = snap.models["m"].batch_sizes
        assert max(sizes) == 8
        assert sum(b * n for b, n in sizes.items()) == 20


@pytest.mark.sim
async def test_edf_serves_earliest_deadline_first() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        order: list[int] = []

        async def call(i: int, deadline: float) -> None:
            await sched.infer("m", i, deadline=deadline)
            order.append(i)

        blocker = asyncio.create_task(call(0, 10.0))
        await asyncio.sleep(0)  # the blocker occupies the only lane
        await asyncio.gather(blocker, call(1, 5.0), call(2, 1.0), call(3, 3.0))
        assert order == [0, 2, 3, 1]


@pytest.mark.sim
async def test_batch_size_is_the_largest_that_meets_the_head_deadline() -> None:
    # 10 ms + 10 ms per extra item: a 30 ms budget fits a batch of 3, not 4.
    model = flat_model(0.010, per_item=0.010)

    async with aiosched.Scheduler(sim(lanes=1, m=model)) as sched:
        sched.register("m", max_batch_size=8)
        await sched.ready()
        first = asyncio.create_task(sched.infer("m", -1, deadline=1.0))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(sched.infer("m", i, deadline=0.045)) for i in range(6)]
        await first
        await asyncio.gather(*rest, return_exceptions=True)
        execs = [e for e in sched.timeline if not e.warmup]
        assert [e.batch_size for e in execs][:2] == [1, 3]


@pytest.mark.sim
async def test_warmup_seeds_the_predictor_and_admission_rejects_unmeetable() -> None:
    async with aiosched.Scheduler(sim(m=flat_model(0.020))) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()
        assert sched.predictor.knows("m")
        assert sched.predictor.predict("m", 1, (), sched.now()) == pytest.approx(0.020)
        with pytest.raises(aiosched.DeadlineUnmeetable):
            await sched.infer("m", 1, deadline=0.010)
        assert await sched.infer("m", 2, deadline=0.050) == 2
        snap = sched.snapshot().models["m"]
        assert (snap.submitted, snap.rejected, snap.completed) == (2, 1, 1)


@pytest.mark.sim
async def test_queued_request_is_rejected_when_it_turns_infeasible_not_when_the_lane_frees() -> (
    None
):
    slow = flat_model(0.100)

    async with aiosched.Scheduler(sim(lanes=1, m=slow)) as sched:
        sched.register("m", max_batch_size=1)
        await sched.ready()
        blocker = asyncio.create_task(sched.infer("m", 0, deadline=1.0))
        await asyncio.sleep(0.001)  # the blocker is in flight on the only lane
        t0 = sched.now()
        with pytest.raises(aiosched.DeadlineUnmeetable):
            await sched.infer("m", 1, deadline=0.150)
        # Infeasible once fewer than 100 ms remain: at t0 + 50 ms, while the lane is busy.
        assert sched.now() - t0 == pytest.approx(0.050, abs=1e-4)
        assert await blocker == 0


@pytest.mark.sim
async def test_best_effort_runs_late_requests_and_counts_the_miss() -> None:
    async with aiosched.Scheduler(sim(m=flat_model(0.020)), best_effort=True) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()
        assert await sched.infer("m", 5, deadline=0.005) == 5
        snap = sched.snapshot().models["m"]
        assert (snap.completed, snap.missed_deadline, snap.rejected) == (1, 1, 0)


@pytest.mark.sim
async def test_bad_input_fails_at_the_call_and_enqueues_nothing() -> None:
    async with aiosched.Scheduler(sim()) as sched:
        sched.register("m", input_shape=(3,), dtype=torch.float32, warmup=False)
        with pytest.raises(aiosched.UnknownModel):
            await sched.infer("nope", torch.zeros(3), deadline=1.0)
        with pytest.raises(aiosched.InvalidInput, match="shape"):
            await sched.infer("m", torch.zeros(4), deadline=1.0)
        with pytest.raises(aiosched.InvalidInput, match="shape"):
            await sched.infer("m", torch.zeros(1, 3), deadline=1.0)
        with pytest.raises(aiosched.InvalidInput, match="dtype"):
            await sched.infer("m", torch.zeros(3, dtype=torch.int64), deadline=1.0)
        with pytest.raises(aiosched.InvalidInput, match="Tensor"):
            await sched.infer("m", [0.0, 1.0, 2.0], deadline=1.0)
        for bad in (0.0, -1.0, math.nan, "1"):
            with pytest.raises(aiosched.InvalidInput):
                await sched.infer("m", torch.zeros(3), deadline=bad)  # type: ignore[arg-type]
        with pytest.raises(aiosched.InvalidInput):
            await sched.infer("m", torch.zeros(3), deadline=1.0, deadline_at=5.0)
        with pytest.raises(aiosched.DeadlineExceeded):
            await sched.infer("m", torch.zeros(3), deadline_at=sched.now() - 1)
        assert isinstance(aiosched.InvalidInput("x"), aiosched.AioschedError)
        snap = sched.snapshot().models["m"]
        assert (snap.submitted, snap.rejected, snap.queue_depth) == (1, 1, 0)
        y = await sched.infer("m", torch.ones(3), deadline_at=sched.now() + 1)
        assert torch.equal(y, torch.ones(3))


def test_register_rejects_bad_settings() -> None:
    sched = aiosched.Scheduler(sim())
    with pytest.raises(aiosched.InvalidConfig):
        sched.register("m", max_batch_size=0)
    with pytest.raises(aiosched.InvalidConfig):
        sched.register("m", input_shape=(3, -1))
    sched.register("m")
    with pytest.raises(aiosched.InvalidConfig, match="already"):
        sched.register("m")
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler("tpu")
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler(sim(), policy="lifo")
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler(sim(), predictor="no-such-predictor")
    with pytest.raises(aiosched.InvalidConfig, match="own clock"):
        aiosched.Scheduler(sim(), clock=aiosched.PerfClock())


@pytest.mark.sim
async def test_unknown_sim_model_fails_at_register_once_started() -> None:
    async with aiosched.Scheduler(sim()) as sched:
        with pytest.raises(aiosched.InvalidConfig):
            sched.register("not-in-catalogue")


@pytest.mark.sim
async def test_overloaded_when_the_queue_bound_is_reached() -> None:
    async with aiosched.Scheduler(sim(lanes=1)) as sched:
        sched.register("m", max_batch_size=1, max_queue=2, warmup=False)
        tasks = [asyncio.create_task(sched.infer("m", 0, deadline=1.0))]
        await asyncio.sleep(0.001)  # dispatched: the lane is busy
        tasks += [asyncio.create_task(sched.infer("m", i, deadline=1.0)) for i in (1, 2)]
        await asyncio.sleep(0.001)  # two queued: the bound
        with pytest.raises(aiosched.Overloaded):
            await sched.infer("m", 9, deadline=1.0)
        assert await asyncio.gather(*tasks) == [0, 1, 2]


@pytest.mark.sim
async def test_cancelled_queued_request_never_runs() -> None:
    async with aiosched.Scheduler(sim(lanes=1)) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        first = asyncio.create_task(sched.infer("m", 0, deadline=1.0))
        queued = asyncio.create_task(sched.infer("m", 1, deadline=1.0))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await first == 0
        assert await sched.infer("m", 2, deadline=1.0) == 2
        sizes = [e.batch_size for e in sched.timeline]
        assert sizes == [1, 1]  # the cancelled one never ran
        snap = sched.snapshot().models["m"]
        assert (snap.cancelled, snap.completed, snap.queue_depth) == (1, 2, 0)


@pytest.mark.sim
async def test_cancelled_in_flight_request_discards_its_result_and_others_complete() -> None:
    async with aiosched.Scheduler(sim(lanes=1)) as sched:
        sched.register("m", max_batch_size=4, warmup=False)
        tasks = [asyncio.create_task(sched.infer("m", i, deadline=1.0)) for i in range(3)]
        await asyncio.sleep(0.001)  # the batch of 3 is in flight
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == 0 and results[2] == 2
        assert isinstance(results[1], asyncio.CancelledError)
        snap = sched.snapshot().models["m"]
        assert (snap.completed, snap.cancelled, snap.pending) == (2, 1, 0)


@pytest.mark.sim
async def test_aclose_drains_queued_requests_by_default() -> None:
    sched = aiosched.Scheduler(sim(lanes=1))
    await sched.start()
    sched.register("m", max_batch_size=2, warmup=False)
    tasks = [asyncio.create_task(sched.infer("m", i, deadline=10.0)) for i in range(6)]
    await asyncio.sleep(0)
    await sched.aclose()
    assert all(t.done() for t in tasks)
    assert [t.result() for t in tasks] == list(range(6))
    with pytest.raises(aiosched.SchedulerClosed):
        await sched.infer("m", 0, deadline=1.0)
    await sched.aclose()  # idempotent


@pytest.mark.sim
async def test_aclose_without_drain_fails_queued_and_finishes_in_flight() -> None:
    sched = aiosched.Scheduler(sim(lanes=1), drain=False)
    await sched.start()
    sched.register("m", max_batch_size=2, warmup=False)
    tasks = [asyncio.create_task(sched.infer("m", i, deadline=10.0)) for i in range(6)]
    await asyncio.sleep(0.001)  # the first batch of 2 is in flight
    await sched.aclose()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:2] == [0, 1]  # in flight when closing: finished
    assert all(isinstance(r, aiosched.SchedulerClosed) for r in results[2:])
    snap = sched.snapshot().models["m"]
    assert (snap.completed, snap.rejected, snap.pending) == (2, 4, 0)
    assert snap.submitted == 6
    assert sched.closed


@pytest.mark.sim
async def test_infer_before_start_raises() -> None:
    sched = aiosched.Scheduler(sim())
    sched.register("m")
    with pytest.raises(aiosched.SchedulerClosed, match="not started"):
        await sched.infer("m", 0, deadline=1.0)


@pytest.mark.sim
async def test_a_bad_input_fails_alone_not_its_batch() -> None:
    model = flat_model(0.005, fails=lambda x: x == 13)

    async with aiosched.Scheduler(sim(lanes=1, m=model)) as sched:
        sched.register("m", max_batch_size=8, warmup=False)
        results = await asyncio.gather(
            *(sched.infer("m", i, deadline=5.0) for i in range(10, 18)),
            return_exceptions=True,
        )
        for i, r in zip(range(10, 18), results, strict=True):
            if i == 13:
                assert isinstance(r, aiosched.ModelError)
                assert r.__cause__ is not None
            else:
                assert r == i
        snap = sched.snapshot().models["m"]
        assert (snap.completed, snap.failed) == (7, 1)


@pytest.mark.sim
async def test_requests_survive_a_failed_lane_and_fail_typed_when_all_lanes_are_gone() -> None:
    backend = SimBackend(lanes=2, models={"m": flat_model(0.010)}, fail_lanes={0: 0.0})
    async with aiosched.Scheduler(backend) as sched:
        sched.register("m", max_batch_size=2, warmup=False)
        outs = await asyncio.gather(*(sched.infer("m", i, deadline=5.0) for i in range(8)))
        assert outs == list(range(8))
        assert not sched.snapshot().lanes[0].alive
    backend = SimBackend(lanes=1, models={"m": flat_model(0.010)}, fail_lanes={0: 0.0})
    async with aiosched.Scheduler(backend) as sched:
        sched.register("m", warmup=False)
        with pytest.raises(aiosched.LaneFailed):
            await sched.infer("m", 1, deadline=5.0)


@pytest.mark.sim
async def test_timeline_records_overlaps_between_lanes() -> None:
    backend = sim(lanes=2, a=flat_model(0.010), b=flat_model(0.030))
    async with aiosched.Scheduler(backend) as sched:
        sched.register("a", warmup=False)
        sched.register("b", warmup=False)
        await asyncio.gather(sched.infer("a", 1, deadline=1.0), sched.infer("b", 2, deadline=1.0))
        by_model = {e.model: e for e in sched.timeline}
        a, b = by_model["a"], by_model["b"]
        assert [p.model for p in a.overlaps] == ["b"]
        assert [p.model for p in b.overlaps] == ["a"]
        assert a.overlaps[0].overlap == pytest.approx(a.latency)
        assert b.overlaps[0].overlap == pytest.approx(a.latency)
        assert a.latency > 0.010  # interference: slower than solo
        later = [e for e in (a, b) if e.at_dispatch]
        assert len(later) == 1 and later[0].at_dispatch[0].model != later[0].model


@pytest.mark.sim
async def test_snapshot_is_immutable_and_accounts_for_everything() -> None:
    async with aiosched.Scheduler(sim()) as sched:
        sched.register("m", max_batch_size=4, warmup=False)
        await asyncio.gather(*(sched.infer("m", i, deadline=1.0) for i in range(10)))
        snap = sched.snapshot()
        assert isinstance(snap.models, MappingProxyType)
        with pytest.raises(AttributeError):
            snap.time = 0.0  # type: ignore[misc]
        m = snap.models["m"]
        assert m.completed == m.met_deadline == 10
        assert m.latency.count == 10 and m.latency.p50 > 0
        assert m.latency.p50 <= m.latency.p99 <= m.latency.max
        assert snap.total("completed") == 10
        d = snap.to_dict()
        assert d["models"]["m"]["completed"] == 10


@pytest.mark.sim
async def test_sequential_policy_never_runs_two_batches_at_once() -> None:
    backend = sim(lanes=4, a=flat_model(0.010), b=flat_model(0.010))
    async with aiosched.Scheduler(backend, policy="sequential") as sched:
        sched.register("a", warmup=False)
        sched.register("b", warmup=False)
        await asyncio.gather(*(sched.infer(("a", "b")[i % 2], i, deadline=5.0) for i in range(30)))
        assert all(not e.overlaps for e in sched.timeline)


@pytest.mark.sim
async def test_fifo_policy_waits_for_a_fuller_batch_up_to_its_delay() -> None:
    policy = aiosched.FifoPolicy(max_queue_delay=0.005)
    async with aiosched.Scheduler(sim(lanes=1), policy=policy) as sched:
        sched.register("m", max_batch_size=4, warmup=False)
        t0 = sched.now()
        first = asyncio.create_task(sched.infer("m", 0, deadline=1.0))
        await asyncio.sleep(0.002)
        second = asyncio.create_task(sched.infer("m", 1, deadline=1.0))
        assert await asyncio.gather(first, second) == [0, 1]
        (execution,) = list(sched.timeline)
        assert execution.batch_size == 2
        assert execution.start - t0 == pytest.approx(0.005)


@pytest.mark.sim
async def test_fifo_policy_serves_in_arrival_order_whatever_the_deadlines() -> None:
    async with aiosched.Scheduler(sim(lanes=1), policy="fifo") as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        order: list[int] = []

        async def call(i: int, deadline: float) -> None:
            await sched.infer("m", i, deadline=deadline)
            order.append(i)

        await asyncio.gather(call(0, 9.0), call(1, 5.0), call(2, 1.0))
        assert order == [0, 1, 2]


def test_an_hour_of_simulated_traffic_is_deterministic() -> None:
    models = {"a": SimModel(0.004, 0.002, noise=0.05), "b": SimModel(0.006, 0.003, noise=0.05)}

    async def main(seed: int) -> tuple[int, int, float]:
        import random

        rng = random.Random(1)
        backend = SimBackend(lanes=2, models=models, seed=seed)
        async with aiosched.Scheduler(backend) as sched:
            sched.register("a", max_batch_size=8)
            sched.register("b", max_batch_size=8)
            await sched.ready()
            tasks = []
            t = sched.now()
            for _ in range(3600):  # one request a second, in bursts of virtual time
                t += rng.expovariate(1.0)
                await asyncio.sleep(t - sched.now())
                name = rng.choice("ab")
                tasks.append(asyncio.create_task(sched.infer(name, 0, deadline=0.05)))
            await asyncio.gather(*tasks, return_exceptions=True)
            snap = sched.snapshot()
            return snap.total("completed"), snap.total("rejected"), snap.time

    first = simtime.run(main(3))
    assert first == simtime.run(main(3))
    assert first[2] > 3000  # an hour of virtual time
    assert first[0] + first[1] == 3600


@pytest.mark.sim
async def test_good_input_survives_a_failed_batch_whose_bad_caller_went_away() -> None:
    # Found by the Hypothesis property: the batch failed after the bad input's caller had
    # cancelled, leaving one live request; it must be rerun, not blamed.
    model = flat_model(0.010, fails=lambda x: x < 0)

    async with aiosched.Scheduler(sim(lanes=1, m=model)) as sched:
        sched.register("m", max_batch_size=2, warmup=False)
        good = asyncio.create_task(sched.infer("m", 1, deadline=1.0))
        bad = asyncio.create_task(sched.infer("m", -1, deadline=1.0))
        await asyncio.sleep(0.005)  # the batch of two is in flight
        bad.cancel()
        assert await good == 1
        snap = sched.snapshot().models["m"]
        assert (snap.completed, snap.cancelled, snap.failed) == (1, 1, 0)


def test_a_batch_waits_rather_than_make_a_running_one_late() -> None:
    # Co-running doubles latency (10 -> 20 ms). "a" (deadline 15 ms) runs; a "b" request with
    # a 100 ms deadline waits for it instead of pushing it to ~20 ms. A predictor blind to
    # interference (the same toy device, predicted as if co-running were free) lets them overlap.
    models = {
        "a": flat_model(0.010, sensitivity=2.0, pressure=1.0),
        "b": flat_model(0.010, sensitivity=2.0, pressure=1.0),
    }

    async def main(blind: bool) -> tuple[bool, float]:
        backend = SimBackend(lanes=2, models=models)
        predictor = ToyPredictor(factor=1.0 if blind else 2.0)
        async with aiosched.Scheduler(backend, predictor=predictor) as s:
            s.register("a", warmup=False)
            s.register("b", warmup=False)
            a = asyncio.create_task(s.infer("a", 1, deadline=0.015))
            await asyncio.sleep(0.001)
            await s.infer("b", 2, deadline=0.100)
            await a
            ex = {e.model: e for e in s.timeline}
            return ex["a"].end <= ex["a"].start + 0.015, ex["b"].start - ex["a"].end

    met, gap = simtime.run(main(blind=False))
    assert met and gap >= 0  # "b" started once "a" had finished
    met, gap = simtime.run(main(blind=True))
    assert not met and gap < 0  # predicted harmless: they overlap and "a" is late


@pytest.mark.sim
async def test_a_profile_seeds_the_predictor_before_any_run(tmp_path: object) -> None:
    from pathlib import Path

    from aiosched.predict import Profile, ProfilePoint

    assert isinstance(tmp_path, Path)
    profile = Profile(
        backend="sim",
        models={"m": {1: ProfilePoint(1, 0.02, 0.021, 5), 4: ProfilePoint(4, 0.05, 0.052, 5)}},
    )
    path = tmp_path / "p.json"
    profile.save(path)

    async with aiosched.Scheduler(sim(), predictor="solo", profile=path) as sched:
        assert sched.predictor.knows("m")
        assert sched.predictor.predict("m", 4, (), 0.0) == pytest.approx(0.05)
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler(sim(), profile=tmp_path / "missing.json")


# Regressions from a review: each of these once left a caller waiting forever or spun the loop.


@pytest.mark.sim
async def test_requests_requeued_after_a_failed_batch_still_fail_when_every_lane_dies() -> None:
    model = flat_model(0.010, fails=lambda x: x == "bad")

    backend = SimBackend(lanes=1, models={"m": model}, fail_lanes={0: 0.015})
    async with aiosched.Scheduler(backend, predictor="solo") as sched:
        sched.register("m", max_batch_size=8, warmup=False)
        inputs = ["a", "bad", "c", "d", "e"]
        results = await asyncio.gather(
            *(sched.infer("m", x, deadline=10.0) for x in inputs), return_exceptions=True
        )
        assert all(isinstance(r, aiosched.LaneFailed) for r in results)
        assert sched.snapshot().models["m"].queue_depth == 0


@pytest.mark.sim
async def test_close_without_drain_rejects_requests_put_back_after_a_failed_batch() -> None:
    model = flat_model(0.010, fails=lambda x: x == "bad")

    sched = aiosched.Scheduler(sim(lanes=1, m=model), predictor="solo")
    await sched.start()
    sched.register("m", max_batch_size=8, warmup=False)
    inputs = ["a", "bad", "c", "d", "e"]
    tasks = [asyncio.create_task(sched.infer("m", x, deadline=10.0)) for x in inputs]
    await asyncio.sleep(0.0101)  # the batch failed; its halves wait to rerun
    await sched.aclose(drain=False)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # The first half was running at the close and failed again: put back after the
    # close, it is refused as the second half (still queued then) was.
    assert all(isinstance(r, aiosched.SchedulerClosed) for r in results)


@pytest.mark.sim
async def test_an_unknown_model_past_its_deadline_does_not_spin_the_dispatcher() -> None:
    steps = 0

    class Counting(aiosched.EdfPolicy):
        def step(self, view: aiosched.DispatchView) -> float | None:
            nonlocal steps
            steps += 1
            return super().step(view)

    async with aiosched.Scheduler(
        sim(lanes=1, m=flat_model(0.100)), policy=Counting(), predictor="solo"
    ) as sched:
        sched.register("m", max_batch_size=1, warmup=False)  # the predictor knows nothing
        first = asyncio.create_task(sched.infer("m", 0, deadline=1.0))
        await asyncio.sleep(0.001)
        with pytest.raises(aiosched.DeadlineUnmeetable):  # once the first taught the predictor
            await sched.infer("m", 1, deadline=0.005)  # waits 99 ms behind the first
        await first
    assert steps < 20


@pytest.mark.sim
async def test_a_predictor_that_raises_fails_the_requests_instead_of_stranding_them() -> None:
    class Broken(ToyPredictor):
        def predict(self, model: str, batch_size: int, running: object, now: float) -> float:
            raise RuntimeError("predictor bug")

    async with aiosched.Scheduler(sim(), policy="fifo", predictor=Broken()) as sched:
        sched.register("m", warmup=False)
        with pytest.raises(aiosched.AioschedError, match="dispatcher failed"):
            await sched.infer("m", 1, deadline=1.0)


@pytest.mark.sim
async def test_ready_returns_when_every_lane_dies_during_warmup() -> None:
    backend = SimBackend(lanes=1, models={"m": flat_model()}, fail_lanes={0: 0.001})
    async with aiosched.Scheduler(backend) as sched:
        sched.register("m", max_batch_size=4)
        await asyncio.wait_for(sched.ready(), 60.0)


@pytest.mark.sim
async def test_a_cancelled_close_still_finishes_and_a_later_close_waits_for_it() -> None:
    backend = SimBackend(lanes=1, models={"m": flat_model(1.0)})
    sched = aiosched.Scheduler(backend, predictor="solo")
    await sched.start()
    sched.register("m", warmup=False)
    request = asyncio.create_task(sched.infer("m", 1, deadline=100.0))
    await asyncio.sleep(0.1)
    closer = asyncio.create_task(sched.aclose())
    await asyncio.sleep(0.1)
    closer.cancel()
    await asyncio.gather(closer, return_exceptions=True)
    assert not sched.closed  # still draining
    await sched.aclose()
    assert sched.closed and request.done() and request.result() == 1


@pytest.mark.parametrize(
    ("latency", "gap", "lessons"),
    [(0.010, 1e-3, 50), (50e-6, 0.0, 50), (50e-6, 1e-3, 3)],
)
@pytest.mark.sim
async def test_the_predictor_learns_from_a_sample_of_executions_shorter_than_the_learn_gap(
    latency: float, gap: float, lessons: int
) -> None:
    """Executions of a millisecond or more are all learnt from; of a 50 us model, the
    first (so that the watchdog judges it by a prediction) and then one in twenty (a
    lesson costs tens of microseconds: more than such a run)."""

    backend = sim(lanes=1, m=flat_model(latency))
    async with aiosched.Scheduler(backend, predictor="solo", learn_gap=gap) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        for i in range(50):
            await sched.infer("m", i, deadline=1.0)
        count = sched.predictor.error().count
    assert count == lessons


def test_learn_gap_is_validated() -> None:
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler("sim", learn_gap=-1.0)
