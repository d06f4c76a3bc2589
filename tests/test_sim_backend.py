"""The sim backend on its own, in virtual time: ground truth, interference, drift, faults."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiosched import simtime
from aiosched.backends.base import Completion, LaneFailure
from aiosched.backends.sim import (
    CATALOGUE,
    CROWDING,
    INTERFERENCE_EXPONENT,
    Drift,
    SimBackend,
    SimModel,
    SimModelError,
)
from aiosched.clock import LoopClock
from aiosched.errors import InvalidConfig
from aiosched.spec import ModelSpec

# Linear in batch size and the same pressure at every batch size, so expected
# times can be worked out by hand: a batch of b takes 5 ms * b alone.
FLAT = SimModel(
    base=0.0,
    per_item=0.005,
    exponent=1.0,
    noise=0.0,
    pressure=0.5,
    pressure_exp=0.0,
    sensitivity=1.0,
)
PAIR_SLOWDOWN = 1 + 1.0 * 0.5**INTERFERENCE_EXPONENT + CROWDING


def flat_spec(name: str = "flat", model: SimModel = FLAT) -> ModelSpec:
    return ModelSpec(name, model)


async def started(backend: SimBackend, *specs: ModelSpec) -> SimBackend:
    await backend.start(backend.default_clock(asyncio.get_running_loop()))
    for spec in specs:
        backend.load(spec)
    return backend


def submit(
    backend: SimBackend, lane: int, spec: ModelSpec, inputs: Sequence[Any]
) -> asyncio.Future[Completion]:
    fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
    backend.submit(lane, spec, inputs, fut.set_result)
    return fut


async def sleep_until(t: float) -> None:
    await asyncio.sleep(t - asyncio.get_running_loop().time())


@pytest.mark.sim
async def test_solo_batch_takes_its_ground_truth_latency() -> None:
    exact = dataclasses.replace(CATALOGUE["vit_b16"], noise=0.0)

    backend = await started(SimBackend(lanes=1), ModelSpec("vit_b16", exact), flat_spec())
    out: list[tuple[float, float]] = []
    for spec, b in [(flat_spec(), 3), (ModelSpec("vit_b16", exact), 1), (flat_spec(), 8)]:
        c = await submit(backend, 0, spec, list(range(b)))
        assert c.error is None
        out.append((c.end - c.start, backend.solo_latency(spec.name, b)))
    await backend.aclose()
    assert out[0] == pytest.approx((0.015, 0.015))
    assert out[1][1] == pytest.approx(exact.solo_latency(1))
    for took, truth in out:
        assert took == pytest.approx(truth, rel=1e-9)


@pytest.mark.sim
async def test_two_identical_batches_together_each_take_solo_times_slowdown() -> None:
    backend = await started(SimBackend(lanes=2), flat_spec())
    fut_a = submit(backend, 0, flat_spec(), [1, 2])
    fut_b = submit(backend, 1, flat_spec(), [3, 4])
    a, b = await fut_a, await fut_b
    assert a.start == b.start == 0.0
    assert PAIR_SLOWDOWN > 1.4  # 1 + 0.5 ** 1.3 + 0.05
    assert a.end == pytest.approx(0.010 * PAIR_SLOWDOWN, rel=1e-9)
    assert b.end == pytest.approx(a.end, rel=1e-9)
    assert FLAT.slowdown(0.5, 1) == pytest.approx(PAIR_SLOWDOWN)


@pytest.mark.sim
async def test_interference_is_not_additive_in_the_corunners() -> None:
    backend = await started(SimBackend(lanes=3), flat_spec())
    futs = [submit(backend, lane, flat_spec(), [0, 0]) for lane in range(3)]
    done = list(await asyncio.gather(*futs))
    triple = 1 + 1.0**INTERFERENCE_EXPONENT + 2 * CROWDING  # co-pressure 0.5 + 0.5
    assert [c.end for c in done] == pytest.approx([0.010 * triple] * 3, rel=1e-9)
    # Two co-runners hurt more than twice what one does: the exponent is > 1.
    assert triple - 1 > 2 * (PAIR_SLOWDOWN - 1)


def test_rates_change_when_a_corunner_starts_or_finishes_midway() -> None:
    async def scenario(co_batch: int, co_start: float) -> float:
        backend = await started(SimBackend(lanes=2), flat_spec())
        long = submit(backend, 0, flat_spec(), [0] * 4)  # 20 ms alone
        await sleep_until(co_start)
        co = submit(backend, 1, flat_spec(), [0] * co_batch)
        c = await long
        await co
        return c.end

    s = PAIR_SLOWDOWN
    # The co-runner (10 ms alone) finishes at 10 ms * s, when the long batch is
    # half done; it runs the other half alone.
    ends_early = simtime.run(scenario(co_batch=2, co_start=0.0))
    assert ends_early == pytest.approx(0.010 * s + 0.010, rel=1e-9)
    # A co-runner that outlasts it slows it all the way.
    throughout = simtime.run(scenario(co_batch=8, co_start=0.0))
    assert throughout == pytest.approx(0.020 * s, rel=1e-9)
    assert ends_early < throughout
    # A co-runner that arrives half-way slows only the second half.
    arrives_late = simtime.run(scenario(co_batch=8, co_start=0.010))
    assert arrives_late == pytest.approx(0.010 + 0.010 * s, rel=1e-9)


def trace(seed: int) -> list[tuple[float, float]]:
    names = ["resnet50", "yolov8n", "vgg19", "roberta_base"]

    async def main() -> list[tuple[float, float]]:
        specs = [ModelSpec(n, None) for n in names]
        backend = await started(SimBackend(lanes=2, seed=seed), *specs)

        async def lane(i: int) -> list[tuple[float, float]]:
            out = []
            for k in range(20):
                c = await submit(backend, i, specs[(k + i) % 4], [0.0] * (1 + k % 8))
                out.append((c.start, c.end))
            return out

        a, b = await asyncio.gather(lane(0), lane(1))
        await backend.aclose()
        return a + b

    return simtime.run(main())


def test_same_seed_same_times_and_different_seed_different_times() -> None:
    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


@pytest.mark.sim
async def test_noise_is_mean_one_with_its_coefficient() -> None:
    backend = await started(SimBackend(lanes=1, seed=7), ModelSpec("resnet50", None))
    truth = backend.solo_latency("resnet50", 4)
    ratios: list[float] = []
    for _ in range(2000):
        c = await submit(backend, 0, ModelSpec("resnet50", None), [0.0] * 4)
        ratios.append((c.end - c.start) / truth)
    assert statistics.fmean(ratios) == pytest.approx(1.0, abs=0.003)
    assert statistics.stdev(ratios) == pytest.approx(CATALOGUE["resnet50"].noise, rel=0.1)


@pytest.mark.sim
async def test_drift_changes_speed_and_models_after_at() -> None:
    slower = dataclasses.replace(FLAT, per_item=0.010)
    drift = [Drift(at=1.0, speed=0.5), Drift(at=2.0, speed=1.0, models={"flat": slower})]

    backend = await started(SimBackend(lanes=1, drift=drift), flat_spec())
    out: list[tuple[float, float]] = []
    for t in (0.0, 0.99, 1.5, 2.5):
        await sleep_until(t)
        c = await submit(backend, 0, flat_spec(), [0] * 4)  # 20 ms at first
        out.append((c.start, c.end))
    assert backend.speed == 1.0
    assert backend.solo_latency("flat", 4) == pytest.approx(0.040)
    before, across, after_speed, after_model = out
    assert before[1] - before[0] == pytest.approx(0.020)
    # Half done at the step, then at half speed: the other half takes 20 ms.
    assert across[1] == pytest.approx(1.0 + 0.020)
    assert after_speed[1] - after_speed[0] == pytest.approx(0.040)
    assert after_model[1] - after_model[0] == pytest.approx(0.040)


@pytest.mark.sim
async def test_drift_steps_due_together_apply_in_order() -> None:
    drift = [Drift(at=0.5, speed=0.25), Drift(at=0.5, speed=2.0)]

    backend = await started(SimBackend(lanes=1, drift=drift), flat_spec())
    await sleep_until(1.0)
    assert backend.speed == 2.0


@pytest.mark.sim
async def test_failed_lane_gives_lane_failure() -> None:
    backend = await started(SimBackend(lanes=2, fail_lanes={1: 0.5}), flat_spec())
    early = await submit(backend, 1, flat_spec(), [0])
    cut = await submit(backend, 1, flat_spec(), [0] * 200)  # 1 s: still running at 0.5
    await sleep_until(0.6)
    later_fut = submit(backend, 1, flat_spec(), [0])
    assert not later_fut.done()  # never called back inside submit
    other = await submit(backend, 0, flat_spec(), [0])
    later = await later_fut
    assert early.error is None and early.outputs == [0]
    assert isinstance(cut.error, LaneFailure) and cut.outputs is None
    assert (cut.start, cut.end) == pytest.approx((0.005, 0.5))
    assert isinstance(later.error, LaneFailure)
    assert later.start == later.end == pytest.approx(0.6)
    assert other.error is None


@pytest.mark.sim
async def test_rejected_input_fails_the_batch_after_its_time() -> None:
    picky = dataclasses.replace(FLAT, fails=lambda x: x < 0)

    backend = await started(SimBackend(lanes=1), flat_spec("picky", picky))
    bad = await submit(backend, 0, flat_spec("picky", picky), [1, -1, 2])
    good = await submit(backend, 0, flat_spec("picky", picky), [1, 2])
    assert isinstance(bad.error, SimModelError) and "[1]" in str(bad.error)
    assert bad.outputs is None
    assert bad.end - bad.start == pytest.approx(0.015)
    assert good.error is None and good.outputs == [1, 2]


@pytest.mark.sim
async def test_outputs_echo_inputs_in_order_or_apply_output() -> None:
    doubler = dataclasses.replace(FLAT, output=lambda x: 2 * x)
    broken = dataclasses.replace(FLAT, output=lambda x: 1 / 0)

    specs = [flat_spec(), flat_spec("double", doubler), flat_spec("broken", broken)]
    backend = await started(SimBackend(lanes=3), *specs)
    futs = [submit(backend, i, s, [3, 1, 2]) for i, s in enumerate(specs)]
    echo, double, broke = await asyncio.gather(*futs)
    assert echo.outputs == [3, 1, 2]
    assert double.outputs == [6, 2, 4]
    assert isinstance(broke.error, ZeroDivisionError)


def test_a_hook_calling_sys_exit_fails_its_batch_and_a_ctrl_c_still_stops_the_run() -> None:
    def leave(x: Any) -> Any:
        sys.exit(3)  # a model does not end the application

    quitter = dataclasses.replace(FLAT, output=leave)

    async def main() -> tuple[Completion, Completion]:
        backend = await started(SimBackend(lanes=1), flat_spec("quit", quitter), flat_spec())
        quit_ = await submit(backend, 0, flat_spec("quit", quitter), [1])
        after = await submit(backend, 0, flat_spec(), [1])
        return quit_, after

    quit_, after = simtime.run(main())
    assert isinstance(quit_.error, SystemExit) and after.outputs == [1]

    def interrupt(x: Any) -> Any:
        raise KeyboardInterrupt  # the hooks run on the main thread: this may be the user's

    ctrl_c = dataclasses.replace(FLAT, output=interrupt)

    async def stopped() -> None:
        backend = await started(SimBackend(lanes=1), flat_spec("c", ctrl_c))
        await submit(backend, 0, flat_spec("c", ctrl_c), [1])

    with pytest.raises(KeyboardInterrupt):
        simtime.run(stopped())


@pytest.mark.sim
async def test_misuse_raises() -> None:
    backend = SimBackend(lanes=2)
    backend.load(flat_spec())
    with pytest.raises(RuntimeError, match="start"):
        backend.submit(0, flat_spec(), [0], lambda c: None)
    await started(backend)
    submit(backend, 0, flat_spec(), [0])
    with pytest.raises(RuntimeError, match="busy"):
        backend.submit(0, flat_spec(), [0], lambda c: None)
    for lane in (-1, 2, True):
        with pytest.raises(InvalidConfig, match="lane"):
            backend.submit(lane, flat_spec(), [0], lambda c: None)
    with pytest.raises(RuntimeError, match="not loaded"):
        backend.submit(1, flat_spec("other"), [0], lambda c: None)
    with pytest.raises(InvalidConfig):
        backend.submit(1, flat_spec(), [], lambda c: None)
    await backend.aclose()


def test_load_resolves_catalogue_names_and_rejects_the_rest() -> None:
    backend = SimBackend()
    backend.load(ModelSpec("resnet50", None))
    assert backend.sample_input(ModelSpec("resnet50", None)) == 0.0
    assert backend.sample_input(ModelSpec("x", dataclasses.replace(FLAT, sample_input=7))) == 7
    with pytest.raises(InvalidConfig, match="no model named 'nope'"):
        backend.load(ModelSpec("nope", None))
    with pytest.raises(InvalidConfig, match="SimModel"):
        backend.load(ModelSpec("resnet50", lambda batch: batch))
    with pytest.raises(InvalidConfig):
        SimBackend(models={"flat": FLAT}).load(ModelSpec("resnet50", None))
    with pytest.raises(InvalidConfig):
        SimBackend(lanes=2, fail_lanes={2: 1.0})
    with pytest.raises(InvalidConfig):
        Drift(at=-1.0)
    with pytest.raises(InvalidConfig):
        Drift(at=1.0, speed=0.0)
    with pytest.raises(InvalidConfig):
        SimModel(base=0.001, per_item=0.001, noise=-0.1)
    desc = backend.describe()
    assert desc["backend"] == "sim" and desc["lanes"] == 2
    assert set(CATALOGUE) <= set(desc["models"])


@pytest.mark.sim
async def test_aclose_completes_in_flight_batches_with_an_error() -> None:
    calls: list[Completion] = []

    backend = await started(SimBackend(lanes=2, drift=[Drift(at=5.0, speed=0.5)]), flat_spec())
    assert isinstance(backend.default_clock(asyncio.get_running_loop()), LoopClock)
    backend.submit(0, flat_spec(), [0] * 100, calls.append)  # 0.5 s
    await sleep_until(0.1)
    await backend.aclose()
    assert len(calls) == 1  # resolved before aclose returned
    await backend.aclose()
    with pytest.raises(RuntimeError):
        backend.submit(1, flat_spec(), [0], calls.append)
    await asyncio.sleep(10.0)  # no timer left to fire
    assert backend.speed == 1.0
    assert len(calls) == 1
    assert isinstance(calls[0].error, LaneFailure)
    assert (calls[0].start, calls[0].end) == pytest.approx((0.0, 0.1))


def test_catalogue_looks_like_the_papers_models() -> None:
    assert set(CATALOGUE) == {
        "resnet50",
        "yolov8n",
        "roberta_base",
        "vit_b16",
        "vgg19",
        "convnext_b",
    }
    for name, m in CATALOGUE.items():
        lat = [m.solo_latency(b) for b in range(1, 9)]
        assert 0.002 <= lat[0] <= 0.010, name
        assert 0.010 <= lat[7] <= 0.040, name
        assert all(x < y for x, y in itertools.pairwise(lat)), name
        # Throughput grows with batch size but saturates.
        tput = [b / x for b, x in zip(range(1, 9), lat, strict=True)]
        assert all(x < y for x, y in itertools.pairwise(tput)), name
        assert tput[7] / tput[3] < tput[3] / tput[0], name
        assert 1.0 < m.slowdown(m.pressure_at(8), 1) < 2.0, name


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(CATALOGUE)), st.integers(1, 8), st.floats(0, 0.02)),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_every_batch_completes_once_and_interference_only_slows(
    plan: list[tuple[str, int, float]], lanes: int
) -> None:
    exact = {k: dataclasses.replace(m, noise=0.0) for k, m in CATALOGUE.items()}

    async def main() -> list[tuple[str, int, Completion]]:
        backend = await started(
            SimBackend(lanes=lanes, models=exact), *(ModelSpec(k, None) for k in exact)
        )
        results: list[tuple[str, int, Completion]] = []
        free = asyncio.Queue[int]()
        for lane in range(lanes):
            free.put_nowait(lane)
        for name, b, gap in plan:
            await asyncio.sleep(gap)
            lane = await free.get()

            def done(c: Completion, name: str = name, b: int = b, lane: int = lane) -> None:
                results.append((name, b, c))
                free.put_nowait(lane)

            backend.submit(lane, ModelSpec(name, None), list(range(b)), done)
        for _ in range(lanes):  # every lane back: every batch done
            await free.get()
        await backend.aclose()
        return results

    results = simtime.run(main())
    assert len(results) == len(plan)
    worst = 1 + max(m.sensitivity for m in exact.values()) * math.pow(3 * 1.3, 1.3) + 3 * CROWDING
    for name, b, c in results:
        assert c.error is None and c.outputs == list(range(b))
        solo = exact[name].solo_latency(b)
        assert solo * (1 - 1e-9) <= c.end - c.start <= solo * worst
