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

Two senders:

- ``"loop"``: one loop timer at a time, set for the next send; when it fires,
  every send that is due starts. Exact under
  :class:`~aiosched.simtime.VirtualTimeLoop`, where the clock jumps to the
  timer; on a real loop asyncio timers fire about 1.3 ms late at p99.
- ``"thread"``: a sender thread sleeps (``threading.Event.wait``, so that a
  stop wakes it) until ``spin_s`` before the next send, then spins on the
  clock until the send is due, calling ``time.sleep(0)`` in the spin so the
  loop's thread can take the GIL meanwhile (a pure busy-wait holds it for the
  whole window and starves the loop: p99 lag over 3 ms at 10k requests/s).
  Then it hands every send due by now to the loop in one
  ``call_soon_threadsafe``, where each starts as its own task. On the 2-core
  development machine this gave a p99 lag of 0.1-0.3 ms at 1k-10k
  requests/s on uvloop (``benchmarks/loadgen_lag.py``).

``"auto"`` picks the loop sender under a virtual-time loop or a
:class:`~aiosched.clock.LoopClock` (whose time another thread cannot read
reliably), the thread sender otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from aiosched.clock import Clock, LoopClock, PerfClock
from aiosched.errors import DeadlineUnmeetable, InvalidConfig, Overloaded, SchedulerClosed
from aiosched.loadgen.histogram import percentiles_of_counts
from aiosched.loadgen.result import LoadResult, ModelResult, RequestCounts
from aiosched.loadgen.timeseries import TimeSeries
from aiosched.loadgen.workload import Schedule
from aiosched.simtime import VirtualTimeLoop

__all__ = ["REJECTIONS", "OpenLoopDriver", "Progress", "SenderKind", "Target", "run_open_loop"]

Target = Callable[[str, Any, float], Awaitable[Any]]
"""``async def infer(model, x, deadline)``; ``deadline`` is the budget in seconds from the call."""

SenderKind = Literal["auto", "loop", "thread"]

REJECTIONS: tuple[type[BaseException], ...] = (DeadlineUnmeetable, Overloaded, SchedulerClosed)
"""Errors that count a request as rejected rather than failed."""

_EARLY_S = 1e-9  # a send this close to its time counts as due (float rounding of timers)
_CANCEL_GRACE_S = 1.0  # a target that ignores cancellation longer is counted as cancelled anyway
_THREAD_LEAD_S = 0.005  # t0 is this far ahead of run() when a thread sends, so send 0 is not late


@dataclass(frozen=True, slots=True)
class Progress:
    """Interim statistics of a running load, cheap to take (counters and two histogram scans).

    ``counts`` are cumulative; ``interval`` and the percentiles cover the time
    since the previous :class:`Progress` of the same watcher (the whole run so
    far for the first one).
    """

    elapsed_s: float
    window_s: float
    """The sending window (the schedule's duration)."""
    planned: int
    counts: RequestCounts
    per_model: dict[str, RequestCounts]
    interval_s: float
    interval: RequestCounts
    latency_p50_s: float | None
    latency_p99_s: float | None
    send_lag_p99_s: float | None
    done: bool

    @property
    def fraction(self) -> float:
        """Elapsed part of the sending window, 0..1."""
        if self.window_s <= 0:
            return 1.0 if self.done else 0.0
        return min(1.0, max(0.0, self.elapsed_s / self.window_s))

    def _rate(self, n: int) -> float:
        return n / self.interval_s if self.interval_s > 0 else 0.0

    @property
    def sent_rps(self) -> float:
        return self._rate(self.interval.sent)

    @property
    def achieved_rps(self) -> float:
        return self._rate(self.interval.completed)

    @property
    def goodput_rps(self) -> float:
        return self._rate(self.interval.met_deadline)

    @property
    def miss_pct(self) -> float:
        """Missed deadlines (missed, rejected, failed) per resolved request in the interval, %."""
        i = self.interval
        resolved = i.completed + i.rejected + i.failed
        return 100.0 * (resolved - i.met_deadline) / resolved if resolved else 0.0


class _Watcher:
    """Turns the driver's live counters into successive :class:`Progress` objects."""

    def __init__(self, driver: OpenLoopDriver) -> None:
        self._driver = driver
        self._at = 0.0
        self._counts = RequestCounts()
        n = len(driver._stats[0].latency.counts) if driver._stats else 0
        self._latency: NDArray[np.uint64] = np.zeros(n, dtype=np.uint64)
        self._lag: NDArray[np.uint64] = np.zeros(n, dtype=np.uint64)

    def next(self) -> Progress:
        d = self._driver
        elapsed = d.elapsed_s()
        counts = RequestCounts()
        latency = np.zeros_like(self._latency)
        lag = np.zeros_like(self._lag)
        per_model: dict[str, RequestCounts] = {}
        for stats in d._stats:
            counts.add(stats.counts)
            per_model[stats.name] = stats.counts.copy()
            latency += stats.latency.counts
            lag += stats.send_lag.counts
        interval = RequestCounts(
            *(
                a - b
                for a, b in zip(
                    counts.as_dict().values(), self._counts.as_dict().values(), strict=True
                )
            )
        )
        p50, p99 = percentiles_of_counts(latency - self._latency, (50.0, 99.0))
        (lag99,) = percentiles_of_counts(lag - self._lag, (99.0,))
        progress = Progress(
            elapsed_s=elapsed,
            window_s=d.schedule.duration_s,
            planned=len(d.schedule),
            counts=counts,
            per_model=per_model,
            interval_s=elapsed - self._at,
            interval=interval,
            latency_p50_s=p50,
            latency_p99_s=p99,
            send_lag_p99_s=lag99,
            done=d.done,
        )
        self._at, self._counts, self._latency, self._lag = elapsed, counts, latency, lag
        return progress


class OpenLoopDriver:
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
        self._next = 0
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
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._watcher = _Watcher(self)
        self._started_at: float | None = None
        self.series = TimeSeries()
        """Per-second sends and outcomes (:mod:`aiosched.loadgen.timeseries`)."""

    # ----------------------------------------------------------------- state

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

    def progress(self) -> Progress:
        """Statistics of the run so far (the interval is the whole run)."""
        return _Watcher(self).next()

    async def watch(self, interval: float = 0.25) -> AsyncIterator[Progress]:
        """A :class:`Progress` every ``interval`` s until the run ends (the last is ``done``)."""
        watcher = _Watcher(self)
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
        return LoadResult(
            models={s.name: s for s in self._stats},
            duration_s=self.elapsed_s(),
            send_window_s=window,
            stopped_early=self._stopped,
            config=self.schedule.config,
            started_at=self._started_at,
            series=self.series,
        )

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
            elif sender == "thread":
                self._thread = threading.Thread(
                    target=self._thread_main, name="aiosched-loadgen-sender", daemon=True
                )
                self._thread.start()
            else:
                self._loop_tick()
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
            if self._thread is not None:
                self._thread.join()
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
        self._halt.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finish_sending()

    def _loop_tick(self) -> None:
        self._timer = None
        if self._halted:
            return
        due, n, i = self._due, len(self._due), self._next
        limit = self._clock.now() + _EARLY_S
        while i < n and due.item(i) <= limit:
            self._start(i)
            i += 1
        self._next = i
        if i >= n:
            self._finish_sending()
            return
        assert self._loop is not None
        delay = due.item(i) - self._clock.now()
        self._timer = self._loop.call_at(self._loop.time() + delay, self._loop_tick)

    def _thread_main(self) -> None:
        loop, clock, halt, spin = self._loop, self._clock, self._halt, self._spin_s
        assert loop is not None
        due, n, i = self._due, len(self._due), 0
        try:
            while i < n:
                target = due.item(i)
                wait = target - clock.now()
                if wait > spin:
                    if halt.wait(wait - spin):
                        return
                    continue
                while clock.now() < target:
                    time.sleep(0)  # spin, but let the loop's thread take the GIL
                if halt.is_set():
                    return
                j = int(np.searchsorted(due, clock.now(), side="right"))
                loop.call_soon_threadsafe(self._start_range, i, j)
                i = j
        except RuntimeError:  # the loop was closed under us
            return
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish_sending)

    def _start_range(self, i: int, j: int) -> None:
        if self._halted:
            return
        for k in range(i, j):
            self._start(k)
        self._next = j

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
