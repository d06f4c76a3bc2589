"""The load test harness: a workload against an embedded Scheduler, end to end.

It builds the scheduler and its models, waits for the warm-up, picks the rate
(``auto``: about 70 % of the capacity the warm-up profile implies), generates
every send up front from the seed, drives the open loop, and turns the result
and the scheduler's statistics into the report. ``aiosched loadtest`` is a
thin shell around :func:`run_loadtest`; comparisons run it once per policy on
the same seed, so every policy sees the same arrivals.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import InvalidConfig
from ..scheduler import DEFAULT_PREDICTOR, Scheduler
from ..telemetry.snapshot import SchedulerSnapshot
from .driver import OpenLoopDriver, Progress
from .report import BatchStats, PredictorStats, build_report
from .trace import load_trace
from .workload import Schedule, Workload

__all__ = [
    "AUTO_RATE_FRACTION",
    "DEFAULT_DEADLINE_MS",
    "DEFAULT_MODELS",
    "LoadtestConfig",
    "resolve_backend",
    "run_loadtest",
]

AUTO_RATE_FRACTION = 0.7

DEFAULT_MODELS = {
    "sim": "resnet50,yolov8n,vit_b16",
    "cpu": "mobilenet_v3_small:2,squeezenet1_1:1",
    "cuda": "resnet50,mobilenet_v3_small,vit_b_16",
}
DEFAULT_DEADLINE_MS = {"sim": 50.0, "cpu": 300.0, "cuda": 100.0}


@dataclass(frozen=True)
class LoadtestConfig:
    """Everything a load test run depends on (the report's ``config``)."""

    backend: str = "auto"
    models: str | None = None
    rate: float | None = None  # None: auto
    duration: float = 30.0
    arrival: str = "poisson"
    trace: str | None = None
    deadline: str | None = None
    policy: str = "edf"
    predictor: str = DEFAULT_PREDICTOR
    lanes: int = 2
    seed: int = 0
    max_batch_size: int = 8

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "sim", "cpu", "cuda"):
            raise InvalidConfig(f"--backend must be auto, sim, cpu or cuda, got {self.backend!r}")
        if not self.duration > 0:
            raise InvalidConfig(f"--duration must be > 0 seconds, got {self.duration}")
        if self.rate is not None and not self.rate > 0:
            raise InvalidConfig(f"--rate must be > 0 requests/s or 'auto', got {self.rate}")
        if self.lanes < 1:
            raise InvalidConfig(f"--lanes must be >= 1, got {self.lanes}")
        if self.max_batch_size < 1:
            raise InvalidConfig(f"--max-batch-size must be >= 1, got {self.max_batch_size}")
        if (self.arrival == "trace") != (self.trace is not None):
            raise InvalidConfig("--arrival trace and --trace FILE go together")


def resolve_backend(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _known_models(backend: str) -> set[str]:
    if backend == "sim":
        from ..backends.sim import CATALOGUE

        return set(CATALOGUE)
    from ..models import ZOO

    return set(ZOO)


def _workload(cfg: LoadtestConfig, backend: str) -> tuple[Workload, Any]:
    default_ms = DEFAULT_DEADLINE_MS[backend]
    if cfg.trace is not None:
        trace = load_trace(cfg.trace)
        return Workload.for_trace(trace, cfg.deadline, default_deadline_ms=default_ms), trace
    models = cfg.models or DEFAULT_MODELS[backend]
    return Workload.parse(models, cfg.deadline, default_deadline_ms=default_ms), None


def _register(sched: Scheduler, backend: str, names: tuple[str, ...], max_batch: int) -> None:
    if backend == "sim":
        for name in names:
            sched.register(name, max_batch_size=max_batch)
        return
    from ..models import torchvision_model

    for name in names:
        model, shape = torchvision_model(name)
        sched.register(name, model, max_batch_size=max_batch, input_shape=shape)


def _inputs(backend: str, sched: Scheduler) -> dict[str, Any]:
    out: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for spec in sched.models:
        if spec.input_shape is None:
            out[spec.name] = 0.0
        else:
            out[spec.name] = torch.randn(spec.input_shape, generator=gen)
    return out


def auto_rate(sched: Scheduler, workload: Workload, lanes: int) -> float:
    """About 70 % of the mix's capacity as the warm-up measured it.

    One lane's capacity is full batches at the predicted solo latency. Lanes
    share one device, so they do not add up: ``sqrt(lanes)`` lanes' worth is
    what two lanes gave on the sim backend (1.37x one lane) and on two CPU
    cores (about 1.4x), an estimate on the safe side for more lanes.
    """
    now = sched.now()
    total_share = sum(m.share for m in workload.models)
    seconds_per_request = 0.0
    for spec in sched.models:
        load = next(m for m in workload.models if m.name == spec.name)
        b = spec.max_batch_size
        per_lane = b / sched.predictor.predict(spec.name, b, (), now)
        seconds_per_request += (load.share / total_share) / (per_lane * math.sqrt(lanes))
    return AUTO_RATE_FRACTION / seconds_per_request


@contextlib.contextmanager
def _sigint_stops(driver: OpenLoopDriver, task: asyncio.Task[Any] | None) -> Iterator[None]:
    """First Ctrl-C: stop sending and drain. Second: cancel what is still in flight."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            driver.stop()
        elif task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def run_loadtest(
    cfg: LoadtestConfig,
    *,
    on_start: Callable[[Scheduler, Schedule], None] | None = None,
    on_progress: Callable[[Progress, SchedulerSnapshot], None] | None = None,
    progress_interval: float = 0.25,
    handle_sigint: bool = False,
) -> tuple[dict[str, Any], SchedulerSnapshot]:
    """Run one load test; returns the report (issue 5's shape) and the final snapshot."""
    backend = resolve_backend(cfg.backend)
    workload, trace = _workload(cfg, backend)
    unknown = sorted(set(workload.names) - _known_models(backend))
    if unknown:
        raise InvalidConfig(
            f"unknown model(s) for the {backend} backend: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_known_models(backend)))}"
        )
    sched = Scheduler(backend, lanes=cfg.lanes, policy=cfg.policy, predictor=cfg.predictor)
    async with sched:
        _register(sched, backend, workload.names, cfg.max_batch_size)
        await sched.ready()
        rate = cfg.rate if cfg.rate is not None else auto_rate(sched, workload, cfg.lanes)
        if trace is not None:
            schedule = workload.replay(trace, duration=cfg.duration)
        else:
            schedule = workload.schedule(cfg.arrival, rate, cfg.duration, cfg.seed)
        inputs = _inputs(backend, sched)

        def progress(p: Progress) -> None:
            if on_progress is not None:
                on_progress(p, sched.snapshot())

        driver = OpenLoopDriver(
            sched.infer,
            schedule,
            make_input=inputs.__getitem__,
            clock=sched.clock,
            on_progress=progress,
            progress_interval=progress_interval,
        )
        if on_start is not None:
            on_start(sched, schedule)
        if handle_sigint:
            with _sigint_stops(driver, asyncio.current_task()):
                result = await driver.run()
        else:
            result = await driver.run()
        snap = sched.snapshot()
    snap = sched.snapshot()
    sizes: dict[int, int] = {}
    for m in snap.models.values():
        for b, n in m.batch_sizes.items():
            sizes[b] = sizes.get(b, 0) + n
    config = {**asdict(cfg), "backend": backend, "rate": schedule.offered_rps}
    config["rate_mode"] = "auto" if cfg.rate is None else "fixed"
    report = build_report(
        result,
        config=config,
        batches=BatchStats.from_sizes(sizes, snap.max_concurrency),
        predictor=PredictorStats(snap.predictor, snap.predictor_mape, snap.predictor_p95_ape),
        per_model_batches={
            name: BatchStats.from_sizes(m.batch_sizes) for name, m in snap.models.items()
        },
    )
    return report, snap
