"""The Fleet under a load mix that shifts, in virtual time: placement follows the load,
and no request is lost, moved between devices or reordered on one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.fleet import Fleet, Move

A_COST = (0.002, 0.001)  # base, per item: 6 ms for a batch of 4, 1.5 ms a request
B_COST = (0.004, 0.002)  # 12 ms for a batch of 4, 3 ms a request


def tagged(base: float, per_item: float, device: int) -> SimModel:
    """A noise-free model whose output says which device ran it: ``(device, x)``."""
    return SimModel(
        base=base,
        per_item=per_item,
        exponent=1.0,
        noise=0.0,
        output=lambda x: (device, x),
    )


def devices(n: int) -> list[SimBackend]:
    return [
        SimBackend(lanes=1, models={"a": tagged(*A_COST, d), "b": tagged(*B_COST, d)}, seed=d)
        for d in range(n)
    ]


def phase_of(t: float) -> int:
    """0 while "a" is hot, 1 while "b" is, 2 when it is quiet (seconds from the start)."""
    return 0 if t <= 1.0 else 1 if t <= 2.0 else 2


@dataclass
class Sent:
    model: str
    seq: int
    at: float
    allowed: tuple[int, ...] = ()  # the model's replicas when it was routed
    device: int | None = None
    done: int | None = None  # the order in which results came back


def add_up(snap: aiosched.fleet.FleetSnapshot) -> None:
    for m in snap.models.values():
        assert m.submitted == m.completed + m.rejected + m.failed + m.cancelled, m
        assert m.pending == 0
    for d in snap.devices:
        for m in d.models.values():
            assert m.submitted == m.completed + m.rejected + m.failed + m.cancelled, m


@pytest.mark.sim
async def test_replicas_follow_a_shifting_mix_and_admitted_requests_stay_put() -> None:
    # Phase 1: "a" offered 1.5 devices' worth, "b" a trickle; phase 2: the other way
    # round; phase 3: quiet. The test ticks the rebalance itself (every 100 ms) to know
    # each move's time.
    phases = ((0.0, {"a": 1000.0, "b": 30.0}), (1.0, {"a": 30.0, "b": 500.0}))
    async with Fleet(devices(4), rebalance_every=None) as fleet:
        fleet.register("a", max_batch_size=4, replicas=1, deadline=0.2)
        fleet.register("b", max_batch_size=4, replicas=1, deadline=0.4)
        await fleet.ready()
        t0 = fleet.now()
        sent: list[Sent] = []
        calls: list[asyncio.Task[Any]] = []
        moves: list[tuple[float, Move]] = []
        widest: dict[tuple[int, str], int] = {}
        finished = 0

        async def call(r: Sent) -> Any:
            nonlocal finished
            r.allowed = fleet.placement(r.model)  # infer routes before it first yields
            y = await fleet.infer(r.model, r.seq)
            r.device, x = y
            assert x == r.seq
            r.done, finished = finished, finished + 1
            return y

        async def send(model: str, rate: float, start: float, end: float) -> None:
            await asyncio.sleep(start)
            while fleet.now() - t0 < end:
                r = Sent(model, len(sent), fleet.now() - t0)
                sent.append(r)
                calls.append(asyncio.create_task(call(r)))
                await asyncio.sleep(1.0 / rate)

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.1)
                now = fleet.now() - t0
                moves.extend((now, m) for m in fleet.rebalance())
                for m in ("a", "b"):
                    key = (phase_of(now), m)
                    widest[key] = max(widest.get(key, 0), len(fleet.placement(m)))

        ticker = asyncio.create_task(tick())
        await asyncio.gather(
            *(
                send(model, rate, start, start + 1.0)
                for start, mix in phases
                for model, rate in mix.items()
            )
        )
        await asyncio.sleep(1.0)  # quiet: both shrink back
        outs = await asyncio.gather(*calls, return_exceptions=True)
        ticker.cancel()
        narrowest = {m: len(fleet.placement(m)) for m in ("a", "b")}
        snap = fleet.snapshot()

    # Placement followed the load: "a" grew in phase 1 and shrank in phase 2; "b" grew in
    # phase 2; both are back to one replica when it is quiet.
    grown = {(phase_of(t), m.model) for t, m in moves if m.grow}
    shrunk = {(phase_of(t), m.model) for t, m in moves if not m.grow}
    assert (0, "a") in grown and (1, "b") in grown
    assert (1, "a") in shrunk and ((1, "b") in shrunk or (2, "b") in shrunk)
    assert widest[0, "a"] >= 2 and widest[1, "b"] >= 2
    assert narrowest == {"a": 1, "b": 1}
    assert snap.grown == sum(m.grow for _, m in moves) and snap.shrunk == len(moves) - snap.grown

    # Every request resolved exactly once: a result, or a typed rejection.
    assert len(outs) == len(sent) > 1500
    results = [r for r, out in zip(sent, outs, strict=True) if isinstance(out, tuple)]
    rejected = [out for out in outs if not isinstance(out, tuple)]
    assert all(isinstance(out, aiosched.DeadlineUnmeetable) for out in rejected), rejected[:3]
    assert sorted(r.done for r in results if r.done is not None) == list(range(len(results)))
    for model in ("a", "b"):
        m = snap.models[model]
        mine = [r for r in sent if r.model == model]
        assert m.submitted == len(mine)
        assert m.completed == sum(1 for r in results if r.model == model)
        assert m.rejected == sum(
            1
            for r, out in zip(sent, outs, strict=True)
            if r.model == model and not isinstance(out, tuple)
        )
    add_up(snap)

    # No re-routing: each ran on a device that was one of its replicas when it was sent
    # (replicas were removed meanwhile: the shrinks above).
    assert all(r.device in r.allowed for r in results)
    # No reordering: on one device (one lane, one deadline per model, so earliest
    # deadline first is first come first served) each model's results come back in
    # the order they were sent.
    order = [r.seq for r in sorted(results, key=lambda r: r.done or 0)]
    for d in range(4):
        for model in ("a", "b"):
            here = [s for s in order if sent[s].device == d and sent[s].model == model]
            assert here == sorted(here), (d, model)


@pytest.mark.sim
async def test_requests_queued_on_a_removed_replica_finish_there_in_order() -> None:
    # Forty requests of "a" queue across both devices; device 1's replica is removed at
    # once: what it admitted finishes there, in order, and later requests all go to 0.
    async with Fleet(devices(2), rebalance_every=None) as fleet:
        fleet.register("a", max_batch_size=2, warmup=False)
        first = [asyncio.create_task(fleet.infer("a", i, deadline=10.0)) for i in range(40)]
        await asyncio.sleep(0)
        admitted = [d.total("submitted") for d in fleet.snapshot().devices]
        assert admitted[1] > 0
        fleet.remove_replica("a", 1)
        later = [asyncio.create_task(fleet.infer("a", i, deadline=10.0)) for i in range(40, 60)]
        done: list[tuple[int, int]] = []
        for task in asyncio.as_completed([*first, *later]):
            done.append(await task)
        on_one = [x for d, x in done if d == 1]
        assert len(on_one) == admitted[1] and on_one == sorted(on_one)
        assert all(x < 40 for x in on_one)
        assert sorted(x for _, x in done) == list(range(60))
        snap = fleet.snapshot()
        assert [d.total("submitted") for d in snap.devices] == [admitted[0] + 20, admitted[1]]
        add_up(snap)


# -- any interleaving of placement changes and requests ----------------------------------

op = st.one_of(
    st.tuples(st.just("send"), st.sampled_from("ab"), st.integers(1, 12)),
    st.tuples(st.just("add"), st.sampled_from("ab"), st.integers(0, 2)),
    st.tuples(st.just("remove"), st.sampled_from("ab"), st.integers(0, 2)),
    st.tuples(st.just("rebalance"), st.just(""), st.just(0)),
    st.tuples(st.just("sleep"), st.just(""), st.integers(0, 30)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(op, max_size=25), st.booleans(), st.sampled_from([None, 0.0, 0.005]))
def test_any_interleaving_of_placement_and_requests_resolves_each_once(
    ops: list[tuple[str, str, int]], drain: bool, release_after: float | None
) -> None:
    # With release_after, a rebalance also unregisters models from dormant hosts (and an
    # add onto one being released waits for it): the totals must still add up.
    async def main() -> None:
        fleet = Fleet(devices(3), rebalance_every=None, release_after=release_after)
        await fleet.start()
        fleet.register("a", max_batch_size=4, replicas=1, warmup=False)
        fleet.register("b", max_batch_size=4, replicas=2)
        calls: list[tuple[str, int, asyncio.Task[Any]]] = []
        seq = 0
        for kind, model, n in ops:
            if kind == "send":
                for _ in range(n):
                    task = asyncio.create_task(fleet.infer(model, seq, deadline=0.5))
                    calls.append((model, seq, task))
                    seq += 1
            elif kind == "add":
                fleet.add_replica(model, n)
            elif kind == "remove":
                try:
                    fleet.remove_replica(model, n)
                except aiosched.InvalidConfig:
                    assert fleet.placement(model) == (n,)  # only its last replica stays
            elif kind == "rebalance":
                fleet.rebalance()
            else:
                await asyncio.sleep(n / 1000)
            for m in "ab":
                assert fleet.placement(m)  # never without a replica
        await asyncio.sleep(0)  # every call reaches its device before the close
        await fleet.aclose(drain=drain)
        outs = await asyncio.gather(*(t for _, _, t in calls), return_exceptions=True)
        for (_, x, _), out in zip(calls, outs, strict=True):
            if isinstance(out, tuple):
                assert out[1] == x
            else:
                assert isinstance(out, aiosched.DeadlineUnmeetable | aiosched.SchedulerClosed)
        snap = fleet.snapshot()
        for m in "ab":
            mine = [out for (model, _, _), out in zip(calls, outs, strict=True) if model == m]
            total = snap.models[m]
            assert total.submitted == len(mine)
            assert total.completed == sum(isinstance(o, tuple) for o in mine)
            assert total.rejected + total.cancelled + total.failed == len(mine) - total.completed
        add_up(snap)

    simtime.run(main())
