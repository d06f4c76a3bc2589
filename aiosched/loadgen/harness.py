"""The load test harness: a workload against an embedded Scheduler, end to end.

:class:`LoadtestSession` builds the scheduler and its models for a
:class:`LoadtestConfig`, waits for the warm-up and prepares the inputs once;
then :meth:`LoadtestSession.run` drives any number of schedules through it,
one after the other, each with its own report (batch and predictor statistics
cover only that run). The peak search (:mod:`aiosched.loadgen.peak`) and
``aiosched compare`` reuse one warmed session across all their steps.

:func:`run_loadtest` is one load test: pick the rate (``auto``: a short peak
search, then :data:`AUTO_RATE_FRACTION` of the measured peak; ``peak``: the
search with the full number of steps, then a run at the peak), generate every
send up front from the seed, drive the open loop, and report.
``aiosched loadtest`` is a thin shell around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self

import torch

from ..errors import InvalidConfig
from ..fleet import Fleet, FleetSnapshot
from ..scheduler import DEFAULT_PREDICTOR, Scheduler
from ..spec import ModelSpec
from ..telemetry.snapshot import SchedulerSnapshot
from ..timeline import Execution
from .closed_loop import ClosedLoop, ClosedLoopDriver
from .driver import OpenLoopDriver, Progress, Target
from .fleet_load import FleetOptions, PlacementLog, fleet_capacity, fleet_section, front_schedulers
from .peak import (
    DEFAULT_GROWTH,
    DEFAULT_MAX_STEPS,
    DEFAULT_SLO_ATTAINMENT,
    DEFAULT_TOLERANCE,
    PeakResult,
    PeakStep,
    search_peak,
    step_from_report,
)
from .report import BatchStats, PredictorStats, build_report
from .result import LoadResult
from .trace import Trace, load_trace
from .warmup import warmup_section
from .workload import Schedule, Workload

__all__ = [
    "AUTO_RATE_FRACTION",
    "AUTO_SEARCH",
    "DEFAULT_DEADLINE_MS",
    "DEFAULT_MODELS",
    "Front",
    "FrontSnapshot",
    "PEAK_SEARCH",
    "LoadtestConfig",
    "LoadtestSession",
    "SearchSettings",
    "auto_rate",
    "capacity_estimate",
    "resolve_backend",
    "run_loadtest",
]

AUTO_RATE_FRACTION = 0.7

PLACEMENT_POLL_S = 0.1
"""Seconds between two looks at a fleet's placement during a run (the report's
``fleet.placement_over_time``): a fifth of the fleet's default rebalance period."""

DEFAULT_MODELS = {
    "sim": "resnet50,yolov8n,vit_b16",
    "cpu": "mobilenet_v3_small:2,squeezenet1_1:1",
    "cuda": "resnet50,mobilenet_v3_small,vit_b_16",
}
DEFAULT_DEADLINE_MS = {"sim": 50.0, "cpu": 300.0, "cuda": 100.0}

RATE_MODES = ("fixed", "auto", "peak", "closed")

Front = Scheduler | Fleet
"""What a load test drives: one scheduler, or a fleet of them (``--devices``)."""
FrontSnapshot = SchedulerSnapshot | FleetSnapshot


@dataclass(frozen=True)
class SearchSettings:
    """How a peak search runs: steps, tolerance, growth, and step duration per clock."""

    max_steps: int
    tolerance: float
    growth: float
    step_s_real: float
    """Seconds per step on a real clock (cpu, cuda)."""
    step_s_sim: float
    """Seconds per step on the sim backend (virtual time: longer steps cost little)."""

    def step_s(self, backend: str) -> float:
        return self.step_s_sim if backend == "sim" else self.step_s_real


AUTO_SEARCH = SearchSettings(max_steps=6, tolerance=0.1, growth=1.5, step_s_real=2.5, step_s_sim=5)
"""``--rate auto``: a short search at the start of the run."""
PEAK_SEARCH = SearchSettings(
    max_steps=DEFAULT_MAX_STEPS,
    tolerance=DEFAULT_TOLERANCE,
    growth=DEFAULT_GROWTH,
    step_s_real=5.0,
    step_s_sim=10.0,
)
"""``--rate peak`` and ``aiosched compare``: the full search."""


@dataclass(frozen=True)
class LoadtestConfig:
    """Everything a load test run depends on (the report's ``config``).

    ``rate`` is requests/s, or ``None`` for ``rate_mode`` ``"auto"`` (the
    default: a short peak search, then :data:`AUTO_RATE_FRACTION` of the
    peak) or ``"peak"`` (the full search, then a run at the peak). The
    searches use ``slo_attainment``; ``step_duration`` and ``search_steps``
    override the mode's :class:`SearchSettings` when given. ``concurrency``
    instead of a rate makes a closed loop (mode ``"closed"``:
    :mod:`aiosched.loadgen.closed_loop`), each user thinking ``think_ms``
    between requests. ``warmup`` seconds of load run before the measured run
    and are not counted (:mod:`aiosched.loadgen.warmup`).
    """

    backend: str = "auto"
    models: str | None = None
    rate: float | None = None  # None: auto or peak
    duration: float = 30.0
    arrival: str = "poisson"
    trace: str | None = None
    deadline: str | None = None
    policy: str = "edf"
    predictor: str = DEFAULT_PREDICTOR
    lanes: int = 2
    seed: int = 0
    max_batch_size: int = 8
    rate_mode: str | None = None  # None: "fixed" with a rate, else "auto"
    slo_attainment: float = DEFAULT_SLO_ATTAINMENT
    step_duration: float | None = None
    search_steps: int | None = None
    concurrency: int | None = None
    think_ms: float = 0.0
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "sim", "cpu", "cuda"):
            raise InvalidConfig(f"--backend must be auto, sim, cpu or cuda, got {self.backend!r}")
        if not self.duration > 0:
            raise InvalidConfig(f"--duration must be > 0 seconds, got {self.duration}")
        if self.rate is not None and not self.rate > 0:
            raise InvalidConfig(f"--rate must be > 0 requests/s, 'auto' or 'peak', got {self.rate}")
        if self.lanes < 1:
            raise InvalidConfig(f"--lanes must be >= 1, got {self.lanes}")
        if self.max_batch_size < 1:
            raise InvalidConfig(f"--max-batch-size must be >= 1, got {self.max_batch_size}")
        if (self.arrival == "trace") != (self.trace is not None):
            raise InvalidConfig("--arrival trace and --trace FILE go together")
        mode = self.mode
        if mode not in RATE_MODES:
            raise InvalidConfig(f"rate mode must be fixed, auto or peak, got {mode!r}")
        if self.concurrency is not None:
            if self.concurrency < 1:
                raise InvalidConfig(f"--concurrency must be >= 1, got {self.concurrency}")
            if mode != "closed" or self.rate is not None or self.trace is not None:
                raise InvalidConfig(
                    "--concurrency N is a closed loop: it takes no --rate, --arrival or --trace"
                )
        elif mode == "closed":
            raise InvalidConfig("a closed loop needs --concurrency N")
        if not (math.isfinite(self.think_ms) and self.think_ms >= 0):
            raise InvalidConfig(f"--think-ms must be >= 0, got {self.think_ms}")
        if not (math.isfinite(self.warmup) and self.warmup >= 0):
            raise InvalidConfig(f"--warmup must be >= 0 seconds, got {self.warmup}")
        if mode != "closed" and (mode == "fixed") != (self.rate is not None):
            raise InvalidConfig("a fixed rate needs --rate R; auto and peak take no rate")
        if mode == "peak" and self.trace is not None:
            raise InvalidConfig("--rate peak cannot search a trace: its rate is the trace's")
        if not (0 < self.slo_attainment <= 1):
            raise InvalidConfig(f"--slo-attainment must be in (0, 1], got {self.slo_attainment}")
        if self.step_duration is not None and not self.step_duration > 0:
            raise InvalidConfig(f"--step-duration must be > 0 seconds, got {self.step_duration}")
        if self.search_steps is not None and self.search_steps < 1:
            raise InvalidConfig(f"--search-steps must be >= 1, got {self.search_steps}")

    @property
    def mode(self) -> str:
        """``"fixed"``, ``"auto"`` or ``"peak"``."""
        if self.rate_mode is not None:
            return self.rate_mode
        if self.concurrency is not None:
            return "closed"
        return "fixed" if self.rate is not None else "auto"

    def closed_loop(self) -> ClosedLoop:
        """The closed loop of ``concurrency`` users (mode ``"closed"``)."""
        if self.concurrency is None:
            raise InvalidConfig("a closed loop needs --concurrency N")
        return ClosedLoop(
            self.concurrency, self.duration, self.think_ms / 1000.0, self.warmup, self.seed
        )


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


def _workload(cfg: LoadtestConfig, backend: str) -> tuple[Workload, Trace | None]:
    default_ms = DEFAULT_DEADLINE_MS[backend]
    if cfg.trace is not None:
        trace = load_trace(cfg.trace)
        return Workload.for_trace(trace, cfg.deadline, default_deadline_ms=default_ms), trace
    models = cfg.models or DEFAULT_MODELS[backend]
    return Workload.parse(models, cfg.deadline, default_deadline_ms=default_ms), None


def _register(
    front: Front,
    backend: str,
    names: tuple[str, ...],
    max_batch: int,
    replicas: int | None = None,
) -> None:
    # A fleet takes where each model starts; one scheduler has nowhere else to put it.
    where: dict[str, Any] = {} if isinstance(front, Scheduler) else {"replicas": replicas}
    if backend == "sim":
        for name in names:
            front.register(name, max_batch_size=max_batch, **where)
        return
    from ..models import torchvision_model

    for name in names:
        model, shape = torchvision_model(name)
        front.register(name, model, max_batch_size=max_batch, input_shape=shape, **where)


def _inputs(sched: Front) -> dict[str, Any]:
    out: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for spec in sched.models:
        if spec.input_shape is None:
            out[spec.name] = 0.0
        else:
            out[spec.name] = torch.randn(spec.input_shape, generator=gen)
    return out


def capacity_estimate(sched: Scheduler, workload: Workload, lanes: int) -> float:
    """The mix's capacity (requests/s) as the warm-up profile predicts it.

    One lane's capacity is full batches at the predicted solo latency. Lanes
    share one device, so they do not add up: ``sqrt(lanes)`` lanes' worth is
    what two lanes gave on the sim backend (1.37x one lane) and on two CPU
    cores (about 1.4x), an estimate on the safe side for more lanes. It is
    where the peak search starts.
    """
    total_share = sum(m.share for m in workload.models)
    seconds_per_request = 0.0
    for spec in sched.models:
        load = next(m for m in workload.models if m.name == spec.name)
        seconds_per_request += (load.share / total_share) / model_capacity(sched, spec, lanes)
    return 1.0 / seconds_per_request


def model_capacity(sched: Scheduler, spec: ModelSpec, lanes: int) -> float:
    """One model's capacity (requests/s) alone, as :func:`capacity_estimate` counts it."""
    b = spec.max_batch_size
    return b / sched.predictor.predict(spec.name, b, (), sched.now()) * math.sqrt(lanes)


def auto_rate(sched: Scheduler, workload: Workload, lanes: int) -> float:
    """:data:`AUTO_RATE_FRACTION` of :func:`capacity_estimate` (no measurement)."""
    return AUTO_RATE_FRACTION * capacity_estimate(sched, workload, lanes)


@contextlib.contextmanager
def _sigint_stops(
    driver: OpenLoopDriver | ClosedLoopDriver, task: asyncio.Task[Any] | None
) -> Iterator[None]:
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


def _new_executions(sched: Scheduler, after_id: int) -> list[Execution]:
    """Finished executions with an id above ``after_id`` still in the timeline's history."""
    out: list[Execution] = []
    for e in reversed(sched.timeline.history):
        if e.id <= after_id:
            break
        out.append(e)
    out.reverse()
    return out


def _last_id(sched: Scheduler) -> int:
    history = sched.timeline.history
    return history[-1].id if history else 0


def _max_concurrency(executions: list[Execution]) -> int:
    events = sorted([(e.start, 1) for e in executions] + [(e.end, -1) for e in executions])
    best = level = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        level += delta
        best = max(best, level)
    return best


def _predictor_stats(name: str, executions: list[Execution]) -> PredictorStats:
    apes = sorted(
        abs(e.predicted - e.latency) / e.latency
        for e in executions
        if not e.warmup and e.latency > 0 and math.isfinite(e.predicted)
    )
    if not apes:
        return PredictorStats(name)
    n = len(apes)
    return PredictorStats(name, sum(apes) / n, apes[min(n - 1, math.ceil(0.95 * n) - 1)])


class LoadtestSession:
    """A warmed-up scheduler for one config, that runs schedules one after another.

    ::

        async with LoadtestSession(cfg) as session:
            report = await session.run(session.schedule(rate=200.0))
            peak = await session.find_peak()

    Entering builds the scheduler (backend, lanes, policy, predictor),
    registers the models, waits for the warm-up and makes the inputs. Each
    :meth:`run` returns once every request of its schedule has resolved, so
    runs do not overlap; its report's batch and predictor statistics cover
    only that run. Bad configs (unknown models, policy, ...) raise
    :class:`~aiosched.errors.InvalidConfig` (or a loadgen error) on entering.

    With ``fleet`` the session drives a :class:`~aiosched.Fleet` of those
    devices instead (:mod:`aiosched.loadgen.fleet_load`): each device gets the
    config's lanes, policy and predictor, and each report a ``fleet`` section.
    """

    def __init__(self, cfg: LoadtestConfig, fleet: FleetOptions | None = None) -> None:
        self.cfg = cfg
        self.fleet_options = fleet
        self.backend = resolve_backend(cfg.backend)
        self.workload, self.trace = _workload(cfg, self.backend)
        known = _known_models(self.backend)
        unknown = sorted(set(self.workload.names) - known)
        if unknown:
            raise InvalidConfig(
                f"unknown model(s) for the {self.backend} backend: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        if self.backend != "sim":
            from ..models import require_zoo

            require_zoo(self.workload.names)
        self._front: Front | None = None
        self._inputs: dict[str, Any] = {}
        self.capacity_estimate_rps: float | None = None
        """:func:`capacity_estimate` once warmed up."""

    @property
    def front(self) -> Front:
        """What the load goes to: the scheduler, or the fleet."""
        if self._front is None:
            raise RuntimeError("the session is not started: use 'async with'")
        return self._front

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler of a session without a fleet."""
        front = self.front
        if not isinstance(front, Scheduler):
            raise RuntimeError("this session drives a fleet: see .front")
        return front

    async def __aenter__(self) -> Self:
        cfg = self.cfg
        front: Front
        if self.fleet_options is None:
            front = Scheduler(
                self.backend, lanes=cfg.lanes, policy=cfg.policy, predictor=cfg.predictor
            )
        else:
            front = self.fleet_options.build(cfg)
        await front.__aenter__()
        try:
            replicas = None if self.fleet_options is None else self.fleet_options.replicas
            _register(front, self.backend, self.workload.names, cfg.max_batch_size, replicas)
            await front.ready()
            self._inputs = _inputs(front)
            if isinstance(front, Scheduler):
                self.capacity_estimate_rps = capacity_estimate(front, self.workload, cfg.lanes)
            else:
                self.capacity_estimate_rps = fleet_capacity(front, self.workload, cfg.lanes)
        except BaseException as exc:
            await front.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._front = front
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._front is not None:
            await self._front.__aexit__(exc_type, exc, tb)

    def schedule(
        self, rate: float | None = None, duration: float | None = None, seed: int | None = None
    ) -> Schedule:
        """The config's arrivals (or its trace) at ``rate`` for ``duration`` s from ``seed``.

        ``duration`` and ``seed`` default to the config's; ``rate`` to its
        fixed rate (a trace replays at its own rate and ignores ``rate``).
        """
        cfg = self.cfg
        duration = cfg.duration if duration is None else duration
        if self.trace is not None:
            return self.workload.replay(self.trace, duration=duration)
        rate = cfg.rate if rate is None else rate
        if rate is None:
            raise InvalidConfig("a schedule needs a rate")
        seed = cfg.seed if seed is None else seed
        return self.workload.schedule(cfg.arrival, rate, duration, seed)

    async def run(
        self,
        schedule: Schedule | ClosedLoop,
        *,
        config: Mapping[str, Any] | None = None,
        on_start: Callable[[Front, Schedule], None] | None = None,
        on_progress: Callable[[Progress, FrontSnapshot], None] | None = None,
        progress_interval: float = 0.25,
        handle_sigint: bool = False,
        on_result: Callable[[LoadResult], None] | None = None,
        instrument: Callable[[Target], Target] | None = None,
        on_executions: Callable[[list[Execution]], None] | None = None,
        on_device_executions: Callable[[list[list[Execution]]], None] | None = None,
    ) -> dict[str, Any]:
        """Drive ``schedule`` (or a closed loop) to the end (all resolved) and return its report.

        ``config`` is merged over the report's config (the session's config,
        the backend, the offered and the requested rate, ``rate_mode``, and the
        models resolved, each with its share and deadline). ``on_result`` gets
        the driver's :class:`~aiosched.loadgen.result.LoadResult` (with its
        per-second :class:`~aiosched.loadgen.timeseries.TimeSeries`).
        ``instrument`` wraps the scheduler's ``infer`` (after ``on_start``), for
        an exporter that times the calls. ``on_executions`` gets the run's
        finished executions (``aiosched loadtest --timeline``; a fleet's, every
        device's in start order); ``on_device_executions`` the same, one list per
        device (each device numbers its executions and lanes itself). A fleet's
        batches and predictor error cover every device; ``max_concurrency`` is
        the most batches side by side on one device.
        """
        front = self.front
        scheds = front_schedulers(front)
        clock = scheds[0].clock  # a fleet's devices share one clock (the fleet checks)
        gc.collect()  # the previous run's garbage is not this run's to collect
        befores = [s.snapshot() for s in scheds]
        fleet_before = front.snapshot() if isinstance(front, Fleet) else None
        last_ids = [_last_id(s) for s in scheds]

        def progress(p: Progress) -> None:
            if on_progress is not None:
                on_progress(p, front.snapshot())

        if on_start is not None:
            on_start(
                front,
                schedule.schedule(self.workload) if isinstance(schedule, ClosedLoop) else schedule,
            )
        target = front.infer if instrument is None else instrument(front.infer)
        driver: OpenLoopDriver | ClosedLoopDriver
        if isinstance(schedule, ClosedLoop):
            driver = ClosedLoopDriver(
                target,
                self.workload,
                schedule,
                make_input=self._inputs.__getitem__,
                clock=clock,
                on_progress=progress if on_progress is not None else None,
                progress_interval=progress_interval,
            )
        else:
            driver = OpenLoopDriver(
                target,
                schedule,
                make_input=self._inputs.__getitem__,
                clock=clock,
                on_progress=progress if on_progress is not None else None,
                progress_interval=progress_interval,
            )
        placements = None
        if isinstance(front, Fleet):
            placements = PlacementLog(front, clock.now(), PLACEMENT_POLL_S)
            placements.start()
        try:
            if handle_sigint:
                with _sigint_stops(driver, asyncio.current_task()):
                    result = await driver.run()
            else:
                result = await driver.run()
        finally:
            if placements is not None:
                await placements.stop()
        if on_result is not None:
            on_result(result)
        afters = [s.snapshot() for s in scheds]
        per_device = [_new_executions(s, last) for s, last in zip(scheds, last_ids, strict=True)]
        executions = [e for device in per_device for e in device]
        if len(per_device) > 1:
            executions.sort(key=lambda e: e.start)
        if on_executions is not None:
            on_executions(executions)
        if on_device_executions is not None:
            on_device_executions(per_device)
        per_model: dict[str, dict[int, int]] = {}
        sizes: dict[int, int] = {}
        concurrency = 0
        for before, after, device_executions in zip(befores, afters, per_device, strict=True):
            device_batches = 0
            for name, m in after.models.items():
                old = before.models[name].batch_sizes if name in before.models else {}
                diff = {b: n - old.get(b, 0) for b, n in m.batch_sizes.items() if n - old.get(b, 0)}
                model_sizes = per_model.setdefault(name, {})
                for b, n in diff.items():
                    model_sizes[b] = model_sizes.get(b, 0) + n
                    sizes[b] = sizes.get(b, 0) + n
                    device_batches += n
            # Concurrency is per device: batches side by side on one device's lanes.
            if len(device_executions) >= device_batches:
                concurrency = max(concurrency, _max_concurrency(device_executions))
            else:  # the history lost some of this run's executions
                concurrency = max(concurrency, after.max_concurrency)
        cfg = self.cfg
        report_config: dict[str, Any] = {
            **asdict(cfg),
            "backend": self.backend,
            # resolved: every model with its share and deadline (the options are below)
            "models": driver.schedule.config.get("models"),
            "models_option": cfg.models,
            "rate": driver.schedule.offered_rps,
            "rate_requested": cfg.rate,
            "rate_mode": cfg.mode,
            "mode": "open",
        }
        if isinstance(driver, ClosedLoopDriver):
            report_config.update(driver.plan.config())
            report_config["rate"] = None  # the users' pace: the achieved rate is the report's
            report_config["max_in_flight"] = driver.max_in_flight
            report_config["warmup"] = warmup_section(
                driver.plan.warmup_s, driver.warmup_counts, scheduler_warmup=True
            )
        if isinstance(front, Fleet):
            assert self.fleet_options is not None
            report_config.update(self.fleet_options.config(front))
        report_config.update(config or {})
        report = build_report(
            result,
            config=report_config,
            batches=BatchStats.from_sizes(sizes, concurrency),
            predictor=_predictor_stats(afters[0].predictor, executions),
            per_model_batches={
                name: BatchStats.from_sizes(diff) for name, diff in per_model.items()
            },
        )
        if isinstance(front, Fleet):
            assert fleet_before is not None and placements is not None
            report["fleet"] = fleet_section(
                befores,
                afters,
                fleet_before,
                front.snapshot(),
                per_device,
                report["duration_s"] or 0.0,
                placements.entries,
            )
        return report

    async def measure_step(
        self, rate: float, duration: float, *, seed: int | None = None
    ) -> PeakStep:
        """One step of a peak search: a fresh schedule at ``rate`` for ``duration`` s, judged.

        Every step uses the config's seed (unless ``seed`` is given), so the
        steps differ only in their rate.
        """
        schedule = self.schedule(rate, duration, seed)
        report = await self.run(schedule, config={"rate_mode": "search"})
        return step_from_report(rate, report, self.workload, self.cfg.slo_attainment)

    async def find_peak(
        self,
        settings: SearchSettings = PEAK_SEARCH,
        *,
        start_rps: float | None = None,
        step_duration: float | None = None,
        max_steps: int | None = None,
        on_step: Callable[[PeakStep], None] | None = None,
    ) -> PeakResult:
        """Search this session's peak rate (see :func:`~aiosched.loadgen.peak.search_peak`).

        It starts at the warm-up's capacity estimate; each step lasts
        ``step_duration`` (default: the settings' for this backend).
        """
        if self.trace is not None:
            raise InvalidConfig("a peak search needs an arrival process, not a trace")
        start = start_rps if start_rps is not None else self.capacity_estimate_rps
        assert start is not None, "the session is not started"
        step_s = step_duration if step_duration is not None else settings.step_s(self.backend)

        async def measure(rate: float) -> PeakStep:
            return await self.measure_step(rate, step_s)

        return await search_peak(
            measure,
            start,
            max_steps=max_steps if max_steps is not None else settings.max_steps,
            tolerance=settings.tolerance,
            growth=settings.growth,
            slo_attainment=self.cfg.slo_attainment,
            on_step=on_step,
        )


async def run_loadtest(
    cfg: LoadtestConfig,
    *,
    on_start: Callable[[Front, Schedule], None] | None = None,
    on_progress: Callable[[Progress, FrontSnapshot], None] | None = None,
    on_peak: Callable[[PeakResult, float], None] | None = None,
    on_step: Callable[[PeakStep], None] | None = None,
    progress_interval: float = 0.25,
    handle_sigint: bool = False,
    on_result: Callable[[LoadResult], None] | None = None,
    instrument: Callable[[Target], Target] | None = None,
    on_executions: Callable[[list[Execution]], None] | None = None,
    fleet: FleetOptions | None = None,
    on_device_executions: Callable[[list[list[Execution]]], None] | None = None,
) -> tuple[dict[str, Any], FrontSnapshot]:
    """Run one load test; returns the report and the final snapshot (after closing).

    With ``rate_mode`` ``"auto"`` or ``"peak"`` (and no trace) a peak search
    runs first on the same warmed scheduler (``on_step`` sees each step,
    ``on_peak(result, rate)`` the outcome and the rate chosen); the run is
    then at :data:`AUTO_RATE_FRACTION` of the peak (auto) or at the peak.
    When no rate passed, it runs at the lowest rate tried. The report's
    ``config`` then has ``peak`` (the search, see
    :meth:`~aiosched.loadgen.peak.PeakResult.to_dict`), ``rate_fraction`` and
    ``rate_target`` (the rate asked for; ``rate`` is the offered one).
    ``on_result`` gets the measured run's :class:`~aiosched.loadgen.result.LoadResult`
    (not the search's), ``on_executions`` its finished executions
    (``on_device_executions``: one list per device). A
    ``warmup`` of S seconds runs first at the same rate and is not counted;
    ``config.warmup`` says what was left out (:mod:`aiosched.loadgen.warmup`).
    With ``concurrency`` (mode ``"closed"``) the run is a closed loop. With
    ``fleet`` the load goes to a :class:`~aiosched.Fleet` of those devices, and
    the final snapshot is the fleet's.
    """
    session = LoadtestSession(cfg, fleet)
    async with session:
        extra: dict[str, Any] = {}
        mode = cfg.mode
        rate: float | None = None
        if mode == "closed":
            pass  # the users warm up themselves, carrying on into the measured window
        elif mode == "fixed" or session.trace is not None:
            rate = cfg.rate
        else:
            settings = AUTO_SEARCH if mode == "auto" else PEAK_SEARCH
            peak = await session.find_peak(
                settings,
                step_duration=cfg.step_duration,
                max_steps=cfg.search_steps,
                on_step=on_step,
            )
            fraction = AUTO_RATE_FRACTION if mode == "auto" else 1.0
            lowest = min(s.rate_rps for s in peak.steps)
            rate = fraction * peak.peak_rps if peak.found else lowest
            extra = {
                "peak": peak.to_dict(),
                "rate_fraction": fraction,
                "rate_target": round(rate, 3),
            }
            if on_peak is not None:
                on_peak(peak, rate)
        plan: Schedule | ClosedLoop
        if mode == "closed":
            plan = cfg.closed_loop()
        else:
            warm: list[LoadResult] = []
            if cfg.warmup > 0:
                await session.run(
                    session.schedule(rate, cfg.warmup, cfg.seed + 1),
                    config={"rate_mode": "warmup"},
                    on_result=warm.append,
                )
            counts = warm[0].total().counts if warm else None
            extra["warmup"] = warmup_section(cfg.warmup, counts, scheduler_warmup=True)
            plan = session.schedule(rate)
        report = await session.run(
            plan,
            config=extra,
            on_start=on_start,
            on_progress=on_progress,
            progress_interval=progress_interval,
            handle_sigint=handle_sigint,
            on_result=on_result,
            instrument=instrument,
            on_executions=on_executions,
            on_device_executions=on_device_executions,
        )
    return report, session.front.snapshot()
