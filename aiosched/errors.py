"""Every error aiosched raises derives from :class:`AioschedError`.

The errors a backend reports in a batch's completion live with the backends and
derive from it too: :class:`~aiosched.backends.base.LaneFailure` and
:class:`~aiosched.backends.cuda.DeviceOutOfMemory`.

Errors are raised at the boundary where the problem is known: a bad input at
``infer()`` before anything is enqueued, an unmeetable deadline at admission or
as soon as it becomes unmeetable while queued. One request's error never fails
another request.
"""

from __future__ import annotations

__all__ = [
    "AioschedError",
    "DeadlineExceeded",
    "DeadlineUnmeetable",
    "InvalidConfig",
    "InvalidInput",
    "LaneFailed",
    "ModelError",
    "ModelOutputError",
    "ModelUnregistered",
    "Overloaded",
    "SchedulerClosed",
    "UnknownModel",
    "WrongEventLoop",
]


class AioschedError(Exception):
    """Root of every error raised by aiosched."""


class InvalidConfig(AioschedError, ValueError):
    """A scheduler, backend or model registration was given bad settings."""


class UnknownModel(AioschedError, LookupError):
    """``infer()`` named a model that is not registered (never, or no longer)."""


class ModelUnregistered(UnknownModel):
    """The request's model was unregistered without draining before the request ran.

    ``Scheduler.unregister(name, drain=False)`` fails the model's queued requests
    with it: those that never ran, and those put back after their batch failed,
    which are not run again. A new call for a model being unregistered, or already
    gone, gets a plain :class:`UnknownModel`.
    """


class InvalidInput(AioschedError, ValueError):
    """The input (type, shape, dtype) or the deadline is malformed; nothing was enqueued."""


class DeadlineUnmeetable(AioschedError):
    """The predicted completion is past the deadline, so the request was rejected before running.

    Raised at admission, or later while the request waited in its queue and
    the prediction turned infeasible. The request never ran.
    """


class DeadlineExceeded(DeadlineUnmeetable):
    """The deadline had already passed before the request could be dispatched."""


class Overloaded(AioschedError):
    """The model's queue is at its bound; the request was not enqueued."""


class SchedulerClosed(AioschedError):
    """The scheduler is closing or closed; the request was not (or will not be) run."""


class ModelError(AioschedError):
    """The model raised while running this request's input; the original error is ``__cause__``."""


class ModelOutputError(ModelError, ValueError):
    """The model's output for a batch cannot be split into one row per input.

    A backend raises it where the model returned something other than tensors (and
    tuples, lists and dicts of them) with one row per input along the first dimension;
    the caller gets a :class:`ModelError` with this as its ``__cause__``.
    """


class LaneFailed(AioschedError):
    """Every lane of the backend has failed, so queued requests cannot run."""


class WrongEventLoop(AioschedError, RuntimeError):
    """The scheduler was used from an event loop other than the one it was started on.

    A scheduler's queues, futures and lanes belong to one loop; start one
    scheduler per loop (per thread, per ``asyncio.run``).
    """
