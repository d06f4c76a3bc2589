"""The backend's lanes as the scheduler keeps them: what each runs, and whether it can run.

A lane is *free* when it is alive, runs nothing, and is not stuck. It is
*dead* once its backend reported a :class:`~aiosched.backends.base.LaneFailure`
(for good), and *stuck* while a batch on it has run far past its prediction
(the watchdog gave up on it; its requests were put back). A stuck lane comes
back if that batch ever returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .telemetry.snapshot import LaneSnapshot
from .timeline import Running

if TYPE_CHECKING:
    from .queue import Request

__all__ = ["Lanes"]


class Lanes:
    """Per-lane state; ``running[i]`` is the execution on lane ``i`` (``None``: idle)."""

    __slots__ = ("alive", "batch", "count", "most_in_flight", "running", "stuck")

    def __init__(self, n: int) -> None:
        self.running: list[Running | None] = [None] * n
        self.batch: list[tuple[Request, ...]] = [()] * n  # the requests it runs
        self.alive = [True] * n
        self.stuck: list[Running | None] = [None] * n
        self.count = [0] * n  # executions finished per lane
        self.most_in_flight = 0

    def free(self) -> list[int]:
        """Lanes that are alive, idle and not stuck."""
        running, alive, stuck = self.running, self.alive, self.stuck
        return [
            i for i in range(len(running)) if running[i] is None and alive[i] and stuck[i] is None
        ]

    def usable(self) -> bool:
        """Whether any lane could still run something (alive and not stuck)."""
        return any(a and s is None for a, s in zip(self.alive, self.stuck, strict=True))

    def any_alive(self) -> bool:
        return any(self.alive)

    def is_free(self, lane: int) -> bool:
        return self.running[lane] is None and self.alive[lane] and self.stuck[lane] is None

    def take(
        self, lane: int, running: Running, requests: tuple[Request, ...], in_flight: int
    ) -> None:
        self.running[lane] = running
        self.batch[lane] = requests
        if in_flight > self.most_in_flight:
            self.most_in_flight = in_flight

    def release(self, lane: int) -> None:
        self.running[lane] = None
        self.batch[lane] = ()

    def snapshot(self) -> tuple[LaneSnapshot, ...]:
        return tuple(
            LaneSnapshot(
                lane=i,
                busy=r is not None,
                alive=self.alive[i],
                model=r.model if r is not None else None,
                batch_size=r.batch_size if r is not None else 0,
                executions=self.count[i],
                stuck=self.stuck[i] is not None,
            )
            for i, r in enumerate(self.running)
        )
