"""The open-loop driver in virtual time: accounting, latency from intended send, stop and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiosched import simtime
from aiosched.errors import (
    DeadlineExceeded,
    DeadlineUnmeetable,
    InvalidConfig,
    InvalidInput,
    ModelError,
    Overloaded,
    SchedulerClosed,
)
from aiosched.loadgen import (
    LoadResult,
    ModelLoad,
    OpenLoopDriver,
    Progress,
    Schedule,
    Workload,
    run_open_loop,
)
from aiosched.loadgen.result import RequestCounts


def constant_schedule(
    n: int, gap: float, deadline: float = 1.0, models: tuple[str, ...] = ("m",)
) -> Schedule:
    offsets = np.arange(n, dtype=np.float64) * gap
    index = np.arange(n, dtype=np.intp) % len(models)
    return Schedule(offsets, index, np.full(n, deadline), models, n * gap)


def sleeper(seconds: float) -> Callable[[str, Any, float], Coroutine[Any, Any, Any]]:
    async def infer(model: str, x: Any, deadline: float) -> Any:
        await asyncio.sleep(seconds)
        return x

    return infer


def assert_accounted(c: RequestCounts) -> None:
    assert c.sent == c.completed + c.rejected + c.failed + c.cancelled
    assert c.completed == c.met_deadline + c.missed_deadline
    assert c.in_flight == 0


def assert_result_accounted(r: LoadResult) -> None:
    for m in r.models.values():
        assert_accounted(m.counts)
        assert m.latency.count == m.counts.completed
    assert_accounted(r.total().counts)


@pytest.mark.sim
async def test_known_latency_gives_known_percentiles() -> None:
    schedule = Workload.parse("a:3,b:1", "a=50,b=5").schedule("poisson", 200.0, 10.0, seed=3)

    r = await run_open_loop(sleeper(0.010), schedule)
    assert_result_accounted(r)
    total = r.total()
    assert total.counts.sent == len(schedule)
    assert total.counts.completed == len(schedule)
    for q in total.latency.percentiles_s([50, 90, 99, 99.9]):
        assert q == pytest.approx(0.010, rel=1e-3)
    assert total.latency.max_s == pytest.approx(0.010, abs=1e-9)
    assert total.send_lag.max_s == pytest.approx(0.0, abs=1e-9)
    # a: 50 ms deadline, all met; b: 5 ms, all missed
    assert r.models["a"].counts.met_deadline == schedule.counts()["a"]
    assert r.models["b"].counts.missed_deadline == schedule.counts()["b"]
    assert r.send_window_s == 10.0
    assert r.duration_s == pytest.approx(schedule.offsets[-1] + 0.010)
    assert not r.stopped_early
    assert r.config["arrival"] == "poisson"


@pytest.mark.sim(start=1000.0)
async def test_sends_start_exactly_at_their_offsets_and_get_their_deadline() -> None:
    schedule = Workload.parse("a,b", "a=30,b=70").schedule("gamma:cv=3", 300.0, 3.0, seed=9)
    seen: list[tuple[float, str, Any, float]] = []

    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def infer(model: str, x: Any, deadline: float) -> Any:
        seen.append((loop.time() - t0, model, x, deadline))
        return x

    await run_open_loop(infer, schedule, make_input=lambda m: f"input-{m}")
    assert len(seen) == len(schedule)
    assert np.allclose([s[0] for s in seen], schedule.offsets, atol=1e-9)
    models = [schedule.models[i] for i in schedule.model_index]
    assert [s[1] for s in seen] == models
    assert [s[2] for s in seen] == [f"input-{m}" for m in models]
    assert np.allclose([s[3] for s in seen], schedule.deadlines_s)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (DeadlineUnmeetable("x"), "rejected"),
        (DeadlineExceeded("x"), "rejected"),
        (Overloaded("x"), "rejected"),
        (SchedulerClosed("x"), "rejected"),
        (InvalidInput("x"), "failed"),
        (ModelError("x"), "failed"),
        (RuntimeError("x"), "failed"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
@pytest.mark.sim
async def test_errors_are_classified(error: BaseException, outcome: str) -> None:
    schedule = constant_schedule(50, 0.01)

    async def infer(model: str, x: Any, deadline: float) -> Any:
        await asyncio.sleep(0.002)
        raise error

    r = await run_open_loop(infer, schedule)
    c = r.total().counts
    assert_result_accounted(r)
    assert c.sent == 50
    assert getattr(c, outcome) == 50
    assert c.completed == 0
    assert r.total().latency.count == 0
    assert r.total().send_lag.count == 50


OUTCOMES = st.sampled_from(["ok-fast", "ok-slow", "unmeetable", "overloaded", "closed", "boom"])


@settings(max_examples=30, deadline=None)
@given(st.lists(OUTCOMES, min_size=1, max_size=60), st.floats(0.0005, 0.02))
def test_accounting_adds_up(outcomes: list[str], gap: float) -> None:
    schedule = constant_schedule(len(outcomes), gap, deadline=0.01, models=("a", "b", "c"))
    calls = iter(outcomes)

    async def infer(model: str, x: Any, deadline: float) -> Any:
        what = next(calls)
        await asyncio.sleep(0.001)
        if what == "ok-fast":
            return x
        if what == "ok-slow":
            await asyncio.sleep(0.05)
            return x
        if what == "unmeetable":
            raise DeadlineUnmeetable(model)
        if what == "overloaded":
            raise Overloaded(model)
        if what == "closed":
            raise SchedulerClosed(model)
        raise ValueError(model)

    async def main() -> LoadResult:
        return await run_open_loop(infer, schedule)

    r = simtime.run(main())
    assert_result_accounted(r)
    c = r.total().counts
    assert c.sent == len(outcomes)
    assert c.met_deadline == outcomes.count("ok-fast")
    assert c.missed_deadline == outcomes.count("ok-slow")
    assert c.rejected == sum(outcomes.count(k) for k in ("unmeetable", "overloaded", "closed"))
    assert c.failed == outcomes.count("boom")
    assert c.cancelled == 0


@pytest.mark.sim
async def test_saturated_target_shows_queueing_from_intended_send_time() -> None:
    # 200 sends 5 ms apart into a target that serves one at a time in 10 ms:
    # request k finishes at (k + 1) * 10 ms, so its latency is 10 + 5 k ms.
    n, gap, service = 200, 0.005, 0.010
    schedule = constant_schedule(n, gap, deadline=0.1)
    concurrency = [0, 0]

    gate = asyncio.Semaphore(1)

    async def infer(model: str, x: Any, deadline: float) -> Any:
        concurrency[0] += 1
        concurrency[1] = max(concurrency[1], concurrency[0])
        try:
            async with gate:
                await asyncio.sleep(service)
        finally:
            concurrency[0] -= 1
        return x

    r = await run_open_loop(infer, schedule)
    total = r.total()
    assert_result_accounted(r)
    assert total.counts.completed == n
    # open loop: the sends never waited for responses
    assert total.send_lag.max_s == pytest.approx(0.0, abs=1e-9)
    assert concurrency[1] > n // 3
    # latency includes the queueing: a closed-loop client would have seen 10 ms
    p50, p99 = total.latency.percentiles_s([50, 99])
    assert p50 == pytest.approx(service + gap * (n // 2 - 1), rel=0.02)
    assert p99 == pytest.approx(service + gap * (0.99 * n - 1), rel=0.02)
    assert total.latency.max_s == pytest.approx(service + gap * (n - 1), rel=1e-6)
    assert total.counts.met_deadline == sum(1 for k in range(n) if service + gap * k <= 0.1 + 1e-12)
    assert r.duration_s == pytest.approx(n * service)


@pytest.mark.sim
async def test_stop_drains_in_flight_and_reports_everything() -> None:
    schedule = constant_schedule(100, 0.01)  # sends at 0, 10, ..., 990 ms

    driver = OpenLoopDriver(sleeper(0.1), schedule)
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 0.3055, driver.stop)
    r = await driver.run()
    c = r.total().counts
    assert_result_accounted(r)
    assert c.sent == 31  # offsets 0 .. 0.30
    assert c.completed == 31 and c.cancelled == 0
    assert r.stopped_early
    assert r.send_window_s == pytest.approx(0.3055)
    assert r.duration_s == pytest.approx(0.30 + 0.1)
    assert r.total().planned == 100
    assert driver.done
    driver.stop()  # harmless once done


@pytest.mark.sim
async def test_stop_cancels_what_does_not_drain_in_time() -> None:
    schedule = constant_schedule(100, 0.01)

    driver = OpenLoopDriver(sleeper(10.0), schedule, drain_timeout=1.0)
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 0.505, driver.stop)
    r = await driver.run()
    c = r.total().counts
    assert_result_accounted(r)
    assert c.sent == 51
    assert c.cancelled == 51
    assert r.duration_s == pytest.approx(1.505)


@pytest.mark.sim
async def test_end_of_schedule_waits_for_responses_within_drain_timeout() -> None:
    schedule = constant_schedule(10, 0.1)
    durations = iter([0.05] * 9 + [100.0])

    async def infer(model: str, x: Any, deadline: float) -> Any:
        await asyncio.sleep(next(durations))

    r = await run_open_loop(infer, schedule, drain_timeout=2.0)
    c = r.total().counts
    assert_result_accounted(r)
    assert (c.completed, c.cancelled) == (9, 1)
    assert r.duration_s == pytest.approx(0.9 + 2.0)


@pytest.mark.sim
async def test_a_target_that_ignores_cancellation_is_counted_once() -> None:
    schedule = constant_schedule(5, 0.01)
    finished: list[int] = []

    async def stubborn(model: str, x: Any, deadline: float) -> Any:
        try:
            await asyncio.sleep(100.0)
        except asyncio.CancelledError:
            await asyncio.sleep(5.0)  # ignores the first cancellation
        finished.append(1)

    r = await run_open_loop(stubborn, schedule, drain_timeout=0.5)
    await asyncio.sleep(10.0)  # let them finish after the run has ended
    assert len(finished) == 5
    c = r.total().counts
    assert_result_accounted(r)
    assert c.cancelled == 5 and c.completed == 0


@pytest.mark.sim
async def test_cancelling_the_run_leaves_a_complete_result() -> None:
    schedule = constant_schedule(100, 0.01)

    driver = OpenLoopDriver(sleeper(0.05), schedule)
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(0.2505)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = driver.result()
    assert driver.done
    c = r.total().counts
    assert_result_accounted(r)
    assert c.sent == 26
    assert c.completed == 21  # sent by 0.20, done by 0.25
    assert c.cancelled == 5


@pytest.mark.sim
async def test_stop_before_run_sends_nothing() -> None:
    driver = OpenLoopDriver(sleeper(0.01), constant_schedule(10, 0.01))
    driver.stop()
    r = await driver.run()
    assert r.total().counts.sent == 0
    assert r.stopped_early


@pytest.mark.sim
async def test_empty_schedule() -> None:
    empty = Schedule(np.empty(0), np.empty(0, dtype=np.intp), np.empty(0), ("m",), 1.0)

    r = await run_open_loop(sleeper(0.01), empty)
    assert r.total().counts.sent == 0
    assert r.duration_s == 0.0


@pytest.mark.sim
async def test_progress_callback_and_watch() -> None:
    schedule = Workload((ModelLoad("a", 1.0, 0.05),)).schedule("constant", 100.0, 2.0)
    called: list[Progress] = []
    watched: list[Progress] = []

    driver = OpenLoopDriver(
        sleeper(0.02), schedule, on_progress=called.append, progress_interval=0.25
    )

    async def watch() -> None:
        async for p in driver.watch(0.5):
            watched.append(p)

    watcher = asyncio.create_task(watch())
    r = await driver.run()
    await watcher
    assert 8 <= len(called) <= 10
    assert called[-1].done and not called[0].done
    assert called[-1].counts == r.total().counts
    sent = [p.counts.sent for p in called]
    assert sent == sorted(sent)
    mid = called[3]  # at 1.0 s: 101 sent, 99 completed in the last 0.25 s window
    assert mid.elapsed_s == pytest.approx(1.0)
    assert mid.interval_s == pytest.approx(0.25)
    assert mid.sent_rps == pytest.approx(100.0, rel=0.05)
    assert mid.goodput_rps == pytest.approx(100.0, rel=0.05)
    assert mid.latency_p50_s == pytest.approx(0.02, rel=1e-3)
    assert mid.miss_pct == 0.0
    assert mid.fraction == pytest.approx(0.5)
    assert mid.per_model["a"].sent == mid.counts.sent
    assert watched[-1].done
    assert watched[-1].counts == r.total().counts
    assert len(watched) == 5


@pytest.mark.sim
async def test_progress_before_and_after() -> None:
    schedule = constant_schedule(10, 0.01)

    driver = OpenLoopDriver(sleeper(0.001), schedule)
    before = driver.progress()
    await driver.run()
    after = driver.progress()
    assert before.counts.sent == 0 and before.latency_p50_s is None and not before.done
    assert after.counts.completed == 10 and after.done


@pytest.mark.sim
async def test_a_driver_runs_once_and_checks_options() -> None:
    schedule = constant_schedule(3, 0.01)

    driver = OpenLoopDriver(sleeper(0.0), schedule)
    await driver.run()
    with pytest.raises(RuntimeError):
        await driver.run()
    with pytest.raises(InvalidConfig, match="thread sender"):
        await OpenLoopDriver(sleeper(0.0), schedule, sender="thread").run()
    with pytest.raises(InvalidConfig):
        OpenLoopDriver(sleeper(0.0), schedule, sender="fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig):
        OpenLoopDriver(sleeper(0.0), schedule, drain_timeout=-1.0)


def test_thread_sender_on_a_real_clock_accounts_everything() -> None:
    # A few milliseconds of real time: no assertion on how late the sends were.
    schedule = constant_schedule(40, 0.0005)

    async def infer(model: str, x: Any, deadline: float) -> Any:
        return x

    async def main() -> OpenLoopDriver:
        driver = OpenLoopDriver(infer, schedule)
        await driver.run()
        return driver

    driver = asyncio.run(main())
    assert driver.sender == "thread"
    r = driver.result()
    assert_result_accounted(r)
    assert r.total().counts.completed == 40
    assert r.total().send_lag.count == 40
