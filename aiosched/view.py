"""What a policy sees of the scheduler during a step, and what it may do (its
:class:`~aiosched.policy.DispatchView`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import settle
from .errors import AioschedError
from .predict import Predictor
from .queue import SETTLED, ModelQueue
from .timeline import Running

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["SchedulerView"]


class SchedulerView:
    """The :class:`~aiosched.policy.DispatchView` a policy gets: the scheduler at this step."""

    __slots__ = ("_s",)

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler

    @property
    def now(self) -> float:
        return self._s._now

    @property
    def queues(self) -> list[ModelQueue]:
        return self._s._registry.ready.queues()

    def ordered(self) -> Iterator[tuple[float, ModelQueue]]:
        ready = self._s._registry.ready
        ready.tidy()
        return ready.ordered()

    @property
    def running(self) -> tuple[Running, ...]:
        return self._s._timeline.in_flight

    @property
    def predictor(self) -> Predictor:
        return self._s._predictor

    @property
    def best_effort(self) -> bool:
        return self._s._best_effort

    @property
    def colocation_cost(self) -> float:
        return self._s._backend.colocation_cost

    def free_lanes(self) -> list[int]:
        return self._s._lanes.free()

    def dispatch(
        self, queue: ModelQueue, n: int, lane: int, predicted: float, skip: int = 0
    ) -> int:
        s = self._s
        if not s._lanes.is_free(lane):
            raise RuntimeError(f"policy dispatched to lane {lane}, which is not free")
        batch = queue.pop_batch_after(skip, max(1, n))
        if not batch:
            return 0
        if len(batch) != n:
            predicted = math.nan  # a retry group cut the batch short: predict its size
        runner = s._runner
        assert runner is not None
        try:
            runner.submit(
                s._models[queue.name], batch, lane, tuple(batch), predicted=predicted, now=s._now
            )
        except BaseException:
            # Nothing ran: put the batch back so that the failure path can resolve it.
            for request in batch:
                if request.state != SETTLED:
                    queue.push(request)
            raise
        if batch[0].group is None:  # a retry group's members were counted at their first run
            now = s._now
            batch[0].counters.queue_wait.record_many([now - r.arrival for r in batch])
        return len(batch)

    def reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        settle.reject(queue.pop(), error)
