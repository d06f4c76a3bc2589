"""``Scheduler.unregister``: a model leaves a running scheduler (sim, in virtual time; one
cpu test for the module's release)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
import torch

import aiosched
from aiosched import ModelSnapshot, ModelUnregistered, UnknownModel
from aiosched.backends.cpu import CpuBackend
from tests.conftest import flat_model, sim


def adds_up(snap: ModelSnapshot) -> bool:
    done = snap.completed + snap.rejected + snap.failed + snap.cancelled
    return snap.submitted == done and snap.pending == 0


def calls(sched: aiosched.Scheduler, model: str, n: int, **kw: Any) -> list[asyncio.Task[Any]]:
    return [asyncio.create_task(sched.infer(model, i, **kw)) for i in range(n)]


@pytest.mark.sim
async def test_drain_serves_what_is_queued_in_deadline_order_then_the_model_is_gone() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        order: list[int] = []

        async def call(i: int, deadline: float) -> None:
            await sched.infer("m", i, deadline=deadline)
            order.append(i)

        tasks = [asyncio.create_task(call(i, d)) for i, d in enumerate([9.0, 5.0, 1.0, 3.0])]
        await asyncio.sleep(0)  # all four queued, none dispatched yet
        final = await sched.unregister("m")
        assert order == [2, 3, 1, 0]  # drained, earliest deadline first
        await asyncio.gather(*tasks)
        assert final.completed == 4 and final.submitted == 4 and adds_up(final)
        assert final.queue_depth == 0 and final.in_flight == 0
        assert sched.models == () and "m" not in sched.snapshot().models
        assert not sched.predictor.knows("m")
        with pytest.raises(UnknownModel, match="was unregistered"):
            await sched.infer("m", 0, deadline=1.0)


@pytest.mark.sim
async def test_without_drain_queued_requests_fail_while_the_running_batch_completes() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=2, warmup=False)
        running = calls(sched, "m", 2, deadline=1.0)
        await asyncio.sleep(0)  # a batch of 2 is on the lane
        queued = calls(sched, "m", 3, deadline=1.0)
        await asyncio.sleep(0)
        final = await sched.unregister("m", drain=False)
        assert await asyncio.gather(*running) == [0, 1]
        for task in queued:
            with pytest.raises(ModelUnregistered):
                await task
        assert (final.completed, final.rejected) == (2, 3) and adds_up(final)
        assert issubclass(ModelUnregistered, UnknownModel)


@pytest.mark.sim
async def test_without_drain_requests_put_back_after_a_failed_batch_do_not_run_again() -> None:
    # The batch of 8 fails (input 3 is bad) after unregister(drain=False) was called: its
    # requests are put back to be bisected, and must fail instead of running again.
    ran: list[int] = []

    def fails(x: Any) -> bool:
        ran.append(x)
        return bool(x == 3)

    model = aiosched.SimModel(base=0.010, per_item=0.0, noise=0.0, exponent=1.0, fails=fails)
    async with aiosched.Scheduler(sim(lanes=1, m=model)) as sched:
        sched.register("m", max_batch_size=8, warmup=False)
        tasks = calls(sched, "m", 8, deadline=5.0)
        await asyncio.sleep(0.001)  # the batch of 8 is running
        final = await sched.unregister("m", drain=False)
        outs = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, ModelUnregistered) for o in outs), outs
        assert [e.batch_size for e in sched.timeline.history] == [8]  # nothing ran again
        assert sorted(ran) == list(range(8))
        assert final.rejected == 8 and adds_up(final)


@pytest.mark.sim
async def test_new_calls_are_refused_at_once_and_the_name_waits_for_the_end() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        queued = calls(sched, "m", 3, deadline=1.0)
        await asyncio.sleep(0)
        leaving = asyncio.create_task(sched.unregister("m"))
        await asyncio.sleep(0)
        with pytest.raises(UnknownModel, match="being unregistered"):
            await sched.infer("m", 9, deadline=1.0)
        with pytest.raises(aiosched.InvalidConfig, match="being unregistered"):
            sched.register("m", warmup=False)
        assert [m.name for m in sched.models] == ["m"]  # still draining, still counted
        final = await leaving
        assert await asyncio.gather(*queued) == [0, 1, 2]
        assert final.submitted == 3  # the refused call was never submitted


@pytest.mark.sim
async def test_registered_again_it_is_a_fresh_model() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010)), predictor="solo") as sched:
        sched.register("m", max_batch_size=2)
        await sched.ready()
        await sched.infer("m", 1, deadline=1.0)
        assert sched.predictor.predict("m", 1, (), sched.now()) == pytest.approx(0.010)
        await sched.unregister("m")
        # Another model under the same name: what was learnt of the first must not carry over.
        sched.register("m", flat_model(0.030), max_batch_size=2)
        assert not sched.snapshot().models["m"].warm  # it warms up again
        assert not sched.predictor.knows("m")
        await sched.ready()
        assert sched.predictor.predict("m", 1, (), sched.now()) == pytest.approx(0.030)
        assert await sched.infer("m", 5, deadline=1.0) == 5
        snap = sched.snapshot().models["m"]
        assert (snap.submitted, snap.completed) == (1, 1)  # fresh counters


@pytest.mark.sim
async def test_other_models_are_served_throughout() -> None:
    async with aiosched.Scheduler(sim(lanes=2, a=flat_model(0.010), b=flat_model(0.010))) as sched:
        sched.register("a", max_batch_size=2, warmup=False)
        sched.register("b", max_batch_size=2, warmup=False)
        a_calls = calls(sched, "a", 10, deadline=5.0)
        b_calls = calls(sched, "b", 10, deadline=5.0)
        await asyncio.sleep(0)
        leaving = asyncio.create_task(sched.unregister("a"))
        await asyncio.sleep(0)
        more_b = calls(sched, "b", 10, deadline=5.0)  # while "a" drains
        final = await leaving
        after = calls(sched, "b", 5, deadline=5.0)  # after "a" has gone
        assert await asyncio.gather(*a_calls) == list(range(10))
        assert await asyncio.gather(*b_calls, *more_b, *after) == [
            *range(10),
            *range(10),
            *range(5),
        ]
        assert final.completed == 10
        snap = sched.snapshot()
        assert list(snap.models) == ["b"] and snap.models["b"].completed == 25


@pytest.mark.sim
async def test_a_warm_up_in_progress_stops_after_its_run_and_what_waited_is_served() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=8)  # 1 cold run + 4 sizes x 2 repeats planned
        waiting = calls(sched, "m", 2, deadline=5.0)
        await asyncio.sleep(0)  # the first warm-up run is on the lane
        ready = asyncio.create_task(sched.ready())
        final = await sched.unregister("m")
        assert await asyncio.gather(*waiting) == [0, 1]
        await ready  # ready() does not wait for a model that left
        warmups = [e for e in sched.timeline if e.warmup]
        assert len(warmups) == 1  # only the run in flight; the rest of the plan was dropped
        assert final.completed == 2 and adds_up(final)


@pytest.mark.sim
async def test_aclose_during_a_drain_resolves_every_request_once() -> None:
    sched = aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010)))
    await sched.start()
    sched.register("m", max_batch_size=1, warmup=False)
    queued = calls(sched, "m", 5, deadline=5.0)
    await asyncio.sleep(0)
    leaving = asyncio.create_task(sched.unregister("m"))
    await asyncio.sleep(0)
    await sched.aclose(drain=False)
    final = await leaving
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert results[0] == 0  # the running batch finished
    assert all(isinstance(r, aiosched.SchedulerClosed) for r in results[1:])
    assert final.completed == 1 and final.rejected == 4 and adds_up(final)
    assert sched.models == ()
    with pytest.raises(aiosched.SchedulerClosed):
        await sched.unregister("m")


@pytest.mark.sim
async def test_cancelling_the_awaiter_does_not_stop_it_and_a_second_call_shares_the_end() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        queued = calls(sched, "m", 3, deadline=5.0)
        await asyncio.sleep(0)
        first = asyncio.create_task(sched.unregister("m"))
        await asyncio.sleep(0)
        second = asyncio.create_task(sched.unregister("m"))
        await asyncio.sleep(0)
        first.cancel()
        final = await second
        assert first.cancelled()
        assert await asyncio.gather(*queued) == [0, 1, 2]
        assert final.completed == 3 and sched.models == ()


@pytest.mark.sim
async def test_a_second_call_without_drain_cuts_the_drain_short() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        queued = calls(sched, "m", 4, deadline=5.0)
        await asyncio.sleep(0)
        first = asyncio.create_task(sched.unregister("m"))
        await asyncio.sleep(0)
        final = await sched.unregister("m", drain=False)
        assert await first == final
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert results[0] == 0
        assert all(isinstance(r, ModelUnregistered) for r in results[1:])


@pytest.mark.sim
async def test_cancelled_callers_count_and_the_last_one_leaving_ends_it() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1, warmup=False)
        running = calls(sched, "m", 1, deadline=5.0)
        await asyncio.sleep(0)
        queued = calls(sched, "m", 2, deadline=5.0)
        await asyncio.sleep(0)
        leaving = asyncio.create_task(sched.unregister("m"))
        await asyncio.sleep(0)
        for task in queued:
            task.cancel()
        final = await leaving
        assert await running[0] == 0
        assert (final.completed, final.cancelled) == (1, 2) and adds_up(final)


@pytest.mark.sim
async def test_bad_calls() -> None:
    sched = aiosched.Scheduler(sim())
    sched.register("m", warmup=False)
    with pytest.raises(UnknownModel, match="unknown model 'x'"):
        await sched.unregister("x")
    final = await sched.unregister("m")  # before start: only the registration goes
    assert final.submitted == 0 and sched.models == ()
    sched.register("m", warmup=False)
    async with sched:
        assert await sched.infer("m", 3, deadline=1.0) == 3
    with pytest.raises(aiosched.SchedulerClosed):
        await sched.unregister("m")


def test_the_cpu_backend_lets_the_module_go() -> None:
    async def main() -> weakref.ref[torch.nn.Module]:
        async with aiosched.Scheduler(CpuBackend(lanes=1, threads_per_lane=1)) as sched:
            model = torch.nn.Linear(4, 2)
            ref = weakref.ref(model)
            sched.register("lin", model, max_batch_size=2, input_shape=(4,), dtype=torch.float32)
            del model
            await sched.ready()
            out = await sched.infer("lin", torch.ones(4), deadline=5.0)
            assert out.shape == (2,)
            final = await sched.unregister("lin")
            assert final.completed == 1
            gc.collect()
            assert ref() is None, gc.get_referrers(ref())
            return ref

    asyncio.run(main())


@pytest.mark.sim
async def test_a_model_with_a_hung_batch_leaves_once_its_requests_are_settled() -> None:
    model = flat_model(0.010, hangs=lambda x: x == "hang")
    async with aiosched.Scheduler(sim(lanes=2, m=model), predictor="oracle") as sched:
        sched.register("m", max_batch_size=2, warmup=False)
        # Put back one by one after the hang, the good input (more urgent) runs first.
        stuck = [
            asyncio.create_task(sched.infer("m", x, deadline=d))
            for x, d in (("hang", 60.0), (1, 30.0))
        ]
        await asyncio.sleep(0)
        leaving = asyncio.create_task(sched.unregister("m"))
        results = await asyncio.gather(*stuck, return_exceptions=True)
        assert isinstance(results[0], aiosched.ModelError) and results[1] == 1
        final = await leaving  # the lane is still stuck in the first run: it is not waited for
        assert (final.completed, final.failed) == (1, 1) and adds_up(final)
        assert sched.models == () and any(lane.stuck for lane in sched.snapshot().lanes)


@pytest.mark.sim
async def test_the_policy_forgets_the_model() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010)), policy="edf") as sched:
        sched.register("m", max_batch_size=2)
        await sched.ready()
        await sched.infer("m", 1, deadline=1.0)
        policy = sched.policy
        assert isinstance(policy, aiosched.EdfPolicy)
        tables = (policy._alone, policy._evidence, policy._size_seen, policy._interval)
        assert all("m" in t for t in tables[:3])
        await sched.unregister("m")
        assert not any("m" in t for t in tables)


@pytest.mark.sim
async def test_a_drain_keeps_deadlines_and_rejects_early_as_ever() -> None:
    async with aiosched.Scheduler(sim(lanes=1, m=flat_model(0.010))) as sched:
        sched.register("m", max_batch_size=1)
        await sched.ready()
        queued = calls(sched, "m", 6, deadline=0.035)  # about three fit, one at a time
        await asyncio.sleep(0)
        final = await sched.unregister("m")
        results = await asyncio.gather(*queued, return_exceptions=True)
        served = [r for r in results if not isinstance(r, BaseException)]
        rejected = [r for r in results if isinstance(r, aiosched.DeadlineUnmeetable)]
        assert served and rejected and len(served) + len(rejected) == 6
        assert final.met_deadline == final.completed == len(served)
        assert final.rejected == len(rejected) and adds_up(final)
