"""FIFO dynamic batching, as Triton's dynamic batcher and Ray Serve's ``@serve.batch`` do it.

Requests are served in arrival order. A batch leaves when it is full or when
its oldest request has waited ``max_queue_delay`` seconds, on any free lane;
there is no latency prediction. Like Triton's per-request timeout with
REJECT, a request whose deadline has already passed when its batch forms is
rejected instead of run (unless the scheduler is best effort).
"""

from __future__ import annotations

import math

from ..errors import DeadlineExceeded, InvalidConfig
from ..queue import ModelQueue
from .base import DispatchView, Policy

__all__ = ["FifoPolicy"]


class FifoPolicy(Policy):
    name = "fifo"
    order = "arrival"

    def __init__(self, max_queue_delay: float = 0.002, reject_expired: bool = True) -> None:
        if not (max_queue_delay >= 0 and math.isfinite(max_queue_delay)):
            raise InvalidConfig("max_queue_delay must be seconds >= 0")
        self.max_queue_delay = max_queue_delay
        self.reject_expired = reject_expired

    def step(self, view: DispatchView) -> float | None:
        now = view.now
        reject = self.reject_expired and not view.best_effort
        while True:
            wake = math.inf
            due: ModelQueue | None = None
            oldest = math.inf
            for queue in view.queues:
                head = queue.peek()
                while head is not None and reject and head.deadline < now:
                    view.reject_head(queue, DeadlineExceeded(f"{queue.name}: deadline passed"))
                    head = queue.peek()
                if head is None:
                    continue
                ready_at = head.arrival + self.max_queue_delay
                if len(queue) >= queue.spec.max_batch_size:
                    ready_at = now
                if ready_at <= now:
                    if head.arrival < oldest:
                        due, oldest = queue, head.arrival
                else:
                    wake = min(wake, ready_at)
            lanes = view.free_lanes()
            if due is None or not lanes:
                break
            n = min(len(due), due.spec.max_batch_size)
            view.dispatch(due, n, lanes[0], math.nan)
        return wake if math.isfinite(wake) else None

    def __repr__(self) -> str:
        return f"FifoPolicy(max_queue_delay={self.max_queue_delay})"
