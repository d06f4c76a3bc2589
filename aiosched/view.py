"""What a policy sees of the scheduler during a step, and what it may do (its
:class:`~aiosched.policy.DispatchView`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import settle
from .errors import AioschedError
from .predict import Predictor
from .queue import ModelQueue
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
        return self._s._dispatch(queue, n, lane, predicted, skip)

    def reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        settle.reject(queue.pop(), error)
