"""A simulated GPU whose lanes run in the event loop's time.

Under :class:`~aiosched.simtime.VirtualTimeLoop` an hour of traffic takes
seconds and, for a given seed and submission order, every completion time is
reproducible. There are no threads: each batch is a piece of work that drains
at a rate set by whatever runs beside it, and a single loop timer waits for
the next batch to finish.

The ground truth is deliberately richer than the predictors that will learn
it. A batch of size ``b`` alone needs ``base + per_item * b ** exponent``
seconds (times mean-one lognormal noise). While others run beside it, it
progresses at ``speed / slowdown`` of that pace, where::

    slowdown = 1 + sensitivity * P ** INTERFERENCE_EXPONENT + CROWDING * n
    P        = sum over the n co-runners of pressure * b_j ** pressure_exp

Because co-runners start and finish part-way through a batch, its latency
depends on the whole co-location history, not on who ran at dispatch time.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from ..clock import Clock, LoopClock
from ..errors import AioschedError, InvalidConfig
from ..spec import ModelSpec
from .base import Backend, Completion, DoneCallback, LaneFailure

__all__ = [
    "CATALOGUE",
    "CROWDING",
    "INTERFERENCE_EXPONENT",
    "Drift",
    "SimBackend",
    "SimModel",
    "SimModelError",
    "SimRunState",
    "SimState",
]

INTERFERENCE_EXPONENT = 1.3
"""Super-linear in the co-runners' total pressure: no linear model fits it exactly."""

CROWDING = 0.05
"""Extra slowdown per co-runner, whatever its size (context switches, launch queues)."""

# A batch whose remaining time is below this has finished: timers may fire a
# clock tick early, and float settling leaves crumbs of work behind.
_EPS = 1e-7
_HANG_FACTOR = 1e6  # how much longer a batch with a hanging input runs


class SimModelError(AioschedError):
    """A simulated model rejected an input of its batch (fault injection)."""


def _check(name: str, value: float, *, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidConfig(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class SimModel:
    """Ground truth of one simulated model: how long it takes, how it disturbs, how it suffers.

    Latencies are in seconds. ``exponent`` below 1 makes throughput saturate
    with batch size. ``pressure`` and ``pressure_exp`` say how hard a batch
    loads the shared resources; ``sensitivity`` how much it slows under load.
    ``fails`` marks inputs that make the batch raise :class:`SimModelError`;
    ``output`` maps an input to its output (default: the input itself);
    ``hangs`` marks inputs that make the batch run a million times longer than
    it should (a hung kernel: it still holds its lane, and ends only with the
    backend).
    """

    base: float
    per_item: float
    exponent: float = 0.9
    noise: float = 0.02
    pressure: float = 0.3
    pressure_exp: float = 0.5
    sensitivity: float = 0.5
    fails: Callable[[Any], bool] | None = None
    output: Callable[[Any], Any] | None = None
    hangs: Callable[[Any], bool] | None = None
    sample_input: Any = 0.0

    def __post_init__(self) -> None:
        for name in ("base", "per_item", "noise", "pressure", "pressure_exp", "sensitivity"):
            _check(f"SimModel.{name}", getattr(self, name))
        _check("SimModel.exponent", self.exponent, positive=True)
        if self.base + self.per_item <= 0:
            raise InvalidConfig("SimModel needs base or per_item > 0")

    def solo_latency(self, batch_size: int) -> float:
        """Noise-free seconds for a batch with nothing beside it, at device speed 1."""
        return self.base + self.per_item * math.pow(batch_size, self.exponent)

    def pressure_at(self, batch_size: int) -> float:
        return self.pressure * math.pow(batch_size, self.pressure_exp)

    def slowdown(self, co_pressure: float, co_runners: int) -> float:
        """How many times slower than solo this model runs next to ``co_runners`` batches."""
        if co_runners == 0:
            return 1.0
        interference = self.sensitivity * math.pow(co_pressure, INTERFERENCE_EXPONENT)
        return 1.0 + interference + CROWDING * co_runners


# SYNTHETIC numbers, not measurements: chosen to look like the paper's six
# models on one NVIDIA L4 with TensorRT (a few ms at batch 1, about 10-40 ms at
# batch 8, sub-linear growth). Small models press lightly but suffer more;
# VGG-19 and ConvNeXt-B hog the device.
_TABLE = {  # base ms, per-item ms, exponent, noise, pressure, pressure_exp, sensitivity
    "resnet50": (2.0, 1.6, 0.85, 0.02, 0.35, 0.5, 0.5),
    "yolov8n": (1.8, 1.6, 0.8, 0.03, 0.2, 0.6, 0.7),
    "roberta_base": (2.5, 2.2, 0.9, 0.02, 0.3, 0.55, 0.6),
    "vit_b16": (3.0, 3.0, 0.9, 0.02, 0.4, 0.5, 0.5),
    "vgg19": (3.0, 4.0, 0.95, 0.02, 0.5, 0.45, 0.35),
    "convnext_b": (3.5, 4.5, 0.95, 0.02, 0.45, 0.5, 0.45),
}
CATALOGUE: dict[str, SimModel] = {
    name: SimModel(base / 1e3, per_item / 1e3, exp, noise, p, p_exp, sens)
    for name, (base, per_item, exp, noise, p, p_exp, sens) in _TABLE.items()
}


@dataclass(frozen=True)
class Drift:
    """At ``at`` seconds after :meth:`SimBackend.start`, the device speed and/or models change.

    ``speed`` is absolute (0.8 means every batch takes 1/0.8 = 1.25 times its
    speed-1 time); ``models`` replaces ground truths by model name. Batches in
    flight carry on under the new parameters from that moment.
    """

    at: float
    speed: float | None = None
    models: Mapping[str, SimModel] | None = None

    def __post_init__(self) -> None:
        _check("Drift.at", self.at)
        if self.speed is not None:
            _check("Drift.speed", self.speed, positive=True)
        for name, m in (self.models or {}).items():
            if not isinstance(m, SimModel):
                raise InvalidConfig(f"Drift.models[{name!r}] must be a SimModel, got {m!r}")


@dataclass(slots=True, eq=False)
class _Run:
    lane: int
    name: str
    inputs: list[Any]
    on_done: DoneCallback
    start: float
    noise: float  # multiplies the solo latency for this one batch
    model: SimModel  # its ground truth: the run finishes even if the model is unloaded
    remaining: float = 1.0  # fraction of the batch's work still to do
    rate: float = 0.0  # fraction per second under the current co-location


class SimBackend(Backend):
    """A simulated device with ``lanes`` concurrent lanes, in the event loop's time.

    ``models`` is where :meth:`load` looks up specs without a model (default
    :data:`CATALOGUE`). ``fail_lanes`` maps a lane to the seconds after start
    at which it breaks for good: the batch on it then, and every later submit,
    completes with :class:`LaneFailure`. Completion times are loop times.
    """

    name = "sim"
    owns_clock = True

    def __init__(
        self,
        lanes: int = 2,
        models: Mapping[str, SimModel] | None = None,
        seed: int = 0,
        drift: Sequence[Drift] = (),
        fail_lanes: Mapping[int, float] | None = None,
    ) -> None:
        super().__init__(lanes)
        self._catalogue = dict(CATALOGUE if models is None else models)
        for key, m in self._catalogue.items():
            if not isinstance(m, SimModel):
                raise InvalidConfig(f"sim models[{key!r}] must be a SimModel, got {m!r}")
        if not all(isinstance(d, Drift) for d in drift):
            raise InvalidConfig("drift must be a sequence of Drift")
        self._drift = sorted(drift, key=lambda d: d.at)  # stable: same-time steps keep order
        self._fail_lanes = dict(fail_lanes or {})
        for lane, at in self._fail_lanes.items():
            self._check_lane(lane)
            _check(f"fail_lanes[{lane}]", at)
        self.seed = seed
        self._rng = random.Random(seed)
        self._speed = 1.0
        self._loaded: dict[str, SimModel] = {}
        self._running: dict[int, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Clock | None = None
        self._t0 = 0.0
        self._last = 0.0  # when remaining work was last brought up to date
        self._timer: asyncio.TimerHandle | None = None  # the next finish
        self._drift_timer: asyncio.TimerHandle | None = None
        self._fail_timers: list[asyncio.TimerHandle] = []
        self._failed: set[int] = set()
        self._closed = False

    # -- Backend contract ---------------------------------------------------

    def default_clock(self, loop: asyncio.AbstractEventLoop) -> Clock:
        return LoopClock(loop)

    async def start(self, clock: Clock) -> None:
        if self._loop is not None or self._closed:
            raise RuntimeError("SimBackend.start() may be called once, before aclose()")
        self._loop = loop = asyncio.get_running_loop()
        self._clock = clock
        self._t0 = self._last = loop.time()
        self._schedule_drift()
        for lane, at in sorted(self._fail_lanes.items()):
            self._fail_timers.append(loop.call_at(self._t0 + at, self._on_lane_failure, lane))

    def load(self, spec: ModelSpec) -> None:
        self._loaded[spec.name] = self._resolve(spec)

    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        loop = self._loop
        if loop is None or self._closed:
            raise RuntimeError("SimBackend.submit() needs start() and no aclose()")
        self._check_lane(lane)
        if lane in self._running:
            raise RuntimeError(f"lane {lane} is busy: submit only after its last completion")
        if spec.name not in self._loaded:
            raise RuntimeError(f"model {spec.name!r} was not loaded on the sim backend")
        if len(inputs) == 0:
            raise InvalidConfig("a batch needs at least one input")
        now = self._settle()
        if self._lane_failed(lane, now):
            error = LaneFailure(f"sim lane {lane} has failed")
            loop.call_soon(on_done, Completion(None, error, now, now))
            return
        model = self._loaded[spec.name]
        sigma = model.noise
        # Mean-one lognormal: noise shifts single batches, not the average.
        noise = self._rng.lognormvariate(-sigma * sigma / 2, sigma) if sigma > 0 else 1.0
        hangs = model.hangs
        if hangs is not None and any(hangs(x) for x in inputs):
            noise *= _HANG_FACTOR
        self._running[lane] = _Run(lane, spec.name, list(inputs), on_done, now, noise, model)
        self._replan()

    def unload(self, name: str) -> None:
        self._loaded.pop(name, None)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for handle in (self._timer, self._drift_timer, *self._fail_timers):
            if handle is not None:
                handle.cancel()
        self._timer = self._drift_timer = None
        self._fail_timers.clear()
        if self._loop is None:
            return
        now = self._settle()
        runs, self._running = list(self._running.values()), {}
        for run in runs:
            error = LaneFailure(f"sim backend closed while lane {run.lane} was running")
            self._loop.call_soon(run.on_done, Completion(None, error, run.start, now))
        if runs:
            await asyncio.sleep(0)  # the callbacks scheduled above run before we return

    def sample_input(self, spec: ModelSpec) -> Any:
        model = self._loaded.get(spec.name)
        return (model if model is not None else self._resolve(spec)).sample_input

    def describe(self) -> dict[str, Any]:
        names = sorted(self._catalogue.keys() | self._loaded.keys())
        return {**super().describe(), "models": names, "seed": self.seed}

    # -- ground truth for tests and experiments -------------------------------

    @property
    def speed(self) -> float:
        return self._speed

    def solo_latency(self, name: str, batch_size: int) -> float:
        """Noise-free seconds of a batch of ``name`` alone on the device as it is now."""
        model = self._loaded.get(name, self._catalogue.get(name))
        if model is None:
            raise InvalidConfig(f"sim backend has no model named {name!r}")
        return model.solo_latency(batch_size) / self._speed

    @property
    def started_at(self) -> float:
        """The loop time :meth:`start` was called at (drift times count from it)."""
        return self._t0

    def add_drift(self, steps: Sequence[Drift]) -> None:
        """Schedule more drift steps (times from :meth:`start`, like the constructor's)."""
        if not all(isinstance(d, Drift) for d in steps):
            raise InvalidConfig("drift must be a sequence of Drift")
        self._drift = sorted([*self._drift, *steps], key=lambda d: d.at)
        if self._drift_timer is not None:
            self._drift_timer.cancel()
            self._drift_timer = None
        self._schedule_drift()

    # -- the simulation ---------------------------------------------------------

    def _resolve(self, spec: ModelSpec) -> SimModel:
        if isinstance(spec.model, SimModel):
            return spec.model
        if spec.model is not None:
            raise InvalidConfig(
                f"{spec.name}: the sim backend runs SimModel ground truths, "
                f"got {type(spec.model).__name__}"
            )
        model = self._catalogue.get(spec.name)
        if model is None:
            known = ", ".join(sorted(self._catalogue)) or "none"
            raise InvalidConfig(
                f"sim backend has no model named {spec.name!r} (known: {known}); "
                "pass ModelSpec(name, SimModel(...)) to define one"
            )
        return model

    def _check_lane(self, lane: int) -> None:
        if isinstance(lane, bool) or not isinstance(lane, int) or not 0 <= lane < self.lanes:
            raise InvalidConfig(f"lane must be an int in [0, {self.lanes}), got {lane!r}")

    def _lane_failed(self, lane: int, now: float) -> bool:
        at = self._fail_lanes.get(lane)
        return lane in self._failed or (at is not None and now >= self._t0 + at)

    def _settle(self) -> float:
        """Drain every running batch at its current rate up to now; return now."""
        assert self._loop is not None
        now = self._loop.time()
        elapsed = now - self._last
        if elapsed > 0:
            for run in self._running.values():
                run.remaining -= run.rate * elapsed
        self._last = now
        return now

    def _replan(self) -> None:
        """After any change: new rates for everyone, and one timer for the next finish."""
        assert self._loop is not None
        runs = list(self._running.values())
        pressures = [r.model.pressure_at(len(r.inputs)) for r in runs]
        for i, run in enumerate(runs):
            model = run.model
            co = sum(p for j, p in enumerate(pressures) if j != i)
            work = model.solo_latency(len(run.inputs)) * run.noise
            run.rate = self._speed / (work * model.slowdown(co, len(runs) - 1))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if runs:
            when = min(self._last + max(r.remaining, 0.0) / r.rate for r in runs)
            self._timer = self._loop.call_at(when, self._on_finish)

    def _on_finish(self) -> None:
        self._timer = None
        now = self._settle()
        done = [r for r in self._running.values() if r.remaining <= r.rate * _EPS]
        for run in done:
            del self._running[run.lane]
        self._replan()
        for run in done:
            self._complete(run, now)

    def _complete(self, run: _Run, now: float) -> None:
        assert self._loop is not None
        model = run.model
        outputs: list[Any] | None = None
        error: BaseException | None = None
        try:
            fails = model.fails
            bad = [i for i, x in enumerate(run.inputs) if fails is not None and fails(x)]
            if bad:
                error = SimModelError(f"{run.name}: rejected input(s) at batch index {bad}")
            else:
                out = model.output
                outputs = [out(x) if out is not None else x for x in run.inputs]
        except KeyboardInterrupt:
            # The hooks run on the loop's (main) thread, where a Ctrl-C lands: that is the
            # user's, not the model's. (On the cpu and cuda backends' lane threads no
            # signal can arrive, so there a KeyboardInterrupt is the model's own raise.)
            raise
        except BaseException as exc:  # a faulty fails/output hook is the model raising,
            error = exc  # sys.exit() included: a model does not end the application
        self._loop.call_soon(run.on_done, Completion(outputs, error, run.start, now))

    def _schedule_drift(self) -> None:
        # One timer at a time, so steps due at the same instant apply in list order.
        if self._drift and self._loop is not None:
            when = self._t0 + self._drift[0].at
            self._drift_timer = self._loop.call_at(when, self._on_drift)

    def _on_drift(self) -> None:
        self._drift_timer = None
        now = self._settle()
        while self._drift and self._t0 + self._drift[0].at <= now + _EPS:
            step = self._drift.pop(0)
            if step.speed is not None:
                self._speed = step.speed
            for name, model in (step.models or {}).items():
                self._catalogue[name] = model
                if name in self._loaded:
                    self._loaded[name] = model
                    for run in self._running.values():
                        if run.name == name:
                            run.model = model
        self._schedule_drift()
        self._replan()

    def _on_lane_failure(self, lane: int) -> None:
        self._failed.add(lane)
        self._settle()
        run = self._running.pop(lane, None)
        if run is None:
            return
        self._replan()
        assert self._loop is not None
        error = LaneFailure(f"sim lane {lane} failed while running a batch of {run.name}")
        self._loop.call_soon(run.on_done, Completion(None, error, run.start, self._last))

    # -- a read-only view of the device (the oracle predictor) ------------------

    def running_state(self) -> SimState:
        """Copies of the batches on the device as of its last settle; changes nothing."""
        runs = tuple(
            SimRunState(r.lane, r.name, len(r.inputs), r.start, r.noise, r.remaining, r.rate)
            for r in self._running.values()
        )
        return SimState(self._last, self._speed, runs, MappingProxyType(self._loaded))


class SimRunState(NamedTuple):
    """One running batch: ``remaining`` work fraction at ``SimState.at``, drained at ``rate``/s."""

    lane: int
    name: str
    batch_size: int
    start: float
    noise: float
    remaining: float
    rate: float


class SimState(NamedTuple):
    """:meth:`SimBackend.running_state`: the runs (in submission order) as of time ``at``."""

    at: float
    speed: float
    runs: tuple[SimRunState, ...]
    models: Mapping[str, SimModel]  # the loaded ground truths (a read-only view)
