"""Hypothesis: whatever the arrivals, deadlines, cancellations, faults and shutdown,
every submitted request resolves exactly once and the counters account for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel

REJECTIONS = (aiosched.DeadlineUnmeetable, aiosched.Overloaded, aiosched.SchedulerClosed)


@dataclass(frozen=True)
class Call:
    at: float
    model: str
    budget: float
    poison: bool
    cancel_after: float | None


calls = st.builds(
    Call,
    at=st.floats(0.0, 0.2),
    model=st.sampled_from(["a", "b"]),
    budget=st.floats(0.002, 0.2),
    poison=st.booleans(),
    cancel_after=st.none() | st.floats(0.0, 0.05),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(calls, min_size=1, max_size=40),
    lanes=st.integers(1, 3),
    policy=st.sampled_from(["edf", "fifo", "sequential"]),
    best_effort=st.booleans(),
    drain=st.booleans(),
    max_queue=st.integers(1, 50),
    seed=st.integers(0, 3),
)
def test_every_request_resolves_exactly_once(
    plan: list[Call],
    lanes: int,
    policy: str,
    best_effort: bool,
    drain: bool,
    max_queue: int,
    seed: int,
) -> None:
    def poisoned(x: object) -> bool:
        return isinstance(x, int) and x < 0

    models = {
        "a": SimModel(0.004, 0.002, noise=0.1, fails=poisoned),
        "b": SimModel(0.010, 0.004, noise=0.1, fails=poisoned),
    }

    async def main() -> None:
        backend = SimBackend(lanes=lanes, models=models, seed=seed)
        sched = aiosched.Scheduler(backend, policy=policy, best_effort=best_effort, drain=drain)
        await sched.start()
        sched.register("a", max_batch_size=4, max_queue=max_queue)
        sched.register("b", max_batch_size=8, max_queue=max_queue)
        t0 = sched.now()
        loop = asyncio.get_running_loop()

        async def one(i: int, call: Call) -> object:
            await asyncio.sleep(max(0.0, t0 + call.at - sched.now()))
            x = -i - 1 if call.poison else i
            task = asyncio.current_task()
            assert task is not None
            if call.cancel_after is not None:
                loop.call_later(call.cancel_after, task.cancel)
            try:
                return await sched.infer(call.model, x, deadline=call.budget)
            except asyncio.CancelledError:
                return "cancelled"
            except aiosched.AioschedError as exc:
                return exc

        tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(plan)]
        await asyncio.sleep(0.25)  # every call has been made
        await sched.aclose()
        outcomes = await asyncio.gather(*tasks)

        results = cancelled = rejected = failed = 0
        for i, (call, out) in enumerate(zip(plan, outcomes, strict=True)):
            if out == "cancelled":
                assert call.cancel_after is not None
                cancelled += 1
            elif isinstance(out, REJECTIONS):
                rejected += 1
            elif isinstance(out, aiosched.ModelError):
                assert call.poison, f"a good input failed: {out!r}"
                failed += 1
            else:
                assert out == (-i - 1 if call.poison else i), "a request got another's output"
                assert not call.poison
                results += 1

        snap = sched.snapshot()
        done = {k: snap.total(k) for k in ("completed", "rejected", "failed", "cancelled")}
        assert snap.total("submitted") == len(plan)
        assert sum(done.values()) == len(plan), "a request was lost or counted twice"
        assert all(m.pending == 0 and m.queue_depth == 0 for m in snap.models.values())
        # A cancel can land after the request was settled (a result set, or a rejection or
        # failure raised into its future): the caller sees the cancel, the counters the outcome.
        late_cancels = cancelled - done["cancelled"]
        assert late_cancels >= 0
        settled_then_cancelled = (
            (done["completed"] - results)
            + (done["rejected"] - rejected)
            + (done["failed"] - failed)
        )
        assert done["completed"] >= results and done["rejected"] >= rejected
        assert done["failed"] >= failed
        assert settled_then_cancelled == late_cancels
        for m in snap.models.values():
            assert m.completed == m.met_deadline + m.missed_deadline
        if best_effort:
            assert not any(isinstance(o, aiosched.DeadlineUnmeetable) for o in outcomes)
        assert not sched.timeline.in_flight

    simtime.run(main())
