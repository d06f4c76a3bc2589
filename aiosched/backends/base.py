"""The contract between the scheduler and a device.

A backend owns lanes (execution slots that run concurrently). The scheduler
calls :meth:`Backend.submit` on the event-loop thread with a batch for a free
lane; the backend runs it off the loop (or, for the sim backend, in virtual
time) and calls ``on_done`` on the loop thread with a :class:`Completion`.
A backend never runs a model on the event-loop thread.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import Clock, PerfClock
from ..errors import AioschedError, InvalidConfig
from ..spec import ModelSpec

__all__ = ["MAX_LANES", "Backend", "Completion", "DoneCallback", "LaneFailure"]

#: The most lanes a backend may have. Every lane is a batch in flight on one device;
#: prediction is already worse at 4 than at 2 (README), and the policy and predictors
#: look at every lane in flight, so far beyond this a run does little but schedule.
MAX_LANES = 64


class LaneFailure(AioschedError):
    """A lane broke (not the model): the batch did not run and the lane is unusable.

    A backend puts it in the :class:`Completion`; the scheduler takes the lane out of
    service and puts the batch's requests back in their queue (callers see
    :class:`~aiosched.LaneFailed` only once every lane has failed).
    """


@dataclass(frozen=True, slots=True)
class Completion:
    """One batch's outcome: an output per input, or the error; times on the scheduler clock."""

    outputs: Sequence[Any] | None
    error: BaseException | None
    start: float
    end: float

    @classmethod
    def failed(cls, error: BaseException, clock: Clock) -> Completion:
        """A batch that ended in ``error`` at once, now on ``clock``."""
        now = clock.now()
        return cls(None, error, now, now)


DoneCallback = Callable[[Completion], None]


class Backend(abc.ABC):
    """A device and its lanes."""

    name: str = "backend"
    #: How much more work per second co-located lanes must be seen to get through, beyond
    #: what the policy asks anyway, before running batches beside each other is worth it
    #: here (a fraction). The cpu backend sets it where its lanes take every core, which
    #: they then share with the event loop and the application's own threads.
    colocation_cost: float = 0.0
    #: Completion times come from the backend's own clock (``default_clock``), so the
    #: scheduler may not be given another one.
    owns_clock: bool = False

    def __init__(self, lanes: int) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
            raise InvalidConfig(
                f"lanes must be an int from 1 to {MAX_LANES} (batches run at once on one "
                f"device), got {lanes!r}"
            )
        self.lanes = lanes

    def default_clock(self, loop: asyncio.AbstractEventLoop) -> Clock:
        """The clock the scheduler should use with this backend unless told otherwise."""
        return PerfClock()

    def abandon_lane(self, lane: int) -> None:  # noqa: B027
        """The scheduler gave up on ``lane``: its batch is hung. Release what can be
        released, and do not wait for that lane on :meth:`aclose` (no-op by default)."""

    def close_nowait(self) -> None:  # noqa: B027
        """Release the lanes without waiting for them: the event loop is going away (the
        scheduler was never closed, or its loop was shut down under it). No-op by default."""

    @abc.abstractmethod
    async def start(self, clock: Clock) -> None:
        """Bring the lanes up; called once on the event loop before any submit."""

    @abc.abstractmethod
    def load(self, spec: ModelSpec) -> None:
        """Accept a model for running; raise InvalidConfig if it cannot run here."""

    def unload(self, name: str) -> None:  # noqa: B027
        """Forget model ``name``: drop every reference to its module and whatever the backend
        keeps for it (device copies, captured graphs, buffers), so that its memory can go.

        Called on the loop thread once no batch of ``name`` is queued or running on the
        scheduler's side (a batch given up as hung may still be running: it keeps what it
        holds until it returns). A name not loaded is ignored; the name may be loaded again
        later, perhaps for another model. No-op by default: a backend that keeps nothing
        per model has nothing to release.
        """

    @abc.abstractmethod
    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        """Run ``inputs`` as one batch on ``lane``; ``on_done`` is called on the loop thread.

        Called on the loop thread; must return at once. The lane is the
        scheduler's to track: it submits to a lane only when its last batch
        has completed.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the lanes. Called after the last completion; idempotent."""

    def sample_input(self, spec: ModelSpec) -> Any:
        """One input for warm-up runs, or ``None`` where none can be made."""
        return spec.sample()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "lanes": self.lanes}

    def telemetry(self) -> Mapping[str, float]:
        """Latest device metrics (e.g. NVML utilisation), cheap to read; empty where none."""
        return {}
