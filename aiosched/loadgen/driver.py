"""The open-loop driver: sends a :class:`~aiosched.loadgen.workload.Schedule` to a target.

Open loop: each send is scheduled at the absolute time ``t0 + offset`` and
runs as its own task, so a slow target never delays later sends. Latency is
measured from the *intended* send time, not the actual one (free of
coordinated omission, as MLPerf LoadGen and wrk2 measure it); how late each
send actually started (the send lag) is recorded separately.

Each request ends as exactly one outcome: *completed* (and then met or missed
its deadline: met iff the response came by ``intended + deadline``),
*rejected* (the target raised :class:`~aiosched.errors.DeadlineUnmeetable`,
:class:`~aiosched.errors.Overloaded` or :class:`~aiosched.errors.SchedulerClosed`),
*failed* (any other exception) or *cancelled* (still in flight when the run
ended, or the target raised :class:`asyncio.CancelledError`).

Two senders (:mod:`aiosched.loadgen.senders`): ``"loop"`` fires sends from
loop timers (exact in virtual time); ``"thread"`` from a thread that sleeps,
then spins until each send is due (a p99 lag of 0.1-0.3 ms at 1k-10k
requests/s on the 2-core development machine, against about 1.3 ms for loop
timers). Interim statistics: :mod:`aiosched.loadgen.progress`.

``"auto"`` picks the loop sender under a virtual-time loop or a
:class:`~aiosched.clock.LoopClock` (whose time another thread cannot read
reliably), the thread sender otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from aiosched.clock import Clock, LoopClock, PerfClock
from aiosched.errors import DeadlineUnmeetable, InvalidConfig, Overloaded, SchedulerClosed
from aiosched.loadgen.progress import Progress, ProgressWatcher
from aiosched.loadgen.result import LoadResult, ModelResult
from aiosched.loadgen.senders import LoopSender, ThreadSender
from aiosched.loadgen.timeseries import TimeSeries
from aiosched.loadgen.workload import Schedule
from aiosched.simtime import VirtualTimeLoop

__all__ = ["REJECTIONS", "OpenLoopDriver", "Progress", "SenderKind", "Target", "run_open_loop"]
# Progress is re-exported: it was defined here before aiosched.loadgen.progress.

Target = Callable[[str, Any, float], Awaitable[Any]]
"""``async def infer(model, x, deadline)``; ``deadline`` is the budget in seconds from the call."""

SenderKind = Literal["auto", "loop", "thread"]

REJECTIONS: tuple[type[BaseException], ...] = (DeadlineUnmeetable, Overloaded, SchedulerClosed)
"""Errors that count a request as rejected rather than failed."""

_CANCEL_GRACE_S = 1.0  # a target that ignores cancellation longer is counted as cancelled anyway
_THREAD_LEAD_S = 0.005  # t0 is this far ahead of run() when a thread sends, so send 0 is not late


class RunWindow:
    """What a progress watcher reads of a driver, open or closed loop: the models'
    live results and the run's clock from ``_t0`` (its start) to ``_end``."""

    _clock: Clock
    _stats: list[ModelResult]
    _t0: float | None
    _end: float | None
    _stopped: bool
    _started_at: float | None
    schedule: Schedule
    series: TimeSeries

    @property
    def stats(self) -> Sequence[ModelResult]:
        """Each model's live result, in the schedule's order of models."""
        return self._stats

    @property
    def done(self) -> bool:
        """The run has ended: every sent request has its outcome."""
        return self._end is not None

    def elapsed_s(self) -> float:
        """Seconds since the start of the run (0 before it; frozen once it has ended)."""
        if self._t0 is None:
            return 0.0
        end = self._end if self._end is not None else self._clock.now()
        return max(0.0, end - self._t0)

    def _result(self, send_window_s: float) -> LoadResult:
        return LoadResult(
            models={s.name: s for s in self._stats},
            duration_s=self.elapsed_s(),
            send_window_s=send_window_s,
            stopped_early=self._stopped,
            config=self.schedule.config,
            started_at=self._started_at,
            series=self.series,
        )


class OpenLoopDriver(RunWindow):
    """Runs one schedule against one target, once. See the module docstring.

    ``make_input(model)`` makes each request's input (``None`` when not
    given); it runs on the loop just before the target is called, so it
    should be cheap (return a prepared tensor). ``drain_timeout`` bounds the
    wait for responses after the last send (or after :meth:`stop`); what is
    still in flight then is cancelled. ``on_progress`` is called on the loop
    every ``progress_interval`` seconds with a :class:`Progress`.
    """

    def __init__(
        self,
        target: Target,
        schedule: Schedule,
        *,
        make_input: Callable[[str], Any] | None = None,
        clock: Clock | None = None,
        sender: SenderKind = "auto",
        drain_timeout: float | None = 30.0,
        spin_s: float = 0.0002,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 0.25,
    ) -> None:
        if sender not in ("auto", "loop", "thread"):
            raise InvalidConfig(f"sender must be auto, loop or thread, got {sender!r}")
        if drain_timeout is not None and not drain_timeout >= 0:
            raise InvalidConfig(
                f"drain_timeout must be >= 0 seconds or None, got {drain_timeout!r}"
            )
        if not (math.isfinite(progress_interval) and progress_interval > 0):
            raise InvalidConfig(f"progress_interval must be positive, got {progress_interval!r}")
        self.schedule = schedule
        self._target = target
        self._make_input = make_input
        self._clock_arg = clock
        self._clock: Clock = clock if clock is not None else PerfClock()
        self._sender_arg: SenderKind = sender
        self.sender: Literal["loop", "thread"] | None = None
        """The sender chosen by :meth:`run`."""
        self._drain_timeout = drain_timeout
        self._spin_s = spin_s
        self._on_progress = on_progress
        self._progress_interval = progress_interval
        self._names = schedule.models
        self._index = schedule.model_index
        self._deadlines = schedule.deadlines_s
        self._offsets = schedule.offsets
        self._stats = [ModelResult(name) for name in schedule.models]
        for stats, n in zip(self._stats, schedule.counts().values(), strict=True):
            stats.planned = n
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._t0: float | None = None
        self._end: float | None = None
        self._stop_at: float | None = None
        self._stopped = False
        self._started = False
        self._halted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: NDArray[np.float64] = np.empty(0)
        self._sending: asyncio.Future[None] | None = None
        self._idle: asyncio.Event | None = None
        self._done_event: asyncio.Event | None = None
        self._sender: LoopSender | ThreadSender | None = None
        self._watcher = ProgressWatcher(self)
        self._started_at: float | None = None
        self.series = TimeSeries()
        """Per-second sends and outcomes (:mod:`aiosched.loadgen.timeseries`)."""

    # ----------------------------------------------------------------- state

    def progress(self) -> Progress:
        """Statistics of the run so far (the interval is the whole run)."""
        return ProgressWatcher(self).next()

    async def watch(self, interval: float = 0.25) -> AsyncIterator[Progress]:
        """A :class:`Progress` every ``interval`` s until the run ends (the last is ``done``)."""
        watcher = ProgressWatcher(self)
        while True:
            if self._done_event is None:
                await asyncio.sleep(interval)
            elif not self.done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done_event.wait(), interval)
            progress = watcher.next()
            yield progress
            if progress.done:
                return

    def result(self) -> LoadResult:
        """The result so far; complete once :meth:`run` has returned (or raised)."""
        if self._t0 is None:
            window = 0.0
        elif self._stop_at is not None:
            window = max(0.0, min(self._stop_at - self._t0, self.schedule.duration_s))
        else:
            window = self.schedule.duration_s
        return self._result(window)

    # --------------------------------------------------------------- control

    def stop(self) -> None:
        """Stop sending now; :meth:`run` drains in-flight requests, then returns.

        Call it on the loop's thread (``loop.call_soon_threadsafe(driver.stop)`` from another).
        """
        if self.done:
            return
        if not self._stopped and (self._sending is None or not self._sending.done()):
            self._stopped = True
            if self._t0 is not None:
                self._stop_at = self._clock.now()
        self._halt_sending()

    async def run(self) -> LoadResult:
        """Send the whole schedule, wait for the responses, return the result.

        If the task running this is cancelled, sending stops, whatever is in
        flight is cancelled and recorded, and the cancellation propagates;
        :meth:`result` is then complete.
        """
        if self._started:
            raise RuntimeError("an OpenLoopDriver runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        virtual = isinstance(loop, VirtualTimeLoop)
        if self._clock_arg is None and virtual:
            self._clock = LoopClock(loop)
        sender = self._sender_arg
        if sender == "auto":
            sender = "loop" if virtual or isinstance(self._clock, LoopClock) else "thread"
        if sender == "thread" and (virtual or isinstance(self._clock, LoopClock)):
            raise InvalidConfig("the thread sender needs a real clock, not the loop's")
        self.sender = sender
        self._sending = loop.create_future()
        self._idle = asyncio.Event()
        self._done_event = asyncio.Event()
        self._t0 = self._clock.now() + (_THREAD_LEAD_S if sender == "thread" else 0.0)
        self._started_at = time.time()
        self._due = self._t0 + self._offsets
        if self._stopped:  # before it started
            self._stop_at = self._t0
        progress_timer = self._start_progress() if self._on_progress is not None else None
        try:
            if self._halted or len(self._due) == 0:
                self._finish_sending()
            else:
                if sender == "thread":
                    self._sender = ThreadSender(
                        loop,
                        self._clock,
                        self._due,
                        self._start_range,
                        self._finish_sending,
                        self._spin_s,
                    )
                else:
                    self._sender = LoopSender(
                        loop, self._clock, self._due, self._start_range, self._finish_sending
                    )
                self._sender.start()
            await self._sending
            if self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self._drain_timeout)
            await self._cancel_pending()
        except asyncio.CancelledError:
            self._halt_sending()
            await self._cancel_pending()
            raise
        finally:
            self._halt_sending()
            if self._sender is not None:
                self._sender.join()
            if progress_timer is not None:
                progress_timer.cancel()
            self._end = self._clock.now()
            self._done_event.set()
            if self._on_progress is not None:
                self._on_progress(self._watcher.next())
        return self.result()

    # --------------------------------------------------------------- sending

    def _finish_sending(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._sending.set_result(None)
        if not self._pending and self._idle is not None:
            self._idle.set()

    def _halt_sending(self) -> None:
        self._halted = True
        if self._sender is not None:
            self._sender.halt()
        self._finish_sending()

    def _start_range(self, i: int, j: int) -> None:
        if self._halted:
            return
        for k in range(i, j):
            self._start(k)

    def _start(self, i: int) -> None:
        assert self._loop is not None
        m = self._index.item(i)
        stats = self._stats[m]
        stats.counts.sent += 1
        self.series.offered(self._offsets.item(i))
        self._pending[i] = self._loop.create_task(self._one(i, stats))

    async def _one(self, i: int, stats: ModelResult) -> None:
        clock = self._clock
        intended = self._due.item(i)
        deadline = self._deadlines.item(i)
        outcome: Literal["ok", "rejected", "failed", "cancelled"]
        try:
            x = self._make_input(stats.name) if self._make_input is not None else None
            start = clock.now()
            lag = start - intended
            stats.send_lag.record(lag)
            await self._target(stats.name, x, deadline - lag)
            outcome = "ok"
        except REJECTIONS:
            outcome = "rejected"
        except asyncio.CancelledError:
            outcome = "cancelled"
        except Exception:
            outcome = "failed"
        end = clock.now()
        if self._pending.pop(i, None) is None:
            return  # already counted as cancelled when the run ended
        counts = stats.counts
        at = end - intended + self._offsets.item(i)  # seconds from the start of the run
        if outcome == "ok":
            latency = end - intended
            stats.latency.record(latency)
            counts.completed += 1
            if latency <= deadline:
                counts.met_deadline += 1
                self.series.resolved(at, "met", latency)
            else:
                counts.missed_deadline += 1
                self.series.resolved(at, "missed", latency)
        elif outcome == "rejected":
            counts.rejected += 1
            self.series.resolved(at, "rejected")
        elif outcome == "failed":
            counts.failed += 1
            self.series.resolved(at, "failed")
        else:
            counts.cancelled += 1
            self.series.resolved(at, "cancelled")
        if not self._pending and self._idle is not None and self._halted_or_sent():
            self._idle.set()

    def _halted_or_sent(self) -> bool:
        return self._sending is not None and self._sending.done()

    async def _cancel_pending(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE_S)
        at = self.elapsed_s()
        for i in list(self._pending):  # never started, or ignored the cancellation
            del self._pending[i]
            self._stats[self._index.item(i)].counts.cancelled += 1
            self.series.resolved(at, "cancelled")

    # -------------------------------------------------------------- progress

    def _start_progress(self) -> _Repeater:
        assert self._loop is not None and self._on_progress is not None
        callback, watcher = self._on_progress, self._watcher
        return _Repeater(self._loop, self._progress_interval, lambda: callback(watcher.next()))


class _Repeater:
    """Calls ``fn`` every ``interval`` seconds on the loop until cancelled."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, fn: Callable[[], None]
    ) -> None:
        self._loop, self._interval, self._fn = loop, interval, fn
        self._handle: asyncio.TimerHandle | None = loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._tick)
        self._fn()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def run_open_loop(
    target: Target,
    schedule: Schedule,
    *,
    make_input: Callable[[str], Any] | None = None,
    clock: Clock | None = None,
    sender: SenderKind = "auto",
    drain_timeout: float | None = 30.0,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.25,
) -> LoadResult:
    """Run ``schedule`` against ``target`` open-loop and return the result.

    A shorthand for ``await OpenLoopDriver(...).run()``; use the driver
    itself to :meth:`~OpenLoopDriver.stop` early or to watch progress.
    """
    driver = OpenLoopDriver(
        target,
        schedule,
        make_input=make_input,
        clock=clock,
        sender=sender,
        drain_timeout=drain_timeout,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )
    return await driver.run()
