"""Earliest deadline first with prediction-sized batches (the default policy).

Each step: reject queue heads that cannot meet their deadline even if run
alone right now; among the rest take the model whose most urgent request has
the least slack; send the largest batch whose predicted completion, next to
what is in flight, still meets that request's deadline (the rest of the batch
has later deadlines), unless it would push more urgent executions in flight
past their deadlines and can afford to wait for a lane of its own (the
co-location guard); repeat while lanes are free. It asks to be woken when
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
    """EDF with prediction-sized batches, early rejection, and a co-location guard.

    With ``guard`` on, a batch is held back rather than started beside
    executions that it would push past their deadlines (as the predictor
    projects it), when they are more urgent and it can still meet its own
    deadline by starting once the first of them ends. A predictor that
    ignores co-location (``solo``) never projects such harm, so the guard
    only acts on what an interference-aware predictor knows.
    """

    name = "edf"
    order = "deadline"

    def __init__(self, max_concurrency: int | None = None, guard: bool = True) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise InvalidConfig("max_concurrency must be >= 1 or None")
        self.max_concurrency = max_concurrency
        self.guard = guard

    def step(self, view: DispatchView) -> float | None:
        now = view.now
        held: set[str] = set()
        retry = math.inf  # the earliest time a held batch should be looked at again
        while True:
            running = view.running
            best: ModelQueue | None = None
            best_slack = math.inf
            wake = retry
            for queue in view.queues:
                head, p1, enforced = self._feasible_head(view, queue)
                if head is None:
                    continue
                if enforced:
                    wake = min(wake, head.deadline - p1)
                if queue.name in held:
                    continue
                slack = head.deadline - now - p1
                if slack < best_slack or best is None:
                    best, best_slack = queue, slack
            if best is None or (
                self.max_concurrency is not None and len(running) >= self.max_concurrency
            ):
                break
            lanes = view.free_lanes()
            if not lanes:
                break
            b, predicted, resume = self._batch_size(view, best, running)
            if resume is None and self.guard and running:
                resume = self._hold_until(view, best, b, predicted, lanes[0], running)
            if resume is not None:
                held.add(best.name)
                retry = min(retry, resume)
                continue
            view.dispatch(best, b, lanes[0], predicted)
        return wake if math.isfinite(wake) else None

    def _hold_until(
        self,
        view: DispatchView,
        queue: ModelQueue,
        b: int,
        predicted: float,
        lane: int,
        running: Sequence[Running],
    ) -> float | None:
        """When to retry instead of starting this batch now, or ``None`` to start it now."""
        head = queue.peek()
        assert head is not None
        now = view.now
        predict = view.predictor.predict
        candidate = Running(-1, queue.name, b, lane, now, now + predicted, head.deadline)
        harmed = False
        for r in running:
            left = r.expected_end - now
            # Only a more urgent execution that would still make it without this batch counts.
            if r.deadline <= head.deadline and left > 0 and r.expected_end <= r.deadline:
                others = [o for o in running if o is not r]
                alone = predict(r.model, r.batch_size, others, now)
                beside = predict(r.model, r.batch_size, [*others, candidate], now)
                if now + left * beside / alone > r.deadline:
                    harmed = True
                    break
        if not harmed:
            return None
        return _worth_waiting(view, queue.name, head.deadline, running)

    def _feasible_head(
        self, view: DispatchView, queue: ModelQueue
    ) -> tuple[Request | None, float, bool]:
        """The queue's head after rejecting what cannot make it even alone, its predicted
        latency alone, and whether rejection applies (known model, not best effort)."""
        now = view.now
        # "Even alone": co-runners in flight may be gone by the time it runs, so rejecting on
        # a prediction beside them would turn away requests that can still make it.
        p1 = view.predictor.predict(queue.name, 1, (), now)
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
        return head, p1, enforce

    def _batch_size(
        self, view: DispatchView, queue: ModelQueue, running: Sequence[Running]
    ) -> tuple[int, float, float | None]:
        """The batch to send now: (size, predicted latency, ``None``), or a time to retry.

        The largest batch whose predicted completion beside what is in flight
        meets the head's deadline. If not even one request fits beside the
        current co-runners, but would once the first of them ends, it returns
        that time instead: waiting beats starting a batch that will be late.
        """
        head = queue.peek()
        assert head is not None
        now = view.now
        name = queue.name
        predict = view.predictor.predict
        budget = head.deadline - now
        hi = min(queue.spec.max_batch_size, len(queue))
        p_hi = predict(name, hi, running, now)
        if p_hi <= budget:
            return hi, p_hi, None
        p_lo = predict(name, 1, running, now) if hi > 1 else p_hi
        if p_lo > budget:
            if view.best_effort or not view.predictor.knows(name):
                return hi, p_hi, None  # the deadline is lost either way: size for throughput
            # Wait for a co-runner to end if that saves it; else its best chance, though late.
            return 1, p_lo, _worth_waiting(view, name, head.deadline, running)
        lo = 1  # invariant: lo fits, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            p_mid = predict(name, mid, running, now)
            if p_mid <= budget:
                lo, p_lo = mid, p_mid
            else:
                hi = mid
        return lo, p_lo, None


def _worth_waiting(
    view: DispatchView, name: str, deadline: float, running: Sequence[Running]
) -> float | None:
    """When the first co-runner is expected to end, if one request started then would
    still meet ``deadline``; ``None`` if there is nothing (or no use) to wait for."""
    if not running:
        return None
    first = min(running, key=lambda r: r.expected_end)
    resume = first.expected_end
    if resume <= view.now:
        return None  # it has overrun its prediction: there is no end to wait for
    rest = [r for r in running if r is not first]
    if resume + view.predictor.predict(name, 1, rest, resume) > deadline:
        return None  # waiting would cost it its own deadline
    return resume
