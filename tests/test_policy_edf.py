"""The default policy's decisions, in virtual time on the sim backend: batches that grow with
load, co-location only where it pays, admission in the policy, probes against lockout."""

from __future__ import annotations

import asyncio
import math

import pytest

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.experiments.recovery import RecoveryConfig, run_one
from aiosched.queue import ModelQueue, Request
from aiosched.spec import ModelSpec
from aiosched.telemetry.stats import ModelCounters
from tests.conftest import ToyPredictor


def _model(noise: float = 0.0, **kw: float) -> SimModel:
    # 2 ms + 1 ms per item: batches of 8 serve 800/s, batches of 1 only 333/s.
    return SimModel(0.002, 0.001, exponent=1.0, noise=noise, **kw)


async def _poisson_run(
    policy: str | aiosched.Policy, rate: float, lanes: int = 1
) -> dict[str, float]:
    import random

    backend = SimBackend(lanes=lanes, models={"m": _model(noise=0.02)}, seed=1)
    rng = random.Random(7)
    met = sent = 0
    async with aiosched.Scheduler(backend, policy=policy, predictor="solo") as sched:
        sched.register("m", max_batch_size=8)
        await sched.ready()
        loop = asyncio.get_running_loop()
        tasks = []

        async def one() -> None:
            nonlocal met
            start = sched.now()
            try:
                await sched.infer("m", 0.0, deadline=0.025)
            except aiosched.DeadlineUnmeetable:
                return
            if sched.now() <= start + 0.025:
                met += 1

        t = 0.0
        start = loop.time()
        while t < 4.0:
            t += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, start + t - loop.time()))
            tasks.append(asyncio.create_task(one()))
            sent += 1
        await asyncio.gather(*tasks)
        sizes = sched.snapshot().models["m"].batch_sizes
    mean = sum(b * n for b, n in sizes.items()) / sum(sizes.values())
    return {"goodput": met / 4.0, "attainment": met / sent, "mean_batch": mean}


def test_batches_grow_with_load_and_goodput_holds_under_overload() -> None:
    at_capacity = simtime.run(_poisson_run("edf", 700.0))
    overloaded = simtime.run(_poisson_run("edf", 1400.0))
    assert at_capacity["attainment"] > 0.95
    assert overloaded["mean_batch"] >= at_capacity["mean_batch"]
    assert overloaded["goodput"] >= 0.9 * at_capacity["goodput"]
    # Without shedding, EDF sizes to the most urgent request's slack and collapses.
    collapsing = simtime.run(_poisson_run(aiosched.EdfPolicy(shed=False), 1400.0))
    assert collapsing["goodput"] < 0.8 * overloaded["goodput"]


@pytest.mark.sim
async def test_a_passed_over_request_is_told_it_was_shed_for_throughput() -> None:
    backend = SimBackend(lanes=1, models={"m": _model()})
    async with aiosched.Scheduler(backend, predictor="solo") as sched:
        sched.register("m", max_batch_size=8)
        await sched.ready()
        # A busy lane, then one nearly expired request and eight with room to spare:
        # serving the first alone would cost the eight theirs.
        blocker = asyncio.create_task(sched.infer("m", 0.0, deadline=1.0))
        await asyncio.sleep(0)
        urgent = asyncio.create_task(sched.infer("m", 0.0, deadline=0.0065))
        rest = [asyncio.create_task(sched.infer("m", 0.0, deadline=0.0145)) for _ in range(8)]
        await blocker
        results = await asyncio.gather(urgent, *rest, return_exceptions=True)
        outcomes = [str(o) if isinstance(o, Exception) else "ok" for o in results]
    assert outcomes[1:] == ["ok"] * 8
    assert "shed for throughput" in outcomes[0]


@pytest.mark.parametrize(("factor", "overlap"), [(2.0, False), (1.9, False), (1.2, True)])
@pytest.mark.sim
async def test_colocation_only_where_it_shortens_the_work(factor: float, overlap: bool) -> None:
    models = {"a": SimModel(0.010, 0.0, noise=0.0, sensitivity=0.0)}

    backend = SimBackend(lanes=2, models=models)
    async with aiosched.Scheduler(backend, predictor=ToyPredictor(factor=factor)) as sched:
        sched.register("a", max_batch_size=1, warmup=False)
        first = asyncio.create_task(sched.infer("a", 1, deadline=1.0))
        await asyncio.sleep(0.001)
        await sched.infer("a", 2, deadline=1.0)
        await first
        max_concurrency = sched.snapshot().max_concurrency
    assert (max_concurrency == 2) is overlap


@pytest.mark.sim
async def test_with_rescue_it_runs_beside_when_waiting_would_cost_the_deadline() -> None:
    # "long" (50 ms) runs; an "a" request (10 ms alone, 19 ms beside, deadline 30 ms) cannot
    # wait the 49 ms for the lane, and starting beside it is not late for "long".
    models = {
        "long": SimModel(0.050, 0.0, noise=0.0, sensitivity=0.0),
        "a": SimModel(0.010, 0.0, noise=0.0, sensitivity=0.0),
    }
    toy = ToyPredictor(factor=1.9, solo={"long": 0.050, "a": 0.010})

    backend = SimBackend(lanes=2, models=models)
    policy = aiosched.EdfPolicy(rescue=True)
    async with aiosched.Scheduler(backend, policy=policy, predictor=toy) as sched:
        sched.register("long", max_batch_size=1, warmup=False)
        sched.register("a", max_batch_size=1, warmup=False)
        first = asyncio.create_task(sched.infer("long", 1, deadline=1.0))
        await asyncio.sleep(0.001)
        start = sched.now()
        await sched.infer("a", 2, deadline=0.030)
        met = sched.now() <= start + 0.030
        await first
        max_concurrency = sched.snapshot().max_concurrency
    assert (max_concurrency, met) == (2, True)


def test_admission_is_the_policy_s() -> None:
    async def main(policy: str) -> type[BaseException] | None:
        backend = SimBackend(lanes=1, models={"m": _model()})
        async with aiosched.Scheduler(backend, policy=policy, predictor="solo") as sched:
            sched.register("m", max_batch_size=4)
            await sched.ready()
            try:
                await sched.infer("m", 0.0, deadline=0.001)  # 3 ms even alone
            except aiosched.AioschedError as exc:
                return type(exc)
            return None

    assert simtime.run(main("edf")) is aiosched.DeadlineUnmeetable
    # The baselines admit everything; the queue then drops what expired (fifo, as Triton)
    # or what cannot make it (sequential, as Clockwork), at dispatch.
    assert simtime.run(main("fifo")) in (None, aiosched.DeadlineExceeded)
    assert simtime.run(main("sequential")) is aiosched.DeadlineUnmeetable


@pytest.mark.parametrize("predictor", ["overlap:quantile=0.9", "solo", "rls"])
def test_admission_does_not_lock_out_after_a_slowdown(predictor: str) -> None:
    cfg = RecoveryConfig(rate=300.0, duration=5.0, slow_at=1.0, slow_for=1.0, window=0.25)
    result = run_one(cfg, predictor)
    assert result["recovered_after_s"] is not None
    assert result["recovered_after_s"] <= 2.0
    assert result["met_after_slowdown"] > 0.9


def test_batch_sizes_are_not_locked_out_after_a_slowdown() -> None:
    # Past its peak the backlog runs large batches during the slowdown; sgd then keeps
    # predicting them slow while it sees only batches of one (batch 1 for good, 45 % met
    # before size probes). A probe twice the kept size now and then corrects it.
    cfg = RecoveryConfig(rate=600.0, duration=6.0, slow_at=2.0, slow_for=1.0, window=0.25)
    result = run_one(cfg, "sgd")
    assert result["recovered_after_s"] is not None
    assert result["recovered_after_s"] <= 2.0
    assert result["mean_batch_after"] > 3


def test_the_first_k_of_a_queue_in_deadline_order_without_removing_them() -> None:
    spec = ModelSpec(name="m", model=None, max_batch_size=8)
    queue = ModelQueue(spec)
    loop = asyncio.new_event_loop()
    try:
        counters = ModelCounters()
        deadlines = [5.0, 1.0, 4.0, 2.0, 9.0, 3.0, 8.0, 7.0, 6.0]
        requests = [
            Request("m", i, d, 0.0, loop.create_future(), counters) for i, d in enumerate(deadlines)
        ]
        for r in requests:
            queue.push(r)
        queue.discard(requests[3])  # deadline 2.0, cancelled
        got = [r.deadline for r in queue.first(4)]
        assert got == [1.0, 3.0, 4.0, 5.0]
        assert len(queue) == 8
        assert [r.deadline for r in queue.first(100)] == sorted(d for d in deadlines if d != 2.0)
        batch = queue.pop_batch_after(2, 3)
        assert [r.deadline for r in batch] == [4.0, 5.0, 6.0]
        assert [r.deadline for r in queue.first(3)] == [1.0, 3.0, 7.0]
        assert all(r.shed for r in queue.first(2))
    finally:
        loop.close()


def test_policy_settings_are_checked() -> None:
    for bad in (
        {"max_concurrency": 0},
        {"colocation_gain": 1.0},
        {"lookahead": 0},
        {"probe_interval": 0.0},
        {"probe_interval": 1.0, "max_probe_interval": 0.5},
    ):
        with pytest.raises(aiosched.InvalidConfig):
            aiosched.EdfPolicy(**bad)  # type: ignore[arg-type]
    assert math.isfinite(aiosched.EdfPolicy().probe_interval)


@pytest.mark.sim
async def test_colocation_stops_when_it_does_not_really_pay() -> None:
    # The predictor thinks co-running is free; on the device it doubles every latency (two
    # at a time then get through no more work than one). The realized gain shows it.
    models = {"a": SimModel(0.010, 0.0, noise=0.0, sensitivity=3.0, pressure=1.0)}

    backend = SimBackend(lanes=2, models=models)
    policy = aiosched.EdfPolicy(explore_every=1e9)
    async with aiosched.Scheduler(backend, policy=policy, predictor=ToyPredictor(factor=1.0)) as s:
        s.register("a", max_batch_size=1, warmup=False)
        calls = []
        for _ in range(400):
            calls.append(asyncio.create_task(s.infer("a", 1, deadline=10.0)))
            await asyncio.sleep(0.004)
        await asyncio.gather(*calls)
        ex = sorted(s.timeline, key=lambda e: e.start)
        first, last = ex[:100], ex[-100:]
        early, late = sum(not e.solo for e in first), sum(not e.solo for e in last)
    assert early > 20  # it tried
    assert late == 0  # and stopped


def test_the_cpu_backend_makes_colocation_pay_for_the_host() -> None:
    from aiosched.backends.cpu import CpuBackend

    assert CpuBackend(lanes=2, threads_per_lane=64).colocation_cost > 0
    assert CpuBackend(lanes=1).colocation_cost == 0
    assert SimBackend(lanes=2).colocation_cost == 0


def test_pairs_keep_two_lanes_busy_under_overload() -> None:
    pressing = SimModel(0.002, 0.001, exponent=1.0, noise=0.0, sensitivity=0.3, pressure=0.3)

    async def main(pairs: bool) -> float:
        backend = SimBackend(lanes=2, models={"m": pressing})
        policy = aiosched.EdfPolicy(pairs=pairs)
        async with aiosched.Scheduler(backend, policy=policy, predictor="overlap") as sched:
            sched.register("m", max_batch_size=8)
            await sched.ready()
            tasks = []
            for _ in range(4000):  # 2000/s: well over what either lane gives alone
                tasks.append(asyncio.create_task(_met(sched, 0.025)))
                await asyncio.sleep(0.0005)
            return sum(await asyncio.gather(*tasks)) / 2.0

    assert simtime.run(main(True)) > 1.05 * simtime.run(main(False))


async def _met(sched: aiosched.Scheduler, deadline: float) -> int:
    start = sched.now()
    try:
        await sched.infer("m", 0.0, deadline=deadline)
    except aiosched.DeadlineUnmeetable:
        return 0
    return int(sched.now() <= start + deadline)


def test_admission_asks_again_before_rejecting_once_the_device_is_back() -> None:
    # The oracle is right at every moment it is asked: slowed 20x, a batch of 1 takes 72 ms,
    # over the 50 ms deadline, so it rejects everything and only probes run. Admission must
    # not go on rejecting on the last probe's prediction once the device is back.
    cfg = RecoveryConfig(duration=5.0, slow_at=1.0, slow_for=1.0)
    result = run_one(cfg, "oracle")
    assert result["recovered_after_s"] == 0.0
    assert result["met_after_slowdown"] >= 0.99


def test_a_backlog_sheds_by_goodput_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three models, bursts at twice the mean rate, past the peak: sized to their heads' last
    # moments, backlogged queues would run batches of one; judged by requests met per second
    # of device time, they pass over those heads and meet more in all.
    from aiosched.loadgen.harness import LoadtestConfig, LoadtestSession
    from aiosched.policy import POLICIES

    monkeypatch.setitem(POLICIES, "edf_by_plan", lambda: aiosched.EdfPolicy(shed_rate=False))

    async def met(policy: str) -> int:
        cfg = LoadtestConfig(
            backend="sim",
            models="resnet50,yolov8n,vit_b16",
            deadline="resnet50=50,yolov8n=30,vit_b16=80",
            arrival="bursty",
            rate=320.0,
            duration=5.0,
            policy=policy,
        )
        async with LoadtestSession(cfg) as session:
            report = await session.run(session.schedule())
        return int(report["requests"]["met_deadline"])

    by_rate = simtime.run(met("edf"))
    by_plan = simtime.run(met("edf_by_plan"))
    assert by_rate > 1.01 * by_plan
