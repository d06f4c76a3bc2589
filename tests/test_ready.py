"""The index of ready queues: complete, ordered by lower bounds, fair between equals; and the
EDF scan that stops early on it picks what a full scan would."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiosched
from aiosched import simtime
from aiosched.queue import ModelQueue, Request
from aiosched.ready import ReadyQueues
from aiosched.spec import ModelSpec
from aiosched.telemetry.stats import ModelCounters
from tests.conftest import flat_model, sim


class _Future:
    def done(self) -> bool:
        return False


def _request(model: str, deadline: float) -> Request:
    return Request(model, None, deadline, 0.0, _Future(), ModelCounters())  # type: ignore[arg-type]


def _true_key(queue: ModelQueue) -> tuple[float, int] | None:
    head = queue.peek()
    return None if head is None else (queue.key(head), head.seq)


ops = st.lists(
    st.tuples(
        st.sampled_from(["push", "push", "push", "pop", "cancel", "tidy"]),
        st.integers(0, 5),
        st.one_of(st.floats(0.0, 10.0), st.just(math.inf)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.sampled_from(["deadline", "arrival"]))
def test_ordered_yields_every_nonempty_queue_once_with_a_lower_bound(
    script: list[tuple[str, int, float]], order: Any
) -> None:
    ready = ReadyQueues()
    queues = [
        ModelQueue(ModelSpec(name=f"m{i}", model=None, max_batch_size=4), order) for i in range(6)
    ]
    for q in queues[:3]:
        ready.attach(q)  # the others attach later, with requests already queued
    live: list[list[Request]] = [[] for _ in queues]
    for step, (op, i, deadline) in enumerate(script):
        q = queues[i]
        if op == "push":
            r = _request(q.name, deadline)
            q.push(r)
            live[i].append(r)
        elif op == "pop" and q:
            live[i].remove(q.pop())
        elif op == "cancel" and live[i]:
            q.discard(live[i].pop())
        elif op == "tidy":
            ready.tidy()
        if step == len(script) // 2:
            for late in queues[3:]:
                ready.attach(late)
        attached = [q for q in queues if q._ready is ready]
        seen = list(ready.ordered())
        names = [q.name for _, q in seen]
        assert sorted(names) == sorted(q.name for q in attached if q)
        bounds = [b for b, _ in seen]
        assert bounds == sorted(bounds)
        for bound, queue in seen:
            key = _true_key(queue)
            assert key is not None and bound <= key[0]
        ready.tidy()
        first = next(ready.ordered(), None)
        if first is not None:
            keys = [k for q in attached if (k := _true_key(q)) is not None]
            assert _true_key(first[1]) == min(keys)  # exact at the top, ties by arrival
    assert ready.empty() == (not any(q for q in queues if q._ready is ready))


@pytest.mark.sim
async def test_models_without_deadlines_take_turns() -> None:
    """Two models with no deadlines: neither starves (the first registered used to win every
    tie, so the second got 3 requests a second against 909)."""

    async with aiosched.Scheduler(sim(lanes=1, a=flat_model(0.01), b=flat_model(0.01))) as sched:
        sched.register("a", max_batch_size=4, warmup=False)
        sched.register("b", max_batch_size=4, warmup=False)
        served = {"a": 0, "b": 0}
        stop = sched.now() + 1.0

        async def client(model: str) -> None:
            while sched.now() < stop:
                await sched.infer(model, 0)
                served[model] += 1

        await asyncio.gather(*(client(m) for m in ("a", "b") for _ in range(8)))
    assert served["a"] > 100 and served["b"] > 100
    assert 0.8 < served["a"] / served["b"] < 1.25


class _FullScan(aiosched.EdfPolicy):
    """EDF that never stops its scan early: the reference."""

    def _reach(self) -> float:
        return math.inf


_MODELS = {f"m{i}": flat_model(0.001 + 0.0004 * (i % 7), per_item=0.0003) for i in range(50)}


def _outcomes(
    policy: aiosched.EdfPolicy, arrivals: list[tuple[int, float, float]], lanes: int
) -> list[tuple[str, float]]:
    """How and when each request ended (50 models of different speeds, solo predictor)."""

    async def main() -> list[tuple[str, float]]:
        async with aiosched.Scheduler(
            sim(lanes=lanes, **_MODELS), policy=policy, predictor="solo"
        ) as sched:
            for name in _MODELS:
                sched.register(name, max_batch_size=4)
            await sched.ready()
            t0 = sched.now()

            async def call(i: int, budget: float, delay: float) -> tuple[str, float]:
                await asyncio.sleep(delay)
                try:
                    await sched.infer(f"m{i}", 0, deadline=budget)
                except aiosched.DeadlineUnmeetable:
                    return "rejected", round(sched.now() - t0, 9)
                return "served", round(sched.now() - t0, 9)

            return list(await asyncio.gather(*(call(*a) for a in arrivals)))

    return simtime.run(main())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 49), st.floats(0.001, 0.1), st.floats(0.0, 0.05)),
        min_size=1,
        max_size=150,
    ),
    st.integers(1, 3),
)
def test_edf_scan_that_stops_early_decides_as_a_full_scan(
    arrivals: list[tuple[int, float, float]], lanes: int
) -> None:
    """Each request ends the same way, at the same time, whether the scan stops early or
    visits every queue."""
    assert _outcomes(aiosched.EdfPolicy(), arrivals, lanes) == _outcomes(
        _FullScan(), arrivals, lanes
    )


class _ByDeadline(aiosched.EdfPolicy):
    """A scan that stops as if every model took no time: earliest deadline, not least slack."""

    def _reach(self) -> float:
        return 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_heavy_load_where_least_slack_differs_from_earliest_deadline(seed: int) -> None:
    """150 requests in 50 ms on one lane: the reach is what keeps the early stop exact (a
    scan that ignored the models' latencies decides differently here)."""
    rng = random.Random(seed)
    arrivals = [
        (rng.randrange(50), rng.uniform(0.001, 0.1), rng.uniform(0, 0.05)) for _ in range(150)
    ]
    full = _outcomes(_FullScan(), arrivals, 1)
    assert _outcomes(aiosched.EdfPolicy(), arrivals, 1) == full
    assert _outcomes(_ByDeadline(), arrivals, 1) != full
