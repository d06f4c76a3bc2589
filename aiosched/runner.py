"""Running batches on lanes: submitting, finishing, learning, and giving up on hung ones.

What happens to one batch after the policy has chosen it: its requests'
inputs go to the backend on a lane; when the backend answers, the timeline
records the execution with its overlaps, each caller gets its own row (or a
failed batch is bisected, :mod:`~aiosched.settle`), the predictor learns and
then the policy. The watchdog (:meth:`BatchRunner.watch`) gives up on a batch
running far past its prediction: its lane is reported stuck and its requests
are put back to run alone elsewhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from . import settle
from .backends.base import Backend, Completion, LaneFailure
from .clock import Clock
from .errors import AioschedError, ModelError, ModelOutputError
from .lanes import Lanes
from .policy import Policy
from .predict import Predictor
from .queue import SETTLED, Request
from .registry import Registered, Registry
from .timeline import Execution, Running, Timeline

__all__ = ["FIRST_RUNS_HANG_S", "BatchRunner"]

log = logging.getLogger("aiosched")

FIRST_RUNS_HANG_S = 30.0
"""The watchdog's floor (seconds) for a model the predictor has not learnt from yet."""


class BatchRunner:
    """Submits batches to a backend's lanes and settles what comes back (see module doc).

    ``learn_gap``, ``hang_factor`` and ``hang_after`` are the scheduler's
    settings of the same names; ``wake`` wakes the dispatcher.
    """

    def __init__(
        self,
        backend: Backend,
        predictor: Predictor,
        policy: Policy,
        registry: Registry,
        timeline: Timeline,
        lanes: Lanes,
        clock: Clock,
        wake: Callable[[], None],
        *,
        learn_gap: float,
        hang_factor: float,
        hang_after: float,
    ) -> None:
        self._backend = backend
        self._predictor = predictor
        self._policy = policy
        self._registry = registry
        self._timeline = timeline
        self._lanes = lanes
        self._clock = clock
        self._wake = wake
        self._learn_gap = learn_gap
        self._hang_factor = hang_factor
        self._hang_after = hang_after
        self._first_hang = max(hang_after, FIRST_RUNS_HANG_S)

    def abandon_all(self, error: AioschedError) -> None:
        """Fail every request in flight with ``error`` and forget those executions."""
        lanes = self._lanes
        for lane, running in enumerate(lanes.running):
            if running is not None:
                for request in lanes.batch[lane]:
                    settle.fail(request, error)
                self._timeline.abandon(running)
                lanes.release(lane)

    def submit(
        self,
        entry: Registered,
        inputs: list[Any],
        lane: int,
        requests: tuple[Request, ...],
        *,
        predicted: float = math.nan,
        warmup: bool = False,
        now: float,
    ) -> None:
        """Run ``inputs`` (the requests' own, or a warm-up's) on ``lane``."""
        name = entry.spec.name
        size = len(inputs)
        at_dispatch = self._timeline.in_flight
        if requests:
            inputs = [r.x for r in requests]
        if not math.isfinite(predicted) or len(inputs) != size:
            predicted = self._predictor.predict(name, size, at_dispatch, now)
        deadline = min([r.deadline for r in requests], default=math.inf)
        running = self._timeline.begin(name, size, lane, now, predicted, deadline)
        self._lanes.take(lane, running, requests, len(at_dispatch) + 1)

        def on_done(completion: Completion) -> None:
            self._finish(entry, running, at_dispatch, requests, completion, warmup)

        try:
            self._backend.submit(lane, entry.spec, inputs, on_done)
        except BaseException:
            self._timeline.abandon(running)
            self._lanes.release(lane)
            raise

    def _finish(
        self,
        entry: Registered,
        running: Running,
        at_dispatch: tuple[Running, ...],
        requests: tuple[Request, ...],
        completion: Completion,
        warmup: bool,
    ) -> None:
        lanes = self._lanes
        lane = running.lane
        error = completion.error
        if lanes.stuck[lane] is running:
            # The hung batch came back: its requests were put back long ago; the lane is free.
            lanes.stuck[lane] = None
            if isinstance(error, LaneFailure):
                lanes.alive[lane] = False
            elif error is None and not entry.learnt:
                # A model slower than the first-run floor: without this lesson its guess
                # would stay a guess, and every run of it would be taken for a hang.
                entry.learnt = True
                latency = completion.end - completion.start
                try:
                    self._predictor.observe(entry.spec.name, running.batch_size, latency)
                except Exception:
                    log.exception("aiosched predictor %s failed to learn", self._predictor.name)
            self._wake()
            return
        if lanes.running[lane] is not running:
            # Given up by abandon_all (aclose timed out): its requests were settled then.
            return
        lanes.release(lane)
        lanes.count[lane] += 1
        execution = self._timeline.finish(
            running,
            completion.start,
            completion.end,
            at_dispatch=at_dispatch,
            ok=error is None,
            warmup=warmup or not requests,
        )
        if not requests:
            entry.warming = False
            if isinstance(error, LaneFailure):
                lanes.alive[lane] = False
            if entry.warm:
                self._registry.warmed(entry)
        elif isinstance(error, LaneFailure):
            log.error("aiosched lane %d failed: %s; its batch is requeued", lane, error)
            lanes.alive[lane] = False
            for request in requests:
                if request.state != SETTLED:
                    entry.queue.push(request)
        elif error is not None:
            settle.retry(requests, entry.queue, _model_error(entry.spec.name, error))
        else:
            self._resolve(entry, requests, completion.outputs)
        if requests:
            entry.counters.batch_sizes[len(requests)] += 1
        if error is None:
            self._learn(entry, execution, bool(requests) or warmup, warmup)
        self._wake()

    def _resolve(
        self, entry: Registered, requests: tuple[Request, ...], outputs: Sequence[Any] | None
    ) -> None:
        if outputs is None or len(outputs) != len(requests):
            got = "no outputs" if outputs is None else f"{len(outputs)} outputs"
            cause = ModelOutputError(f"the backend returned {got} for {len(requests)} inputs")
            settle.retry(requests, entry.queue, _model_error(entry.spec.name, cause))
            return
        settle.resolve(requests, outputs, self._clock.now(), entry.counters)

    def _learn(self, entry: Registered, execution: Execution, lesson: bool, warmup: bool) -> None:
        if lesson:
            # A lesson costs tens of microseconds: from executions shorter than that, learning
            # from each would cost more than running them, and tell no more than a sample.
            entry.unlearnt += execution.latency
            if entry.unlearnt >= self._learn_gap or warmup or not entry.learnt:
                entry.unlearnt = 0.0
                entry.learnt = True  # tried: a predictor that cannot learn it never will
                try:
                    self._predictor.learn(execution)
                except Exception:
                    log.exception("aiosched predictor %s failed to learn", self._predictor.name)
        try:
            self._policy.finished(execution)
        except Exception:
            log.exception("aiosched policy %s failed on a finished batch", self._policy.name)

    def watch(self, now: float) -> float | None:
        """Give up on batches far past their prediction; the next time one would be due."""
        due = math.inf
        models = self._registry.models
        for running in self._timeline.in_flight:
            predicted = running.expected_end - running.start
            predicted = predicted if predicted > 0 else 0.0  # NaN too: the floor applies
            entry = models.get(running.model)
            # Before the predictor has learnt from one run, its prediction is a guess, and a
            # first run may be slow (allocations, autotuning): a long floor, not the guess.
            floor = self._hang_after if entry is None or entry.learnt else self._first_hang
            at = running.start + max(self._hang_factor * predicted, floor)
            if at > now:
                due = min(due, at)
            elif self._lanes.running[running.lane] is running:
                self._hung(running, now)
        return due if math.isfinite(due) else None

    def _hung(self, running: Running, now: float) -> None:
        lane = running.lane
        ran, predicted = now - running.start, running.expected_end - running.start
        log.error(
            "aiosched lane %d: a batch of %d for %s has run %.3f s (predicted %.3f s): "
            "the lane is stuck; its requests are put back",
            lane,
            running.batch_size,
            running.model,
            ran,
            predicted,
        )
        lanes = self._lanes
        requests = lanes.batch[lane]
        lanes.release(lane)
        lanes.stuck[lane] = running
        self._timeline.abandon(running)
        entry = self._registry.models[running.model]
        if not requests:  # a warm-up: serve the model without the rest of it
            entry.warming = False
            entry.warmup_plan.clear()
            self._registry.warmed(entry)
            return
        error = ModelError(
            f"{running.model}: the model hung: still running {ran:.3f} s after it started "
            f"(predicted {predicted:.3f} s)"
        )
        settle.retry(requests, entry.queue, error, halves=False)


def _model_error(name: str, error: BaseException) -> ModelError:
    if isinstance(error, ModelOutputError):
        failure = ModelError(f"{name}: {error}")
    else:
        failure = ModelError(f"{name}: model raised {type(error).__name__}: {error}")
    failure.__cause__ = error
    return failure
