"""The Fleet on sim devices, in virtual time: routing, exactly-once, rebalancing, bad config."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.fleet import Fleet, Move
from aiosched.fleet.config import model_factory
from aiosched.fleet.rebalance import ModelLoad, plan
from aiosched.loadgen import Workload, run_open_loop
from tests.conftest import flat_model

FAST, SLOW = 0.010, 0.045


def device(latency: float, lanes: int = 1, **kw: Any) -> SimBackend:
    return SimBackend(lanes=lanes, models={"m": flat_model(latency)}, **kw)


def submitted(fleet: Fleet) -> list[int]:
    return [d.total("submitted") for d in fleet.snapshot().devices]


def add_up(snap: aiosched.SchedulerSnapshot | Any) -> None:
    """Every submitted request is exactly one of completed, rejected, failed, cancelled."""
    for m in snap.models.values():
        assert m.submitted == m.completed + m.rejected + m.failed + m.cancelled, m


# -- routing ---------------------------------------------------------------------


def test_routes_to_earliest_predicted_completion_then_spills_over() -> None:
    # Device 0 is slow (45 ms), device 1 fast (10 ms): the fast one takes requests while
    # its backlog plus 10 ms beats 45 ms (four of them), the fifth goes to the slow one.
    async def main() -> None:
        async with Fleet([device(SLOW), device(FAST)], predictor="solo") as fleet:
            fleet.register("m", max_batch_size=1)
            await fleet.ready()
            one = await fleet.infer("m", 1, deadline=1.0)
            assert one == 1 and submitted(fleet) == [0, 1]
            outs = await asyncio.gather(*(fleet.infer("m", i, deadline=1.0) for i in range(5)))
            assert outs == list(range(5))
            assert submitted(fleet) == [1, 5]
            add_up(fleet.snapshot())

    simtime.run(main())


def test_when_no_replica_can_meet_it_the_least_loaded_one_rejects() -> None:
    # The fast device has 40 ms of work queued: 30 ms is met by nobody by the fleet's
    # prediction, so the request goes to the idle slow device, whose admission rejects it.
    async def main() -> None:
        async with Fleet([device(SLOW), device(FAST)], predictor="solo") as fleet:
            fleet.register("m", max_batch_size=1)
            await fleet.ready()
            busy = [asyncio.create_task(fleet.infer("m", i, deadline=1.0)) for i in range(4)]
            await asyncio.sleep(0)
            assert submitted(fleet) == [0, 4]
            with pytest.raises(aiosched.DeadlineUnmeetable):
                await fleet.infer("m", 9, deadline=0.030)
            snap = fleet.snapshot()
            assert [d.total("rejected") for d in snap.devices] == [1, 0]
            assert await asyncio.gather(*busy) == [0, 1, 2, 3]

    simtime.run(main())


def test_backlog_balances_identical_devices_and_totals_add_up() -> None:
    async def main() -> None:
        async with Fleet.sim(4, models={"m": flat_model(0.005)}) as fleet:
            fleet.register("m", max_batch_size=4)
            await fleet.ready()
            outs = await asyncio.gather(*(fleet.infer("m", i, deadline=0.5) for i in range(40)))
            assert outs == list(range(40))
            snap = fleet.snapshot()
            assert submitted(fleet) == [10, 10, 10, 10]
            total = snap.models["m"]
            assert total.submitted == total.completed == total.met_deadline == 40
            assert total.latency.count == 40
            assert snap.backlog == (0.0, 0.0, 0.0, 0.0)
            assert snap.to_dict()["placement"] == {"m": [0, 1, 2, 3]}

    simtime.run(main())


# -- every request resolves exactly once ---------------------------------------------


async def _outcomes(calls: list[asyncio.Task[Any]]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


@pytest.mark.parametrize("drain", [True, False])
def test_close_with_queued_requests_resolves_each_once(drain: bool) -> None:
    async def main() -> None:
        fleet = Fleet.sim(3, lanes=1, models={"m": flat_model(0.010)})
        await fleet.start()
        fleet.register("m", max_batch_size=2)
        await fleet.ready()
        calls = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(60)]
        await asyncio.sleep(0.015)
        calls[50].cancel()
        await fleet.aclose(drain=drain)
        outs = await _outcomes(calls)
        assert isinstance(outs[50], asyncio.CancelledError)
        for i, out in enumerate(outs):
            assert out == i or isinstance(out, aiosched.SchedulerClosed | asyncio.CancelledError), (
                out
            )
        closed = sum(isinstance(o, aiosched.SchedulerClosed) for o in outs)
        assert (closed == 0) if drain else (closed > 0)
        snap = fleet.snapshot()
        add_up(snap)
        assert snap.closed and snap.models["m"].submitted == 60
        assert snap.models["m"].pending == 0
        with pytest.raises(aiosched.SchedulerClosed):
            await fleet.infer("m", 0, deadline=1.0)

    simtime.run(main())


def test_a_device_that_loses_every_lane_is_routed_around() -> None:
    # Device 1's only lane breaks at 20 ms: what it holds fails with LaneFailed, once;
    # the fleet stops routing there and the rest is served by devices 0 and 2.
    async def main() -> None:
        devices = [device(0.010), device(0.010, fail_lanes={0: 0.02}), device(0.010)]
        async with Fleet(devices, predictor="solo") as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            first = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(9)]
            outs = await _outcomes(first)
            lost = [o for o in outs if isinstance(o, aiosched.LaneFailed)]
            assert lost and all(o == i for i, o in enumerate(outs) if o not in lost)
            assert fleet.placement("m") == (0, 2)
            later = await asyncio.gather(*(fleet.infer("m", i, deadline=10.0) for i in range(6)))
            assert later == list(range(6))
            snap = fleet.snapshot()
            assert snap.live == (True, False, True)
            assert snap.devices[1].total("failed") == len(lost)
            assert snap.devices[1].total("submitted") == 3
            add_up(snap)

    simtime.run(main())


def test_a_device_that_loses_one_lane_serves_everything_on_the_other() -> None:
    async def main() -> None:
        devices = [device(0.010, lanes=2, fail_lanes={0: 0.015}), device(0.010, lanes=2)]
        async with Fleet(devices) as fleet:
            fleet.register("m", max_batch_size=2, warmup=False)
            outs = await asyncio.gather(*(fleet.infer("m", i, deadline=10.0) for i in range(30)))
            assert outs == list(range(30))
            assert fleet.snapshot().live == (True, True)

    simtime.run(main())


def test_a_model_whose_only_device_fails_moves_to_a_live_one() -> None:
    async def main() -> None:
        devices = [device(0.010, fail_lanes={0: 0.0}), device(0.010)]
        async with Fleet(devices, rebalance_every=None) as fleet:
            fleet.register("m", devices=[0], warmup=False)
            with pytest.raises(aiosched.LaneFailed):
                await fleet.infer("m", 1, deadline=1.0)
            assert fleet.placement("m") == (1,)
            assert await fleet.infer("m", 2, deadline=1.0) == 2

    simtime.run(main())


# -- placement and rebalancing --------------------------------------------------------


def test_removing_a_replica_drains_it_in_order_and_routes_elsewhere() -> None:
    # 10 ms on device 0, 13 ms on device 1 (one lane, batches of one): a completion time
    # says which device served a request. Requests queued on device 1 when it is removed
    # run there, in their order; later ones go to device 0 only.
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], rebalance_every=None) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            t0 = fleet.now()
            done: list[tuple[float, int]] = []

            async def call(i: int) -> None:
                assert await fleet.infer("m", i, deadline=10.0) == i
                done.append((round((fleet.now() - t0) * 1e3, 6), i))

            first = [asyncio.create_task(call(i)) for i in range(10)]
            await asyncio.sleep(0)
            before = submitted(fleet)
            assert before[1] > 0
            fleet.remove_replica("m", 1)
            assert fleet.placement("m") == (0,)
            await asyncio.gather(*first, *(call(i) for i in range(10, 16)))
            after = submitted(fleet)
            assert after == [before[0] + 6, before[1]]
            on_one = [i for t, i in sorted(done) if t % 13 == 0 and t % 10 != 0]
            assert len(on_one) == before[1] and on_one == sorted(on_one)
            add_up(fleet.snapshot())
            fleet.add_replica("m", 1)  # dormant there: back at once
            assert fleet.placement("m") == (0, 1)
            with pytest.raises(aiosched.InvalidConfig):
                fleet.remove_replica("m", 0)
                fleet.remove_replica("m", 1)

    simtime.run(main())


# Rebalancing is left to the tests: thresholds that never grow and never shrink.
BY_HAND: dict[str, Any] = {"rebalance_every": None, "grow_above": 100.0, "shrink_below": 0.0}


def test_a_dormant_host_is_released_once_drained_and_its_counts_stay() -> None:
    # Device 1 is removed with requests queued; at the first rebalance 50 ms after, the
    # fleet unregisters the model there, which first finishes them. The device forgets
    # the model; the fleet's totals keep what it counted; adding it back registers anew.
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], release_after=0.05, **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            first = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(10)]
            await asyncio.sleep(0)
            queued_on_one = submitted(fleet)[1]
            assert queued_on_one > 1
            fleet.remove_replica("m", 1)
            await asyncio.sleep(0.02)
            fleet.rebalance()  # dormant 20 ms: kept
            assert "m" in fleet.devices[1].snapshot().models
            await asyncio.sleep(0.04)
            assert fleet.devices[1].snapshot().models["m"].pending > 0  # still draining
            fleet.rebalance()  # dormant 60 ms: released, once drained
            await asyncio.sleep(0)  # the release's task asks the device
            with pytest.raises(aiosched.UnknownModel):
                await fleet.devices[1].infer("m", 0, deadline=1.0)  # leaving: no new requests
            assert fleet.snapshot().models["m"].submitted == 10  # exact while it leaves
            assert await asyncio.gather(*first) == list(range(10))
            await asyncio.sleep(0)
            snap = fleet.snapshot()
            assert "m" not in snap.devices[1].models and snap.released == 1
            total = snap.models["m"]
            assert total.submitted == total.completed == 10
            add_up(snap)
            fleet.add_replica("m", 1)  # registered afresh: a replica once it is ready
            assert fleet.placement("m") == (0,)
            await fleet.ready()
            await asyncio.sleep(0)
            assert fleet.placement("m") == (0, 1)
            await asyncio.gather(*(fleet.infer("m", i, deadline=10.0) for i in range(10)))
            snap = fleet.snapshot()
            assert snap.devices[1].models["m"].submitted > 0  # serving there again
            assert snap.models["m"].submitted == snap.models["m"].completed == 20
            add_up(snap)

    simtime.run(main())


def test_a_grow_onto_a_host_being_released_waits_for_the_release() -> None:
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], release_after=0.0, **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            calls = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(10)]
            await asyncio.sleep(0)
            fleet.remove_replica("m", 1)
            fleet.rebalance()  # release starts; device 1 drains its share
            fleet.add_replica("m", 1)  # cannot register there until the release is done
            assert fleet.placement("m") == (0,)
            assert await asyncio.gather(*calls) == list(range(10))
            for _ in range(3):
                await asyncio.sleep(0)
            assert fleet.placement("m") == (0, 1)
            snap = fleet.snapshot()
            assert snap.released == 1 and snap.devices[1].models["m"].submitted == 0
            assert snap.models["m"].submitted == snap.models["m"].completed == 10

    simtime.run(main())


def test_a_device_lost_while_the_other_is_released_places_the_model_again() -> None:
    # Device 0, the only replica, loses its lane while device 1 is letting the model go
    # (and was asked to take it back): requests fail with LaneFailed, never UnknownModel,
    # until device 1 has registered the model afresh; then it serves.
    lost = SimBackend(lanes=1, models={"m": flat_model(0.010)}, fail_lanes={0: 0.030})

    async def main() -> None:
        async with Fleet([lost, device(0.013)], release_after=0.0, **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            first = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(20)]
            await asyncio.sleep(0)
            fleet.remove_replica("m", 1)
            fleet.rebalance()  # device 1: release under way
            fleet.add_replica("m", 1)  # pending until the release is done
            await asyncio.sleep(0.035)
            outs = await asyncio.gather(*first, return_exceptions=True)
            assert all(o == i or isinstance(o, aiosched.LaneFailed) for i, o in enumerate(outs))
            with pytest.raises(aiosched.LaneFailed, match="being placed again on"):
                await fleet.infer("m", 99, deadline=10.0)
            await asyncio.sleep(1.0)
            assert fleet.placement("m") == (1,)
            assert await fleet.infer("m", 100, deadline=10.0) == 100
            snap = fleet.snapshot()
            assert snap.models["m"].submitted == 22 and snap.released == 1  # 99 refused: counted
            add_up(snap)

    simtime.run(main())


def test_a_failed_registration_after_a_release_leaves_the_device_free() -> None:
    full = device(0.013)

    async def main() -> None:
        async with Fleet([device(0.010), full], release_after=0.0, **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            calls = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(10)]
            await asyncio.sleep(0)
            fleet.remove_replica("m", 1)
            fleet.rebalance()

            def no_room(spec: Any) -> None:  # as the cuda backend's load when it does not fit
                raise aiosched.InvalidConfig(f"{spec.name}: does not fit")

            full.load = no_room  # type: ignore[method-assign]
            fleet.add_replica("m", 1)  # asynchronous: the release is under way
            assert await asyncio.gather(*calls) == list(range(10))
            for _ in range(3):
                await asyncio.sleep(0)
            assert fleet.placement("m") == (0,)
            with pytest.raises(aiosched.InvalidConfig, match="does not fit"):
                fleet.add_replica("m", 1)  # tried again at once, not stuck as pending

    simtime.run(main())


@pytest.mark.parametrize("drain", [True, False])
def test_fleet_unregister_lets_every_device_go_and_returns_the_totals(drain: bool) -> None:
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            calls = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(10)]
            await asyncio.sleep(0.001)  # one running on each device, the rest queued
            final = await fleet.unregister("m", drain=drain)
            outs = await asyncio.gather(*calls, return_exceptions=True)
            done = [o for o in outs if not isinstance(o, BaseException)]
            assert len(done) == (10 if drain else 2)
            assert all(isinstance(o, aiosched.ModelUnregistered) for o in outs if o not in done)
            assert final.submitted == 10 and final.completed == len(done)
            assert final.submitted == final.completed + final.rejected
            assert all("m" not in d.snapshot().models for d in fleet.devices)
            with pytest.raises(aiosched.UnknownModel):
                await fleet.infer("m", 0, deadline=1.0)
            with pytest.raises(aiosched.UnknownModel):
                await fleet.unregister("m")
            fleet.register("m", max_batch_size=1, warmup=False)  # the name is free again
            assert await fleet.infer("m", 7, deadline=1.0) == 7
            assert fleet.snapshot().models["m"].submitted == 1

    simtime.run(main())


def test_an_activation_overtaken_by_a_second_release_does_not_add_the_device() -> None:
    # Released, asked back (registered afresh, warming up), released again while warming
    # and asked back again: the first activation must not make the device a replica
    # while its model is leaving; the second one does, once it is registered anew.
    model = SimModel(base=0.05, per_item=0.001, noise=0.0)

    async def main() -> None:
        devices = [SimBackend(lanes=2, models={"m": model}, seed=i) for i in range(2)]
        async with Fleet(devices, release_after=0.0, **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=4)
            await fleet.ready()
            fleet.remove_replica("m", 1)
            fleet.rebalance()
            fleet.add_replica("m", 1)
            await asyncio.sleep(0.01)  # released; registered again, warming up
            fleet.remove_replica("m", 1)
            fleet.rebalance()  # released again while it warms up
            fleet.add_replica("m", 1)
            for _ in range(3):
                await asyncio.sleep(0)
            assert fleet.placement("m") == (0,)
            outs = await asyncio.gather(*(fleet.infer("m", i, deadline=2.0) for i in range(40)))
            assert outs == list(range(40))
            await asyncio.sleep(1.0)
            assert fleet.placement("m") == (0, 1)
            outs = await asyncio.gather(*(fleet.infer("m", i, deadline=2.0) for i in range(400)))
            assert outs == list(range(400))
            snap = fleet.snapshot()
            assert snap.devices[1].models["m"].completed > 0 and snap.released == 2
            assert snap.models["m"].submitted == snap.models["m"].completed == 440

    simtime.run(main())


def test_the_name_is_taken_until_fleet_unregister_is_done() -> None:
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            calls = [asyncio.create_task(fleet.infer("m", i, deadline=10.0)) for i in range(20)]
            await asyncio.sleep(0)
            leaving = asyncio.create_task(fleet.unregister("m"))
            await asyncio.sleep(0.02)  # devices still draining
            with pytest.raises(aiosched.InvalidConfig, match="being unregistered"):
                fleet.register("m", max_batch_size=1, warmup=False)
            assert all("m" in d.snapshot().models for d in fleet.devices)  # nothing half-done
            second = await fleet.unregister("m")  # waits for the same end
            assert second is await leaving and second.completed == 20
            assert await asyncio.gather(*calls) == list(range(20))
            fleet.register("m", max_batch_size=1, warmup=False)

    simtime.run(main())


def test_a_second_fleet_unregister_without_drain_cuts_the_drain_short() -> None:
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            calls = [asyncio.create_task(fleet.infer("m", i, deadline=100.0)) for i in range(400)]
            await asyncio.sleep(0)
            draining = asyncio.create_task(fleet.unregister("m"))
            await asyncio.sleep(0.02)
            final = await fleet.unregister("m", drain=False)
            assert final is await draining and fleet.now() < 0.1  # not the seconds a drain takes
            outs = await asyncio.gather(*calls, return_exceptions=True)
            cut = [o for o in outs if isinstance(o, aiosched.ModelUnregistered)]
            assert len(cut) > 300 and final.rejected == len(cut)
            assert final.submitted == final.completed + final.rejected == 400

    simtime.run(main())


def test_without_release_after_a_dormant_host_keeps_the_model() -> None:
    async def main() -> None:
        async with Fleet([device(0.010), device(0.013)], **BY_HAND) as fleet:
            fleet.register("m", max_batch_size=1, warmup=False)
            fleet.remove_replica("m", 1)
            await asyncio.sleep(10.0)
            fleet.rebalance()
            assert "m" in fleet.devices[1].snapshot().models and fleet.snapshot().released == 0
            fleet.add_replica("m", 1)
            assert fleet.placement("m") == (0, 1)  # at once: it was warm there

    simtime.run(main())


def test_rebalance_grows_a_hot_model_and_shrinks_it_when_idle() -> None:
    # One replica of four, offered about two devices' worth: it grows onto idle devices,
    # every request resolves once, and after the load stops it shrinks back to one.
    model = SimModel(base=2e-3, per_item=1e-3, exponent=1.0, noise=0.0)
    rate = 2 * 4 / 6e-3  # two devices at full batches of 4 (6 ms)
    schedule = Workload.parse("m", "50").schedule("poisson", rate=rate, duration=1.5, seed=3)

    async def main() -> None:
        async with Fleet.sim(4, models={"m": model}, rebalance_every=0.1) as fleet:
            fleet.register("m", max_batch_size=4, replicas=1)
            await fleet.ready()
            widest = 1

            async def target(name: str, x: Any, deadline: float) -> Any:
                nonlocal widest
                widest = max(widest, len(fleet.placement(name)))
                return await fleet.infer(name, x, deadline)

            result = await run_open_loop(target, schedule)
            assert widest >= 2
            counts = result.total().counts
            assert counts.completed + counts.rejected == len(schedule)
            assert counts.met_deadline / len(schedule) > 0.95
            await asyncio.sleep(1.0)
            snap = fleet.snapshot()
            assert len(snap.placement["m"]) == 1
            assert snap.grown >= 1 and snap.shrunk == snap.grown
            assert snap.models["m"].submitted == len(schedule)
            add_up(snap)

    simtime.run(main())


def test_plan_grows_onto_the_least_loaded_devices_with_room() -> None:
    kw: dict[str, Any] = {"grow_above": 0.8, "shrink_below": 0.4, "min_replicas": 1}
    load = [1.2, 0.3, 0.1, 0.9]
    models = {"a": ModelLoad((0,), [1.2, 0, 0, 0]), "b": ModelLoad((3,), [0, 0, 0, 0.9])}
    # "a" spreads onto device 2, then 1, until its replicas' mean is down to 0.6; then
    # no device has room for half of "b" without going hot itself.
    assert plan(load, models, [True] * 4, **kw) == [Move("a", 2, True), Move("a", 1, True)]
    assert plan(load, models, [True, False, False, True], **kw) == []  # none live to add
    # Two hot models do not both pick the one idle device.
    two = {"a": ModelLoad((0,), [1.0, 0, 0, 0]), "b": ModelLoad((1,), [0, 1.0, 0, 0])}
    moves = plan([1.0, 1.0, 0.0, 0.0], two, [True] * 4, **kw)
    assert moves == [Move("a", 2, True), Move("b", 3, True)]


def test_plan_shrinks_only_below_the_low_threshold_one_at_a_time() -> None:
    idle = {"a": ModelLoad((0, 1, 2), [0.1, 0.1, 0.1])}
    kw: dict[str, Any] = {"grow_above": 0.8, "shrink_below": 0.4, "min_replicas": 1}
    assert plan([0.1, 0.1, 0.1], idle, [True] * 3, **kw) == [Move("a", 2, grow=False)]
    warm = {"a": ModelLoad((0, 1, 2), [0.3, 0.3, 0.3])}
    assert plan([0.3, 0.3, 0.3], warm, [True] * 3, **kw) == []  # 0.45 each after: stays
    assert plan([0.1, 0.1, 0.1], idle, [True] * 3, **{**kw, "min_replicas": 3}) == []


# -- bad configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("devices", "options"),
    [
        ([], {}),
        ("sim", {}),
        (["tpu"], {}),
        (["sim", 3], {}),
        (["cuda:0", "cuda:0"], {}),
        (["sim", "cpu"], {}),
        (["sim"], {"rebalance_every": 0}),
        (["sim"], {"rebalance_every": float("nan")}),
        (["sim"], {"grow_above": 0.3, "shrink_below": 0.5}),
        (["sim"], {"min_replicas": 2}),
        (["sim"], {"min_replicas": True}),
        (["sim"], {"policy": aiosched.EdfPolicy()}),
        (["sim"], {"policy": lambda: "edf"}),
        (["sim"], {"policy": "lifo"}),
        (["sim"], {"predictor": 3}),
        (["sim"], {"release_after": -1.0}),
        (["sim"], {"rebalance_every": 1e-9}),
        (["sim"], {"release_after": float("inf")}),
        (["sim"], {"release_after": "10"}),
    ],
)
def test_bad_fleet_config_raises_invalid_config(devices: Any, options: dict[str, Any]) -> None:
    with pytest.raises(aiosched.InvalidConfig):
        Fleet(devices, **options)


def test_the_same_backend_twice_is_refused() -> None:
    backend = SimBackend()
    with pytest.raises(aiosched.InvalidConfig, match="twice"):
        Fleet([backend, backend])
    with pytest.raises(aiosched.InvalidConfig):
        Fleet.sim(0)


def test_bad_registration_and_calls_raise_typed_errors() -> None:
    async def main() -> None:
        fleet = Fleet.sim(2, models={"m": flat_model()})
        with pytest.raises(aiosched.SchedulerClosed):
            await fleet.infer("m", 1, deadline=1.0)
        with pytest.raises(aiosched.SchedulerClosed):
            await fleet.ready()
        async with fleet:
            fleet.register("m", replicas=1, warmup=False)
            for kwargs in (
                {"replicas": 0},
                {"replicas": 3},
                {"replicas": True},
                {"devices": [0, 0]},
                {"devices": [2]},
                {"devices": []},
                {"devices": [0], "replicas": 1},
                {"max_batch_size": 0},
            ):
                with pytest.raises(aiosched.InvalidConfig):
                    fleet.register("n", **kwargs)
            with pytest.raises(aiosched.InvalidConfig, match="already"):
                fleet.register("m")
            with pytest.raises(aiosched.UnknownModel):
                await fleet.infer("nope", 1, deadline=1.0)
            with pytest.raises(aiosched.UnknownModel):
                fleet.placement("nope")
            with pytest.raises(aiosched.InvalidInput):
                await fleet.infer("m", 1, deadline=-1.0)
            with pytest.raises(aiosched.InvalidConfig):
                fleet.add_replica("m", 5)
            for bad in (1.0, 5, -1, "0", None):
                with pytest.raises(aiosched.InvalidConfig):
                    fleet.remove_replica("m", bad)  # type: ignore[arg-type]
            assert fleet.models[0].name == "m"
            assert "open" in repr(fleet)
        with pytest.raises(aiosched.SchedulerClosed):
            fleet.register("late")
        with pytest.raises(aiosched.InvalidConfig):
            await fleet.start()

    simtime.run(main())


def test_each_device_gets_its_own_copy_of_a_torch_module() -> None:
    module = torch.nn.Linear(2, 2)
    make = model_factory(module)
    one, two = make(), make()
    assert one is not two and one is not module
    assert torch.equal(one.weight, module.weight)
    sim_model = flat_model()
    assert model_factory(sim_model)() is sim_model


# -- history and statistics -----------------------------------------------------------


@pytest.mark.parametrize(
    ("devices", "keep", "each"),
    [(1, 100_000, 100_000), (4, 100_000, 25_000), (64, 100_000, 1_562), (200, 100_000, 1_000)],
)
def test_keep_executions_is_the_fleets_total(devices: int, keep: int, each: int) -> None:
    fleet = Fleet.sim(devices, keep_executions=keep)
    assert {d.timeline.history.maxlen for d in fleet.devices} == {each}


def test_keep_executions_below_the_floor_is_kept_as_asked_and_bad_ones_are_refused() -> None:
    fleet = Fleet.sim(4, keep_executions=500)
    assert {d.timeline.history.maxlen for d in fleet.devices} == {500}
    for bad in (-1, 1.5, True, "many"):
        with pytest.raises(aiosched.InvalidConfig, match="keep_executions"):
            Fleet.sim(2, keep_executions=bad)


@pytest.mark.sim
async def test_snapshot_queue_wait_adds_up_every_devices_buckets() -> None:
    async with Fleet.sim(3, lanes=1, models={"m": flat_model(0.010)}) as fleet:
        fleet.register("m", max_batch_size=2, warmup=False)
        outs = await asyncio.gather(*(fleet.infer("m", i, deadline=10.0) for i in range(30)))
        assert outs == list(range(30))
        snap = fleet.snapshot()
        waits = [d.models["m"].queue_wait for d in snap.devices]
        total = snap.models["m"].queue_wait
        assert all(w.count for w in waits)  # every device ran some
        assert total.count == sum(w.count for w in waits) == 30
        assert total.total == pytest.approx(sum(w.total for w in waits))
        assert total.max == max(w.max for w in waits)
        for i, (bound, count) in enumerate(total.buckets):
            assert count == sum(w.buckets[i][1] for w in waits), bound
        assert total.p99 <= total.max and total.p50 > 0


def test_plan_spreads_a_surge_too_big_for_any_device_over_the_cooler_ones() -> None:
    # Six devices' worth on two replicas: no device has room for a third of it, but
    # each added device leaves the replicas cooler, so it spreads over every idle one.
    # The device busy with "b" would end hotter than "a"'s replicas: it is left alone;
    # idle, it takes its part too.
    kw: dict[str, Any] = {"grow_above": 0.8, "shrink_below": 0.4, "min_replicas": 1}
    hot = ModelLoad((0, 1), [3.0, 3.0, 0, 0, 0, 0, 0, 0])
    for b_load, devices in ((0.5, [3, 4, 5, 6, 7]), (0.0, [2, 3, 4, 5, 6, 7])):
        load = [3.0, 3.0, b_load, 0, 0, 0, 0, 0]
        b = ModelLoad((2,), [0, 0, b_load, 0, 0, 0, 0, 0])
        moves = plan(load, {"a": hot, "b": b}, [True] * 8, **kw)
        assert [m.device for m in moves if m.model == "a"] == devices
        assert all(m.grow for m in moves if m.model == "a")
