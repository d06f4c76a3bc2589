"""The scheduler's dispatcher task: one step at a time, asleep in between.

A step lets the watchdog look at what is running, fails what can no longer
run (every lane lost, or a close that does not drain), sends warm-up batches,
and lets the policy dispatch to free lanes; the policy answers with the next
time it wants to be asked again (a planned rejection, say). After a step, the
models being unregistered with nothing left queued or running leave. Between
steps the task sleeps on one future that ``infer()``, a finished batch or that
time wakes; so an idle scheduler costs nothing, and a busy one takes one step
per event rather than one per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .errors import AioschedError, LaneFailed, SchedulerClosed

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["dispatch_loop"]

log = logging.getLogger("aiosched")

# The smallest timer the dispatcher sets: a planned time that has (numerically) just
# passed must still move a virtual clock forward rather than spin.
_MIN_TIMER_S = 1e-6


async def dispatch_loop(s: Scheduler) -> None:
    """Run steps until the scheduler closes and nothing is left to do."""
    loop = asyncio.get_running_loop()
    assert s._clock is not None
    clock = s._clock
    try:
        while True:
            try:
                wake_at = _step(s)
                if s._registry.leaving:
                    s._registry.depart_idle(_busy(s), s._forget_model)
            except Exception as exc:
                # A broken policy or predictor must not strand callers: fail the queued.
                log.exception("aiosched dispatcher failed")
                s._closing = True
                error = AioschedError(f"dispatcher failed: {exc!r}")
                error.__cause__ = exc
                s._fail_queued(error)
                if not s._timeline.in_flight:
                    return
                wake_at = None
            if s._closing and _idle(s):
                return
            waiter = s._waiter = loop.create_future()
            timer = None
            if wake_at is not None:
                delay = max(wake_at - clock.now(), _MIN_TIMER_S)
                timer = loop.call_later(delay, _release, waiter)
            try:
                await waiter
            finally:
                s._waiter = None
                if timer is not None:
                    timer.cancel()
    except asyncio.CancelledError:
        # Cancelled from outside (``asyncio.run`` ending, a second Ctrl-C) or by
        # ``aclose(timeout=)``: nobody will close this scheduler in this loop.
        if not s._closed:
            s._abandon(SchedulerClosed("scheduler's event loop shut down"))
            s._closed = True
        raise
    finally:
        # Closing: every request is resolved by now, so a model leaving has left.
        s._registry.depart_all(s._forget_model)


def _busy(s: Scheduler) -> set[str]:
    """The models with a batch running."""
    return {r.model for r in s._timeline.in_flight}


def _idle(s: Scheduler) -> bool:
    if s._timeline.in_flight:
        return False
    if not s._lanes.usable():
        return True
    if s._registry.warmup_pending():
        return False
    return s._registry.ready.empty()


def _step(s: Scheduler) -> float | None:
    assert s._clock is not None
    now = s._now = s._clock.now()
    runner = s._runner
    assert runner is not None
    runner.watch(now)
    if not s._lanes.any_alive():
        s._fail_queued(LaneFailed("every lane of the backend has failed"))
        s._registry.cancel_warmups()  # nothing can warm up: let ready() return
        return None
    if s._closing and not s._drain:
        # Put back after a failed batch or a lost lane: they too were not run in time.
        s._fail_queued(SchedulerClosed("scheduler closed before it ran"))
    if s._registry.leaving:
        s._registry.fail_undrained()  # before the policy can run them again
    s._registry.start_warmups(s._lanes, s._backend, runner, now)
    planned = s._policy.step(s._view)
    watch = runner.watch(now)  # what was just dispatched is watched too
    if planned is None:
        return watch
    return planned if watch is None else min(planned, watch)


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
