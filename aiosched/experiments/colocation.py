"""Tail latency against the number of co-located tasks, sequential and concurrent (Fig. 3).

``k`` closed-loop tasks of one model each submit a batch, wait for it and
submit again, until ``duration`` seconds have passed (or ``batches`` batches
each). *concurrent*: the ``k`` tasks run on ``k`` lanes of the device at once,
each task owning a lane, so they slow each other down (interference).
*sequential*: the same ``k`` tasks share one lane, served in arrival order,
one batch at a time on the device, so each waits behind the others
(head-of-line blocking). A batch's latency is measured from its task's
submission to its completion, so the sequential wait is in it.

The backend is driven directly through :class:`~aiosched.backends.base.Backend`
(``start``, ``load``, ``submit``, ``aclose``), so no scheduling policy or
predictor enters the figure. ``sim`` runs in virtual time (seconds of
traffic take a fraction of that); ``cpu`` and ``cuda`` on the real clock,
each point on a fresh backend after a few untimed warm-up batches per lane.
On ``cpu`` every lane is one worker thread with ``threads_per_lane`` intra-op
threads, in both modes: there, running concurrently also means using more
cores.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .. import simtime
from .._runtime import run as run_real
from ..backends import make_backend
from ..backends.base import Backend, Completion
from ..clock import Clock, LoopClock, PerfClock
from ..errors import InvalidConfig
from ..spec import ModelSpec
from .setup import check_backend, load_models

__all__ = ["DEFAULT_MODELS", "MODES", "ColocationConfig", "quantile", "run"]

MODES = ("sequential", "concurrent")
DEFAULT_MODELS = {"sim": "resnet50", "cpu": "mobilenet_v3_small", "cuda": "resnet50"}
_DEFAULT_DURATION = {"sim": 10.0, "cpu": 2.0, "cuda": 2.0}


@dataclass(frozen=True)
class ColocationConfig:
    """One sweep: every ``k`` in ``tasks``, once per mode in ``modes``.

    ``duration`` (seconds of traffic per point; default 10 on ``sim``, 2 on
    real devices) and ``batches`` (per task) both stop a point, whichever
    comes first. ``warmup`` untimed batches per lane run before each point on
    real devices (never on ``sim``); ``solo_batches`` batches alone measure the
    reference solo latency.
    """

    backend: str = "sim"
    model: str | None = None
    tasks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    batch_size: int = 1
    duration: float | None = None
    batches: int | None = None
    modes: tuple[str, ...] = MODES
    warmup: int = 3
    solo_batches: int = 50
    threads_per_lane: int = 1
    seed: int = 0

    @property
    def model_name(self) -> str:
        return self.model if self.model is not None else DEFAULT_MODELS[self.backend]

    @property
    def seconds(self) -> float:
        return self.duration if self.duration is not None else _DEFAULT_DURATION[self.backend]

    def with_overrides(self, **overrides: Any) -> ColocationConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        """Raise :class:`InvalidConfig` for anything that cannot run (models are checked too)."""
        check_backend(self.backend)
        if not self.tasks or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.tasks
        ):
            raise InvalidConfig(f"tasks must be integers >= 1, got {self.tasks!r}")
        if len(set(self.tasks)) != len(self.tasks):
            raise InvalidConfig("a task count is given twice")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise InvalidConfig(f"modes must be among {', '.join(MODES)}, got {self.modes!r}")
        for name in ("batch_size", "solo_batches", "threads_per_lane"):
            if getattr(self, name) < 1:
                raise InvalidConfig(f"{name} must be >= 1")
        if self.warmup < 0:
            raise InvalidConfig("warmup must be >= 0")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise InvalidConfig(f"duration must be a number of seconds > 0, got {self.duration!r}")
        if self.batches is not None and self.batches < 1:
            raise InvalidConfig("batches must be >= 1")
        if self.backend == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise InvalidConfig("the cuda backend needs a CUDA GPU, and torch sees none here")
        from .setup import check_models

        check_models(self.backend, [self.model_name])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(model=self.model_name, duration=self.seconds, tasks=list(self.tasks))
        out["modes"] = list(self.modes)
        return out


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linearly interpolated; NaN when empty."""
    if not ordered:
        return math.nan
    rank = q * (len(ordered) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass
class _Point:
    latencies: list[float] = field(default_factory=list)
    first: float = math.inf
    last: float = -math.inf

    def add(self, submitted: float, completion: Completion) -> None:
        if completion.error is not None:
            raise completion.error
        self.latencies.append(completion.end - submitted)
        self.last = max(self.last, completion.end)

    def row(self, k: int, mode: str, batch_size: int, solo: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        n = len(ordered)
        span = self.last - self.first
        per_s = n / span if n and span > 0 else math.nan
        mean = sum(ordered) / n if n else math.nan
        p99 = quantile(ordered, 0.99)
        return {
            "tasks": k,
            "mode": mode,
            "batches": n,
            "mean_s": mean,
            "p50_s": quantile(ordered, 0.5),
            "p99_s": p99,
            "max_s": ordered[-1] if n else math.nan,
            "p99_over_solo": p99 / solo if solo > 0 else math.nan,
            "batches_per_s": per_s,
            "samples_per_s": per_s * batch_size,
            "span_s": span,
        }


class _Device:
    """One backend, its model loaded, and a way to run a batch on a lane and wait for it."""

    def __init__(self, backend: Backend, clock: Clock, spec: ModelSpec, sample: Any) -> None:
        self.backend = backend
        self.clock = clock
        self.spec = spec
        self.inputs = [sample] * spec.max_batch_size

    async def batch(self, lane: int) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()

        def on_done(completion: Completion) -> None:
            if not future.done():
                future.set_result(completion)

        self.backend.submit(lane, self.spec, self.inputs, on_done)
        return await future


class _OneLane:
    """Batches from many tasks queued for one lane, run one at a time in arrival order."""

    def __init__(self, device: _Device) -> None:
        self._device = device
        self._queue: deque[asyncio.Future[Completion]] = deque()
        self._busy = False

    async def batch(self, task: int) -> Completion:
        """Task ``task``'s next batch, after those queued before it."""
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        if not self._busy:
            self._next()
        return await future

    def _next(self) -> None:
        while self._queue and self._queue[0].done():
            self._queue.popleft()  # a cancelled waiter
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        waiter = self._queue.popleft()
        device = self._device

        def on_done(completion: Completion) -> None:
            if not waiter.done():
                waiter.set_result(completion)
            self._next()

        device.backend.submit(0, device.spec, device.inputs, on_done)


def _make_backend(config: ColocationConfig, lanes: int) -> tuple[Backend, Clock | None]:
    """The backend and its clock (``None``: the loop's, for the sim backend in virtual time)."""
    if config.backend == "sim":
        return make_backend("sim", lanes, seed=config.seed), None
    if config.backend == "cuda":
        return make_backend("cuda", lanes), PerfClock()
    return make_backend("cpu", lanes, threads_per_lane=config.threads_per_lane), PerfClock()


async def _open(config: ColocationConfig, lanes: int, entry: Any) -> _Device:
    backend, clock = _make_backend(config, lanes)
    if clock is None:
        clock = LoopClock(asyncio.get_running_loop())
    await backend.start(clock)
    spec = entry.spec(config.batch_size)
    try:
        backend.load(spec)
    except BaseException:
        await backend.aclose()
        raise
    return _Device(backend, clock, spec, entry.sample)


async def _closed_loop(
    device: _Device,
    k: int,
    run_one: Callable[[int], Awaitable[Completion]],
    config: ColocationConfig,
) -> _Point:
    """``k`` tasks, each submitting its next batch when the last is back."""
    point = _Point()
    clock = device.clock
    point.first = start = clock.now()
    end = start + config.seconds
    limit = config.batches if config.batches is not None else math.inf

    async def task(i: int) -> None:
        done = 0
        while done < limit and clock.now() < end:
            submitted = clock.now()
            point.add(submitted, await run_one(i))
            done += 1

    await asyncio.gather(*(task(i) for i in range(k)))
    return point


async def _warm(device: _Device, lanes: int, batches: int) -> None:
    for _ in range(batches):
        await asyncio.gather(*(device.batch(lane) for lane in range(lanes)))


async def _measure(
    config: ColocationConfig, entry: Any, on_stage: Callable[[str], None]
) -> dict[str, Any]:
    real = config.backend != "sim"
    on_stage("solo latency")
    device = await _open(config, 1, entry)
    try:
        if real:
            await _warm(device, 1, config.warmup)
        solo_point = _Point()
        for _ in range(config.solo_batches):
            submitted = device.clock.now()
            solo_point.add(submitted, await device.batch(0))
    finally:
        await device.backend.aclose()
    solo = sum(solo_point.latencies) / len(solo_point.latencies)
    rows: list[dict[str, Any]] = []
    for k in config.tasks:
        for mode in config.modes:
            on_stage(f"{mode}, {k} task{'s' if k > 1 else ''}")
            lanes = k if mode == "concurrent" else 1
            device = await _open(config, lanes, entry)
            try:
                if real:
                    await _warm(device, lanes, config.warmup)
                if mode == "concurrent":
                    point = await _closed_loop(device, k, device.batch, config)
                else:
                    point = await _closed_loop(device, k, _OneLane(device).batch, config)
            finally:
                await device.backend.aclose()
            rows.append(point.row(k, mode, config.batch_size, solo))
    return {
        "solo": {
            "mean_s": solo,
            "p99_s": quantile(sorted(solo_point.latencies), 0.99),
            "batches": len(solo_point.latencies),
        },
        "points": rows,
    }


def run(
    config: ColocationConfig, on_stage: Callable[[str], None] = lambda _s: None
) -> dict[str, Any]:
    """Run the sweep; a JSON-able dict: ``config``, ``solo`` and one row per (tasks, mode).

    Each row: ``tasks``, ``mode``, ``batches``, ``mean_s``, ``p50_s``, ``p99_s``,
    ``max_s``, ``p99_over_solo``, ``batches_per_s``, ``samples_per_s`` and
    ``span_s`` (first submission to last completion).
    """
    config.validate()
    (entry,) = load_models(config.backend, [config.model_name])
    wall = time.perf_counter()
    if config.backend == "sim":
        data = simtime.run(_measure(config, entry, on_stage))
    else:
        data = run_real(_measure(config, entry, on_stage))
    out: dict[str, Any] = {"config": config.to_dict(), **data}
    if config.backend == "sim":
        from ..backends.sim import CATALOGUE

        out["solo"]["truth_s"] = CATALOGUE[config.model_name].solo_latency(config.batch_size)
    out["wall_s"] = time.perf_counter() - wall
    return out
