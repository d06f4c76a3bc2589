"""Settling requests: each one exactly once, and counted once.

A request is settled by the first of: its result, a rejection (it never
ran: :class:`~aiosched.errors.DeadlineUnmeetable`, ``SchedulerClosed``), a
failure (it ran and failed: ``ModelError``, ``LaneFailed``), or its caller's
cancellation. Whichever comes later finds it settled and does nothing; the
per-model counters therefore always add up to what was submitted.

A failed or hung batch does not fail its members: which input broke it is
unknown. :func:`retry` puts them back in two halves that each run on their
own, so the input that breaks it ends up alone in ``log2(n)`` reruns, and
only its caller gets the error. A hung batch's requests are put back one by
one instead: each rerun that holds the hanging input loses a lane until it
returns, and alone it is rerun only once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import AioschedError
from .queue import QUEUED, SETTLED, ModelQueue, Request
from .telemetry.stats import ModelCounters

__all__ = ["cancelled", "fail", "reject", "resolve", "retry"]


def reject(request: Request, error: AioschedError) -> None:
    """Settle a request that never ran with ``error``."""
    if request.state != SETTLED:
        request.state = SETTLED
        request.counters.rejected += 1
        if not request.future.done():
            request.future.set_exception(error)


def fail(request: Request, error: AioschedError) -> None:
    """Settle a request that ran (or could not run for a device fault) with ``error``."""
    if request.state != SETTLED:
        request.state = SETTLED
        request.counters.failed += 1
        if not request.future.done():
            request.future.set_exception(error)


def cancelled(request: Request, queue: ModelQueue) -> None:
    """The caller went away (its ``infer()`` was cancelled)."""
    if request.state != SETTLED:
        if request.state == QUEUED:
            queue.discard(request)
        request.state = SETTLED
        request.counters.cancelled += 1


def resolve(
    requests: Sequence[Request], outputs: Sequence[Any], now: float, counters: ModelCounters
) -> None:
    """Give each caller its own output (``outputs[i]`` is ``requests[i]``'s) at ``now``."""
    latencies: list[float] = []
    met = 0
    for request, output in zip(requests, outputs, strict=True):
        if request.state == SETTLED:
            continue
        request.state = SETTLED
        latencies.append(now - request.arrival)
        if now <= request.deadline:
            met += 1
        future = request.future
        # A cancelled caller's future is done before its task marks the request settled.
        if not future.done():
            future.set_result(output)
    counters.completed += len(latencies)
    counters.met_deadline += met
    counters.missed_deadline += len(latencies) - met
    counters.latency.record_many(latencies)


def retry(
    requests: Sequence[Request], queue: ModelQueue, alone: AioschedError, *, halves: bool = True
) -> None:
    """A batch of ``requests`` failed (or hung): put its live members back in two halves
    (or one by one), each to run on its own; a request that failed alone fails with
    ``alone``."""
    live = [r for r in requests if r.state != SETTLED]
    if len(requests) == 1:
        for request in live:
            fail(request, alone)
        return
    # Even with one caller left the others' inputs may have broken it: rerun it alone.
    live.sort(key=queue.key)
    if halves:
        half = (len(live) + 1) // 2
        parts = [live[:half], live[half:]]
    else:
        parts = [[r] for r in live]
    for part in parts:
        for request in part:
            request.group = part
            queue.push(request)
