"""MLPerf LoadGen drives an embedded aiosched Scheduler (extra ``mlperf``: mlcommons-loadgen).

:class:`SchedulerSUT` is a LoadGen *system under test*: LoadGen calls its
``issue_queries`` from LoadGen's own threads; each sample becomes one
``sched.infer()`` on a Scheduler whose asyncio loop runs in a thread of its
own (handed over with ``call_soon_threadsafe``, the only thread-safe entry
into a loop), and every finished sample is reported back with
``QuerySamplesComplete`` (batched: once per loop iteration). The scheduler is
best effort (MLPerf has no rejections: every sample must run), and a sample
whose call fails is still completed, and counted in :attr:`SchedulerSUT.errors`.

:func:`run_mlperf` runs one LoadGen test in performance mode and returns its
summary (``mlperf_log_summary.txt``) with aiosched's own counts.
``aiosched mlperf`` is a thin shell around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AioschedError, InvalidConfig

__all__ = [
    "SCENARIOS",
    "MlperfConfig",
    "MlperfResult",
    "SchedulerSUT",
    "require_loadgen",
    "run_mlperf",
]

SCENARIOS: dict[str, str] = {
    "server": "Server",
    "offline": "Offline",
    "singlestream": "SingleStream",
}
"""``--scenario`` -> LoadGen's ``TestScenario`` member."""

DEFAULT_MODEL = {"sim": "resnet50", "cpu": "mobilenet_v3_small"}
DEFAULT_LATENCY_MS = {"sim": 50.0, "cpu": 300.0}
SERVER_LOAD = 0.5
"""Server's default rate: this fraction of the warm-up's capacity estimate."""
OFFLINE_DEADLINE_S = 3600.0
"""Offline has no latency bound: each sample's deadline is this far away."""


def require_loadgen() -> Any:
    """The ``mlperf_loadgen`` module, or :class:`InvalidConfig` naming the extra to install."""
    try:
        return importlib.import_module("mlperf_loadgen")
    except ImportError:
        raise InvalidConfig(
            "aiosched mlperf needs MLPerf LoadGen (mlcommons-loadgen): "
            "pip install 'aiosched[mlperf]'"
        ) from None


@dataclass(frozen=True)
class MlperfConfig:
    """One LoadGen test: the scenario, the scheduler under it, and LoadGen's bounds."""

    scenario: str = "server"
    backend: str = "sim"
    model: str | None = None
    """Default: :data:`DEFAULT_MODEL` of the backend."""
    lanes: int = 2
    max_batch_size: int = 8
    target_qps: float | None = None
    """Server: the arrival rate (default :data:`SERVER_LOAD` of the capacity estimate);
    Offline: the expected rate, which sizes the one query (default: the estimate)."""
    latency_ms: float | None = None
    """Server: the latency bound LoadGen checks; Server and SingleStream: each sample's
    deadline (default :data:`DEFAULT_LATENCY_MS`)."""
    expected_latency_ms: float | None = None
    """SingleStream: the latency LoadGen expects, which sizes the run (default: the
    warm-up's prediction for one sample alone)."""
    min_duration_s: float = 5.0
    min_queries: int = 64
    samples: int = 1024
    """The query sample library's size (and its performance sample count)."""
    log_dir: str | None = None
    """Where LoadGen writes its logs (default: a temporary directory, removed after)."""

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InvalidConfig(
                f"--scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}"
            )
        if self.backend not in DEFAULT_MODEL:
            raise InvalidConfig(f"--backend must be sim or cpu, got {self.backend!r}")
        for name, value in (
            ("--target-qps", self.target_qps),
            ("--latency", self.latency_ms),
            ("--expected-latency", self.expected_latency_ms),
            ("--duration", self.min_duration_s),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InvalidConfig(f"{name} must be a finite number > 0, got {value}")
        for name, count in (
            ("--lanes", self.lanes),
            ("--max-batch-size", self.max_batch_size),
            ("--min-queries", self.min_queries),
            ("--samples", self.samples),
        ):
            if count < 1:
                raise InvalidConfig(f"{name} must be >= 1, got {count}")

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODEL[self.backend]

    @property
    def latency_s(self) -> float:
        return (self.latency_ms or DEFAULT_LATENCY_MS[self.backend]) / 1000.0

    @property
    def deadline_s(self) -> float:
        """Each sample's deadline: the latency bound, or none to speak of in Offline."""
        return OFFLINE_DEADLINE_S if self.scenario == "offline" else self.latency_s


@dataclass(frozen=True)
class MlperfResult:
    """LoadGen's summary, as LoadGen wrote it, and aiosched's counts."""

    summary: str
    issued: int
    completed: int
    met_deadline: int
    errors: int
    log_dir: str | None


class SchedulerSUT:
    """A LoadGen SUT backed by a Scheduler on an asyncio loop in its own thread.

    ``start()`` starts the thread, builds the scheduler, registers the model
    and waits for its warm-up; ``issue_queries`` and ``flush_queries`` are
    LoadGen's callbacks (any thread); ``stop()`` drains and joins. ``complete``
    is LoadGen's ``QuerySamplesComplete`` wrapped (it takes ``[(id, ok)]``), so
    that the bridge can be tested without LoadGen.
    """

    def __init__(
        self,
        cfg: MlperfConfig,
        complete: Callable[[list[tuple[int, bool]]], None],
        *,
        ready_timeout: float = 300.0,
    ) -> None:
        self.cfg = cfg
        self._complete = complete
        self._ready_timeout = ready_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._input: Any = 0.0
        self._sched: Any = None
        self._done: list[tuple[int, bool]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.solo_s: float | None = None
        """The warm-up's prediction for one sample alone (seconds), once started."""
        self.capacity_rps: float | None = None
        """The warm-up's capacity estimate (full batches on every lane), once started."""
        self.issued = 0
        self.completed = 0
        self.met_deadline = 0
        self.errors = 0

    # -- the loop's thread ---------------------------------------------------

    def start(self) -> None:
        """Start the loop's thread and wait until the model is warmed up (or raise its error)."""
        self._thread = threading.Thread(target=self._main, name="aiosched-mlperf", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._ready_timeout):
            raise AioschedError(f"the scheduler was not ready within {self._ready_timeout:g} s")
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    def _main(self) -> None:
        from .._runtime import loop_factory

        loop = loop_factory()()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        from ..loadgen.harness import model_capacity
        from ..scheduler import Scheduler

        cfg = self.cfg
        self._stop = asyncio.Event()
        async with Scheduler(cfg.backend, lanes=cfg.lanes, best_effort=True) as sched:
            name = cfg.model_name
            if cfg.backend == "sim":
                sched.register(name, max_batch_size=cfg.max_batch_size)
            else:
                import torch

                from ..models import torchvision_model

                model, shape = torchvision_model(name)
                sched.register(name, model, max_batch_size=cfg.max_batch_size, input_shape=shape)
                self._input = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            await sched.ready()
            self.solo_s = sched.predictor.predict(name, 1, (), sched.now())
            self.capacity_rps = model_capacity(sched, sched.models[0], cfg.lanes)
            self._sched = sched
            self._ready.set()
            await self._stop.wait()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._flush()

    # -- LoadGen's callbacks (its threads) ------------------------------------

    def issue_queries(self, query_samples: list[Any]) -> None:
        """LoadGen's ``issue_query``: hand the samples' ids to the loop's thread."""
        ids = [int(s.id) for s in query_samples]
        loop = self._loop
        try:
            if loop is None:
                raise RuntimeError("not started")
            loop.call_soon_threadsafe(self._submit, ids)
        except RuntimeError:  # never started, or its loop is gone: LoadGen must hear back
            self.errors += len(ids)
            self._complete([(i, False) for i in ids])

    def flush_queries(self) -> None:
        """LoadGen's ``flush_queries``: nothing is held back, so nothing to flush."""

    # -- on the loop ------------------------------------------------------------

    def _submit(self, ids: list[int]) -> None:
        self.issued += len(ids)
        for sample_id in ids:
            task = asyncio.ensure_future(self._one(sample_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, sample_id: int) -> None:
        sched = self._sched
        ok = False
        try:
            start = sched.now()
            await sched.infer(self.cfg.model_name, self._input, deadline=self.cfg.deadline_s)
            ok = True
            if sched.now() - start <= self.cfg.deadline_s:
                self.met_deadline += 1
        except AioschedError:
            self.errors += 1
        finally:
            self.completed += 1
            if not self._done:
                asyncio.get_running_loop().call_soon(self._flush)
            self._done.append((sample_id, ok))

    def _flush(self) -> None:
        done, self._done = self._done, []
        if done:
            self._complete(done)

    def stop(self) -> None:
        """Let the scheduler finish what it runs, close it, and join the loop's thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join()
        if self._failure is not None:
            raise self._failure


def _settings(lg: Any, cfg: MlperfConfig, sut: SchedulerSUT) -> Any:
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, SCENARIOS[cfg.scenario])
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(cfg.min_duration_s * 1000)
    settings.min_query_count = cfg.min_queries
    latency_ns = int(cfg.latency_s * 1e9)
    capacity = sut.capacity_rps or 1.0
    if cfg.scenario == "server":
        settings.server_target_qps = cfg.target_qps or SERVER_LOAD * capacity
        settings.server_target_latency_ns = latency_ns
    elif cfg.scenario == "offline":
        settings.offline_expected_qps = cfg.target_qps or capacity
    else:
        expected_s = (
            cfg.expected_latency_ms / 1000.0
            if cfg.expected_latency_ms is not None
            else (sut.solo_s or cfg.latency_s)
        )
        settings.single_stream_expected_latency_ns = int(expected_s * 1e9)
    return settings


def run_mlperf(cfg: MlperfConfig) -> MlperfResult:
    """Run one LoadGen performance test against a fresh scheduler; LoadGen's summary."""
    lg = require_loadgen()

    def complete(done: list[tuple[int, bool]]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i, _ in done])

    sut = SchedulerSUT(cfg, complete)
    sut.start()
    with tempfile.TemporaryDirectory(prefix="aiosched-mlperf-") as tmp:
        log_dir = Path(cfg.log_dir) if cfg.log_dir is not None else Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        log = lg.LogSettings()
        log.log_output.outdir = str(log_dir)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        handle = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
        qsl = lg.ConstructQSL(cfg.samples, cfg.samples, _no_op, _no_op)
        try:
            lg.StartTestWithLogSettings(handle, qsl, _settings(lg, cfg, sut), log)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(handle)
            sut.stop()
        summary_path = log_dir / "mlperf_log_summary.txt"
        summary = summary_path.read_text(encoding="utf-8") if summary_path.exists() else ""
    return MlperfResult(
        summary=summary,
        issued=sut.issued,
        completed=sut.completed,
        met_deadline=sut.met_deadline,
        errors=sut.errors,
        log_dir=cfg.log_dir,
    )


def _no_op(_: list[int]) -> None:
    """LoadGen's load/unload samples: the one input is made once, nothing to load."""
