"""The policy interface: what to admit, what to dispatch, when, and on which lane.

The scheduler does the mechanics (queues, lanes, futures, the timeline); the
policy decides. It is asked three things:

- :meth:`Policy.admit`, on the caller's path inside ``infer()``: may this
  request be queued at all? (A single comparison: it runs per request.)
- :meth:`Policy.step`, whenever something changed (a new request, a finished
  execution, a planned time): look at the queues through a
  :class:`DispatchView`, dispatch batches and reject requests through it,
  and return the next time to be woken even if nothing else happens.
- :meth:`Policy.finished`, after every finished execution and after the
  predictor has learnt from it: the policy's own bookkeeping (evidence for
  admission, cached predictions).

And told one thing: :meth:`Policy.forget`, when a model is unregistered.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

from ..errors import AioschedError
from ..predict.base import Predictor
from ..queue import ModelQueue
from ..timeline import Execution, Running

__all__ = ["DispatchView", "Policy"]


class DispatchView(Protocol):
    """What a policy sees and may do during one step."""

    @property
    def now(self) -> float: ...

    @property
    def queues(self) -> Sequence[ModelQueue]:
        """Non-empty queues of models that are ready to serve, in no particular order
        (O(non-empty queues): prefer :meth:`ordered` where a few of them will do)."""

    def ordered(self) -> Iterator[tuple[float, ModelQueue]]:
        """``(bound, queue)`` for the non-empty ready queues, most urgent head first.

        ``bound`` is a lower bound on the queue's :meth:`~ModelQueue.key` of its
        head (its deadline, or its arrival for FIFO queues), exact for the first;
        the order is by bound, ties to the head that arrived first. Stop as soon
        as no queue further on can matter: the walk costs only what it visits.
        Do not dispatch while iterating one walk: start a new one after.
        """

    @property
    def running(self) -> Sequence[Running]: ...

    @property
    def predictor(self) -> Predictor: ...

    @property
    def best_effort(self) -> bool: ...

    @property
    def colocation_cost(self) -> float:
        """The backend's :attr:`~aiosched.backends.base.Backend.colocation_cost`."""

    def free_lanes(self) -> list[int]: ...

    def dispatch(
        self, queue: ModelQueue, n: int, lane: int, predicted: float, skip: int = 0
    ) -> int:
        """Run ``n`` most urgent requests of ``queue`` on ``lane``, passing over the first
        ``skip`` (they stay queued); returns the size sent."""

    def reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        """Fail the most urgent request of ``queue`` with ``error`` without running it."""


class Policy(abc.ABC):
    name: str = "policy"
    order: Literal["deadline", "arrival"] = "deadline"

    def bind(self, view: DispatchView) -> None:  # noqa: B027
        """Called once when the scheduler starts, with the view every later call sees."""

    def admit(self, queue: ModelQueue, deadline: float, now: float) -> AioschedError | None:
        """The error to reject a new request with, or ``None`` to queue it (default: queue)."""
        return None

    @abc.abstractmethod
    def step(self, view: DispatchView) -> float | None:
        """Dispatch and reject what is due now; return the next planned wake time or ``None``."""

    def finished(self, execution: Execution) -> None:  # noqa: B027
        """An execution finished and the predictor has learnt from it."""

    def forget(self, model: str) -> None:  # noqa: B027
        """``model`` was unregistered (nothing of it is queued or running): drop what is
        kept about it; a model registered later under that name is a new one."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
