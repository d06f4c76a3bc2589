"""The closed-loop driver: ``concurrency`` virtual users, each one request at a time.

Closed loop (perf_analyzer's ``--concurrency-range``, MLPerf's SingleStream
for one user): each virtual user sends its next request when the previous
one has returned, after an optional think time. The load adapts to the
target: the achieved rate is what ``concurrency`` users get, and by Little's
law ``concurrency ~= achieved rate x (mean latency + think time)``. There is
no intended send time, so latency is from the actual send to the response
(the send lag is not recorded).

Each user draws its models from the workload's shares with its own
generator (``seed + user``), so a run is reproducible per seed. A request
rejected or failed returns at once; the user then waits :data:`BACKOFF_S`
(plus its think time) before the next, so that an overloaded target is not
hammered in a tight loop (in virtual time such a loop would never end).

Warm-up: the users start ``warmup_s`` before the measured window and run
through it without a pause; requests *sent* during the warm-up are counted
apart (:attr:`ClosedLoopDriver.warmup_counts`), not in the result. At the end
of the window the users send nothing more and their requests in flight are
awaited (at most ``drain_timeout`` seconds; then they are cancelled and
counted so). Every request is counted exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from aiosched.clock import Clock, LoopClock, PerfClock
from aiosched.errors import InvalidConfig
from aiosched.loadgen.driver import REJECTIONS, RunWindow, Target
from aiosched.loadgen.progress import Progress, ProgressWatcher
from aiosched.loadgen.result import LoadResult, ModelResult, RequestCounts
from aiosched.loadgen.timeseries import TimeSeries
from aiosched.loadgen.workload import Schedule, Workload
from aiosched.simtime import VirtualTimeLoop

__all__ = ["BACKOFF_S", "ClosedLoop", "ClosedLoopDriver", "in_warmup"]

BACKOFF_S = 0.010
"""A user's pause after a rejected or failed request, before its next one."""

_CANCEL_GRACE_S = 1.0

_WARMUP: ContextVar[bool] = ContextVar("aiosched_closed_loop_warmup", default=False)


def in_warmup() -> bool:
    """Whether the request a target is sending is a closed loop's warm-up request.

    Each user is a task of its own, so a target that keeps statistics of its
    own (the HTTP target counts statuses) can leave the warm-up out exactly as
    the driver does.
    """
    return _WARMUP.get()


@dataclass(frozen=True)
class ClosedLoop:
    """A closed-loop run: ``concurrency`` users for ``duration_s`` after ``warmup_s``."""

    concurrency: int
    duration_s: float
    think_s: float = 0.0
    warmup_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InvalidConfig(f"--concurrency must be >= 1, got {self.concurrency}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise InvalidConfig(f"--duration must be > 0 seconds, got {self.duration_s}")
        if not (math.isfinite(self.think_s) and self.think_s >= 0):
            raise InvalidConfig(f"--think-ms must be >= 0, got {self.think_s * 1000:g}")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise InvalidConfig(f"--warmup must be >= 0 seconds, got {self.warmup_s}")

    def schedule(self, workload: Workload) -> Schedule:
        """An empty schedule: the window and the models, for the progress watcher and report."""
        models = {
            m.name: {"share": m.share, "deadline_ms": m.deadline_s * 1000.0}
            for m in workload.models
        }
        config = {
            "arrival": "closed",
            "rate": None,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "models": models,
        }
        return Schedule(
            np.empty(0),
            np.empty(0, dtype=np.intp),
            np.empty(0),
            workload.names,
            self.duration_s,
            MappingProxyType(config),
        )

    def config(self) -> dict[str, Any]:
        """The report's description of the run."""
        return {
            "mode": "closed",
            "concurrency": self.concurrency,
            "think_ms": self.think_s * 1000.0,
            "backoff_ms": BACKOFF_S * 1000.0,
        }


class ClosedLoopDriver(RunWindow):
    # RunWindow: _t0 is the start of the measured window (elapsed_s is 0 during the warm-up).
    """Runs ``loop`` against ``target`` once, for ``workload``'s mix (see the module docstring).

    It has the open-loop driver's :meth:`run`, :meth:`stop`, :meth:`result`,
    :attr:`stats` and progress callbacks; :attr:`max_in_flight` is the most
    requests it ever had in flight (never above the concurrency).
    """

    def __init__(
        self,
        target: Target,
        workload: Workload,
        loop: ClosedLoop,
        *,
        make_input: Callable[[str], Any] | None = None,
        clock: Clock | None = None,
        drain_timeout: float | None = 30.0,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 0.25,
    ) -> None:
        if not (math.isfinite(progress_interval) and progress_interval > 0):
            raise InvalidConfig(f"progress_interval must be positive, got {progress_interval!r}")
        self.plan = loop
        self._target, self._make_input = target, make_input
        self._clock_arg = clock
        self._clock: Clock = clock if clock is not None else PerfClock()
        self._drain_timeout = drain_timeout
        self._on_progress, self._progress_interval = on_progress, progress_interval
        self._models = workload.models
        shares = np.asarray([m.share for m in workload.models], dtype=np.float64)
        self._p = shares / shares.sum()
        self._deadlines = [m.deadline_s for m in workload.models]
        self.schedule = loop.schedule(workload)
        self._stats = [ModelResult(m.name) for m in workload.models]
        self.warmup_counts = RequestCounts()
        """Requests sent during the warm-up (not in the result)."""
        self.series = TimeSeries()
        self.in_flight = 0
        self.max_in_flight = 0
        self._t0: float | None = None
        self._end: float | None = None
        self._stop_at: float | None = None
        self._stopped = False
        self._started = False
        self._started_at: float | None = None
        self._window: asyncio.Future[None] | None = None
        self._watcher = ProgressWatcher(self)

    def result(self) -> LoadResult:
        window = self.plan.duration_s
        if self._stop_at is not None and self._t0 is not None:
            window = max(0.0, min(self._stop_at - self._t0, window))
        return self._result(window)

    def stop(self) -> None:
        """No user sends again; :meth:`run` awaits what is in flight, then returns."""
        if self.done or self._stopped:
            return
        self._stopped = True
        self._stop_at = self._clock.now()
        self._close_window()

    def _close_window(self) -> None:
        if self._window is not None and not self._window.done():
            self._window.set_result(None)

    async def run(self) -> LoadResult:
        """Run the users through the warm-up and the window; the result once all resolved."""
        if self._started:
            raise RuntimeError("a ClosedLoopDriver runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        if self._clock_arg is None and isinstance(loop, VirtualTimeLoop):
            self._clock = LoopClock(loop)
        plan = self.plan
        self._window = loop.create_future()
        if self._stopped:
            self._window.set_result(None)
        start = self._clock.now()
        self._t0 = start + plan.warmup_s
        self._started_at = time.time() + plan.warmup_s
        closer = loop.call_later(plan.warmup_s + plan.duration_s, self._close_window)
        progress = self._repeat_progress(loop) if self._on_progress is not None else None
        users = [
            loop.create_task(self._user(np.random.default_rng(plan.seed + u)))
            for u in range(plan.concurrency)
        ]
        try:
            await self._window
            _, pending = await asyncio.wait(users, timeout=self._drain_timeout)
            await _cancel(pending)
        except asyncio.CancelledError:
            self._close_window()
            await _cancel({u for u in users if not u.done()})
            raise
        finally:
            closer.cancel()
            if progress is not None:
                progress.cancel()
            self._end = self._clock.now()
            if self._on_progress is not None:
                self._on_progress(self._watcher.next())
        return self.result()

    async def _user(self, rng: np.random.Generator) -> None:
        window = self._window
        assert window is not None
        n = len(self._models)
        while not window.done():
            m = 0 if n == 1 else int(rng.choice(n, p=self._p))
            ok = await self._one(m)
            pause = self.plan.think_s + (0.0 if ok else BACKOFF_S)
            if pause > 0 and not window.done():
                await asyncio.wait([window], timeout=pause)

    async def _one(self, m: int) -> bool:
        """One request of model ``m``; whether it completed."""
        clock, stats = self._clock, self._stats[m]
        measured = clock.now() >= self._t0 if self._t0 is not None else False
        counts = stats.counts if measured else self.warmup_counts
        counts.sent += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        start = clock.now()
        if measured:
            self.series.offered(start - self._at0())
        outcome: Literal["met", "missed", "rejected", "failed", "cancelled"]
        cancelled: asyncio.CancelledError | None = None
        _WARMUP.set(not measured)
        try:
            x = self._make_input(stats.name) if self._make_input is not None else None
            await self._target(stats.name, x, self._deadlines[m])
            outcome = "met"
        except REJECTIONS:
            outcome = "rejected"
        except asyncio.CancelledError as exc:
            outcome, cancelled = "cancelled", exc
        except Exception:
            outcome = "failed"
        end = clock.now()
        self.in_flight -= 1
        latency = end - start
        if outcome == "met":
            counts.completed += 1
            if latency > self._deadlines[m]:
                outcome = "missed"
                counts.missed_deadline += 1
            else:
                counts.met_deadline += 1
            if measured:
                stats.latency.record(latency)
        elif outcome == "rejected":
            counts.rejected += 1
        elif outcome == "failed":
            counts.failed += 1
        else:
            counts.cancelled += 1
        if measured:
            at = end - self._at0()
            self.series.resolved(at, outcome, latency if outcome in ("met", "missed") else None)
        if cancelled is not None:
            raise cancelled
        return outcome in ("met", "missed")

    def _at0(self) -> float:
        assert self._t0 is not None
        return self._t0

    def _repeat_progress(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        assert self._on_progress is not None
        callback, watcher, interval = self._on_progress, self._watcher, self._progress_interval

        async def repeat() -> None:
            # the first tick one interval into the measured window (the warm-up is not shown)
            await asyncio.sleep(max(0.0, self._at0() - self._clock.now()))
            while True:
                await asyncio.sleep(interval)
                callback(watcher.next())

        return loop.create_task(repeat())


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE_S)
