"""The policy interface: what to dispatch, when, and on which lane.

The dispatcher calls :meth:`Policy.step` whenever something changed (a new
request, a finished execution, a planned time). The policy looks at the
queues through a :class:`DispatchView`, dispatches batches and rejects
requests through it, and returns the next time it wants to be woken even if
nothing else happens (or ``None``). The scheduler does the mechanics; the
policy only decides.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal, Protocol

from ..errors import AioschedError
from ..predict.base import Predictor
from ..queue import ModelQueue
from ..timeline import Running

__all__ = ["DispatchView", "Policy"]


class DispatchView(Protocol):
    """What a policy sees and may do during one step."""

    @property
    def now(self) -> float: ...

    @property
    def queues(self) -> Sequence[ModelQueue]:
        """Non-empty queues of models that are ready to serve."""

    @property
    def running(self) -> Sequence[Running]: ...

    @property
    def predictor(self) -> Predictor: ...

    @property
    def best_effort(self) -> bool: ...

    def free_lanes(self) -> list[int]: ...

    def dispatch(self, queue: ModelQueue, n: int, lane: int, predicted: float) -> int:
        """Run the ``n`` most urgent requests of ``queue`` on ``lane``; returns the size sent."""

    def reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        """Fail the most urgent request of ``queue`` with ``error`` without running it."""


class Policy(abc.ABC):
    name: str = "policy"
    order: Literal["deadline", "arrival"] = "deadline"

    @abc.abstractmethod
    def step(self, view: DispatchView) -> float | None:
        """Dispatch and reject what is due now; return the next planned wake time or ``None``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
