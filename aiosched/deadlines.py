"""A request's deadline, from what ``infer()`` was given, as a time on the scheduler's clock."""

from __future__ import annotations

import math

from .errors import InvalidInput
from .spec import ModelSpec

__all__ = ["absolute_deadline"]


def absolute_deadline(
    spec: ModelSpec, now: float, budget: float | None, absolute: float | None
) -> float:
    """``now + budget``, or ``absolute``, or ``now`` plus the model's default, or infinity
    (no deadline: served after every request that has one, never rejected as late)."""
    if budget is not None:
        if absolute is not None:
            raise InvalidInput("give either deadline (seconds from now) or deadline_at")
        if isinstance(budget, bool) or not isinstance(budget, int | float):
            raise InvalidInput(f"deadline must be seconds (a number), got {budget!r}")
        if not (budget > 0 and math.isfinite(budget)):
            raise InvalidInput(
                f"deadline must be a finite number of seconds > 0 from now (leave it out "
                f"for none), got {budget!r}"
            )
        return now + budget
    if absolute is not None:
        if isinstance(absolute, bool) or not isinstance(absolute, int | float):
            raise InvalidInput(f"deadline_at must be a time in seconds, got {absolute!r}")
        if not math.isfinite(absolute):
            raise InvalidInput(
                f"deadline_at must be a finite time on now()'s clock (leave it out for "
                f"none), got {absolute!r}"
            )
        return float(absolute)
    if spec.default_deadline is not None:
        return now + spec.default_deadline
    return math.inf
