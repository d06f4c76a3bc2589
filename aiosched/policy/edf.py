"""Earliest deadline first with prediction-sized batches (the default policy).

Each step: reject queue heads that cannot meet their deadline even if run
alone right now; among the rest take the model whose most urgent request has
the least slack; send the largest batch whose predicted completion, next to
what is in flight, still meets that request's deadline (the rest of the batch
has later deadlines); repeat while lanes are free. It asks to be woken when
the next queue head would turn infeasible, so a request that cannot be served
is told so at that moment, not when some other execution happens to end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import DeadlineUnmeetable, InvalidConfig
from ..queue import ModelQueue, Request
from ..timeline import Running
from .base import DispatchView, Policy

__all__ = ["EdfPolicy"]


class EdfPolicy(Policy):
    name = "edf"
    order = "deadline"

    def __init__(self, max_concurrency: int | None = None) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise InvalidConfig("max_concurrency must be >= 1 or None")
        self.max_concurrency = max_concurrency

    def step(self, view: DispatchView) -> float | None:
        now = view.now
        wake = math.inf
        while True:
            running = view.running
            best: ModelQueue | None = None
            best_slack = math.inf
            wake = math.inf
            for queue in view.queues:
                head, p1 = self._feasible_head(view, queue, running)
                if head is None:
                    continue
                slack = head.deadline - now - p1
                if slack < best_slack or best is None:
                    best, best_slack = queue, slack
                if not view.best_effort:
                    wake = min(wake, head.deadline - p1)
            if best is None or (
                self.max_concurrency is not None and len(running) >= self.max_concurrency
            ):
                break
            lanes = view.free_lanes()
            if not lanes:
                break
            b, predicted = self._batch_size(view, best, running)
            view.dispatch(best, b, lanes[0], predicted)
        return wake if math.isfinite(wake) else None

    def _feasible_head(
        self, view: DispatchView, queue: ModelQueue, running: Sequence[Running]
    ) -> tuple[Request | None, float]:
        now = view.now
        p1 = view.predictor.predict(queue.name, 1, running, now)
        enforce = not view.best_effort and view.predictor.knows(queue.name)
        head = queue.peek()
        while head is not None and enforce and now + p1 > head.deadline:
            view.reject_head(
                queue,
                DeadlineUnmeetable(
                    f"{queue.name}: predicted {p1 * 1e3:.2f} ms even alone; "
                    f"{(head.deadline - now) * 1e3:.2f} ms left to the deadline"
                ),
            )
            head = queue.peek()
        return head, p1

    def _batch_size(
        self, view: DispatchView, queue: ModelQueue, running: Sequence[Running]
    ) -> tuple[int, float]:
        """Largest batch whose predicted completion meets the head's deadline (at least 1)."""
        head = queue.peek()
        assert head is not None
        now = view.now
        name = queue.name
        predict = view.predictor.predict
        budget = head.deadline - now
        hi = min(queue.spec.max_batch_size, len(queue))
        p_hi = predict(name, hi, running, now)
        if p_hi <= budget or hi == 1:
            return hi, p_hi
        p_lo = predict(name, 1, running, now)
        if p_lo > budget:
            # Only reachable in best-effort mode (or unknown models): the deadline is lost
            # either way, so the batch is sized for throughput.
            return hi, p_hi
        lo = 1  # invariant: lo fits, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            p_mid = predict(name, mid, running, now)
            if p_mid <= budget:
                lo, p_lo = mid, p_mid
            else:
                hi = mid
        return lo, p_lo
