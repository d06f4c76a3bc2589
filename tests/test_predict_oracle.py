"""The ``oracle`` predictor: the sim backend's ground truth, simulated forward."""

from __future__ import annotations

import asyncio
import math
import pickle

import pytest

import aiosched
from aiosched.backends.base import Completion
from aiosched.backends.cpu import CpuBackend
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.clock import LoopClock
from aiosched.errors import InvalidConfig
from aiosched.predict import OraclePredictor, make_predictor
from aiosched.spec import ModelSpec
from aiosched.timeline import Running


def exact(base: float, per_item: float, **kw: float) -> SimModel:
    """A noise-free model with interference."""
    params: dict[str, float] = {"noise": 0.0, "exponent": 0.9}
    params.update(kw)
    return SimModel(base=base, per_item=per_item, **params)


MODELS = {
    "a": exact(0.004, 0.002, pressure=0.4, sensitivity=0.6),
    "b": exact(0.002, 0.003, pressure=0.3, pressure_exp=0.6, sensitivity=0.8),
    "c": exact(0.006, 0.001, pressure=0.5, sensitivity=0.3),
}


class Device:
    """A started sim backend driven by hand, with an attached oracle."""

    def __init__(self, backend: SimBackend, names: tuple[str, ...] = tuple(MODELS)) -> None:
        self.backend = backend
        self.names = names
        self.oracle = OraclePredictor()
        self.oracle.attach(backend)
        self.done: dict[int, Completion] = {}
        self.running: dict[int, Running] = {}
        self._ids = 0

    async def start(self) -> None:
        await self.backend.start(LoopClock(asyncio.get_running_loop()))
        for name in self.names:
            self.backend.load(ModelSpec(name, None))

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def submit(self, lane: int, model: str, b: int) -> Running:
        self._ids += 1
        now = self.now()
        r = Running(self._ids, model, b, lane, now, now)
        self.running[lane] = r

        def on_done(c: Completion) -> None:
            self.done[lane] = c
            self.running.pop(lane, None)

        self.done.pop(lane, None)
        self.backend.submit(lane, ModelSpec(model, None), [0.0] * b, on_done)
        return r

    def predict(self, model: str, b: int, *extra: Running) -> float:
        return self.oracle.predict(model, b, [*self.running.values(), *extra], self.now())

    async def wait(self, lane: int) -> Completion:
        while lane not in self.done:
            await asyncio.sleep(0.0005)
        return self.done[lane]


def latency(c: Completion) -> float:
    assert c.error is None
    return c.end - c.start


@pytest.mark.sim
async def test_a_solo_batch_is_predicted_exactly() -> None:
    dev = Device(SimBackend(lanes=2, models=MODELS))
    await dev.start()
    assert dev.oracle.knows("a") and not dev.oracle.knows("zzz")
    await asyncio.sleep(0.0123)
    for model, b in (("a", 1), ("b", 5), ("c", 8)):
        predicted = dev.predict(model, b)
        assert predicted == pytest.approx(MODELS[model].solo_latency(b), rel=1e-12)
        dev.submit(0, model, b)
        measured = latency(await dev.wait(0))
        assert predicted == pytest.approx(measured, rel=1e-9)


@pytest.mark.sim
async def test_co_runners_that_start_and_finish_part_way() -> None:
    dev = Device(SimBackend(lanes=4, models=MODELS))
    await dev.start()
    dev.submit(0, "a", 2)
    await asyncio.sleep(0.003)
    dev.submit(1, "c", 4)
    await asyncio.sleep(0.002)
    # Both co-runners are part-way through; the new batch outlives "a" and then "c".
    before = dev.backend.running_state()
    predicted = dev.predict("b", 8)
    assert dev.backend.running_state() == before  # read on copies, never settled
    dev.submit(2, "b", 8)
    measured = latency(await dev.wait(2))
    for lane in (0, 1):
        assert dev.done[lane].end < dev.done[2].end
    assert predicted == pytest.approx(measured, rel=1e-6)
    # Interference made it slower than alone, by more than the rounding.
    assert measured > MODELS["b"].solo_latency(8) * 1.2

    # Three co-runners at different stages, a fourth joining last.
    await asyncio.sleep(0.01)
    for lane, (model, b) in enumerate((("c", 8), ("b", 2), ("a", 6))):
        dev.submit(lane, model, b)
        await asyncio.sleep(0.0025)
    predicted = dev.predict("a", 3)
    dev.submit(3, "a", 3)
    measured = latency(await dev.wait(3))
    assert predicted == pytest.approx(measured, rel=1e-6)
    assert measured > MODELS["a"].solo_latency(3) * 1.2


@pytest.mark.sim
async def test_a_hypothetical_co_runner_starts_at_its_start() -> None:
    dev = Device(SimBackend(lanes=3, models=MODELS))
    await dev.start()
    dev.submit(0, "c", 6)
    await asyncio.sleep(0.001)
    later = dev.now() + 0.002
    what_if = Running(-1, "b", 4, 2, later, later + 0.01)
    predicted = dev.predict("a", 2, what_if)
    alone = dev.predict("a", 2)
    assert predicted > alone
    dev.submit(1, "a", 2)
    await asyncio.sleep(later - dev.now())
    dev.submit(2, "b", 4)
    assert predicted == pytest.approx(latency(await dev.wait(1)), rel=1e-6)


@pytest.mark.sim
async def test_left_out_and_finished_entries() -> None:
    dev = Device(SimBackend(lanes=2, models=MODELS))
    await dev.start()
    first = dev.submit(0, "c", 8)
    # The policy's "what if it ran alone": leave the co-runner out.
    alone = dev.oracle.predict("a", 1, (), dev.now())
    assert alone == pytest.approx(MODELS["a"].solo_latency(1), rel=1e-12)
    assert dev.predict("a", 1) > alone
    await dev.wait(0)
    # Done on the device, not yet reported: an entry that started before now is not re-run.
    assert dev.oracle.predict("a", 1, [first], dev.now()) == pytest.approx(alone)


@pytest.mark.sim
async def test_a_noisy_solo_batch_is_off_by_exactly_its_noise() -> None:
    dev = Device(SimBackend(lanes=1, models={"n": exact(0.003, 0.002, noise=0.2)}, seed=7), ("n",))
    await dev.start()
    for _ in range(5):
        predicted = dev.predict("n", 3)
        dev.submit(0, "n", 3)
        (run,) = dev.backend.running_state().runs
        measured = latency(await dev.wait(0))
        assert measured == pytest.approx(predicted * run.noise, rel=1e-9)


@pytest.mark.sim
async def test_it_follows_the_device_speed() -> None:
    drift = [aiosched.Drift(at=0.01, speed=0.5)]
    dev = Device(SimBackend(lanes=1, models=MODELS, drift=drift))
    await dev.start()
    fast = dev.predict("a", 4)
    await asyncio.sleep(0.02)
    assert dev.predict("a", 4) == pytest.approx(2 * fast, rel=1e-12)


def test_attach_refuses_a_backend_without_ground_truth() -> None:
    with pytest.raises(InvalidConfig, match="sim backend"):
        OraclePredictor().attach(CpuBackend(lanes=1))
    with pytest.raises(InvalidConfig, match="sim backend"):
        aiosched.Scheduler(backend="cpu", predictor="oracle")


def test_unattached_it_guesses_and_knows_nothing() -> None:
    oracle = make_predictor("oracle")
    assert isinstance(oracle, OraclePredictor) and oracle.params() == {}
    assert not oracle.knows("resnet50")
    value = oracle.predict("resnet50", 4, (), 0.0)
    assert math.isfinite(value) and value > 0


def test_pickling_leaves_the_backend_behind() -> None:
    oracle = OraclePredictor()
    oracle.attach(SimBackend(lanes=1))
    copy_ = pickle.loads(pickle.dumps(oracle))
    assert not copy_.knows("resnet50")


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.sim
async def test_a_scheduler_serves_with_the_oracle_end_to_end(lanes: int) -> None:
    async with aiosched.Scheduler(backend="sim", lanes=lanes, predictor="oracle") as sched:
        assert isinstance(sched.predictor, OraclePredictor)
        sched.register("resnet50", max_batch_size=8)
        sched.register("vgg19", max_batch_size=8)
        await sched.ready()
        assert sched.predictor.knows("resnet50")
        results = await asyncio.gather(
            *(sched.infer("resnet50" if i % 3 else "vgg19", i, deadline=0.5) for i in range(120))
        )
        assert results == list(range(120))
        err = sched.predictor.error()
        assert err.count > 0
        if lanes == 1:
            # Nothing joins a batch once it runs: only the catalogue's 2 % noise is unknown.
            assert err.mape < 0.05
