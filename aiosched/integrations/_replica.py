"""One replica's scheduler, without Ray: what a Ray Serve replica runs, testable in-process.

:class:`AioschedReplica` builds its models in the replica (the factories run
there, so weights load where they run), starts one :class:`~aiosched.Scheduler`
on the replica's event loop and answers each call with a :class:`Reply`.
Deadlines arrive as absolute wall-clock times (``time.time()`` seconds) and are
turned into the budget left *on arrival*, so the time spent in transit (the
router's queue, serialisation, the network) is charged to the request.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from .. import errors
from ..errors import AioschedError, DeadlineExceeded, InvalidConfig
from ..scheduler import Scheduler

__all__ = ["AioschedReplica", "ModelsArg", "Reply", "ServedModel", "error_class"]


def _zoo_model(name: str) -> Any:
    from ..models import torchvision_model

    return torchvision_model(name)[0]


@dataclass(frozen=True)
class ServedModel:
    """A model as each replica builds it: ``factory()`` runs in the replica, not the caller.

    The other fields are :meth:`Scheduler.register`'s. ``factory`` travels to
    the replicas by pickle, so it must be importable there (a module-level
    function or class, or a ``functools.partial`` of one).
    """

    factory: Callable[[], Any]
    input_shape: tuple[int, ...] | None = None
    max_batch_size: int = 8
    dtype: torch.dtype | None = None
    deadline: float | None = None
    max_queue: int = 100_000

    @classmethod
    def zoo(cls, name: str, **options: Any) -> ServedModel:
        """A model of :data:`aiosched.models.ZOO` by name (random weights, no download)."""
        from ..models import ZOO

        entry = ZOO.get(name)
        if entry is None:
            raise InvalidConfig(f"unknown model {name!r}; known: {', '.join(sorted(ZOO))}")
        return cls(partial(_zoo_model, name), input_shape=entry.input_shape, **options)


ModelsArg = Mapping[str, ServedModel | Callable[[], Any]] | Sequence[str]
"""``{name: ServedModel or factory}``, or zoo names (:meth:`ServedModel.zoo`)."""


def served_models(models: ModelsArg) -> dict[str, ServedModel]:
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, Mapping):
        return {name: ServedModel.zoo(name) for name in models}
    out = {}
    for name, m in models.items():
        if not isinstance(m, ServedModel):
            if not callable(m):
                raise InvalidConfig(f"{name}: expected a ServedModel or a factory, got {m!r}")
            m = ServedModel(m)
        out[name] = m
    if not out:
        raise InvalidConfig("serve at least one model")
    return out


def error_class(name: str | None) -> type[AioschedError]:
    """The :mod:`aiosched.errors` class called ``name`` (:class:`AioschedError` if none is)."""
    cls = getattr(errors, name or "", None)
    if isinstance(cls, type) and issubclass(cls, AioschedError):
        return cls
    return AioschedError


@dataclass(frozen=True, slots=True)
class Reply:
    """A replica's answer to one call: the output, or the aiosched error it ended with.

    ``error`` is the name of the error's class in :mod:`aiosched.errors`
    (``"DeadlineUnmeetable"``, ``"Overloaded"``, ``"ModelError"``, ...): a
    name, not the exception, so the caller can tell the outcomes apart
    without unpickling a replica's traceback (and a :class:`ModelError`'s
    cause, which may not pickle, is in ``message``). ``transit_s`` is the
    time from the caller's send to the replica's receipt, by the two wall
    clocks (so it includes their skew across machines).
    """

    output: Any = None
    error: str | None = None
    message: str = ""
    transit_s: float | None = None
    replica: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        """The output, or the error raised again here with its original class."""
        if self.error is None:
            return self.output
        raise error_class(self.error)(f"{self.message} [replica {self.replica}]")


class AioschedReplica:
    """One replica: a :class:`Scheduler` for its device, its models, and the calls to it.

    ``backend``, ``lanes`` and ``scheduler_options`` (``policy``,
    ``predictor``, ``best_effort``, ...) go to the :class:`Scheduler`. Call
    :meth:`start` on the event loop the calls will come from, and
    :meth:`aclose` on it at the end (under Ray Serve the deployment does both).
    """

    def __init__(
        self,
        models: ModelsArg,
        *,
        backend: str = "cpu",
        lanes: int | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._models = served_models(models)
        self._backend = backend
        self._lanes = lanes
        self._options = dict(scheduler_options or {})
        self._sched: Scheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        """Which replica answered (host:pid), in every :class:`Reply`."""

    @property
    def scheduler(self) -> Scheduler:
        if self._sched is None:
            raise errors.SchedulerClosed("the replica's scheduler is not started")
        return self._sched

    async def start(self) -> None:
        """Start the scheduler on this loop, build and register the models, wait for warm-up."""
        sched = Scheduler(self._backend, lanes=self._lanes, **self._options)
        await sched.start()
        try:
            for name, m in self._models.items():
                sched.register(
                    name,
                    m.factory(),
                    max_batch_size=m.max_batch_size,
                    input_shape=m.input_shape,
                    dtype=m.dtype,
                    deadline=m.deadline,
                    max_queue=m.max_queue,
                )
            await sched.ready()
        except BaseException:
            await sched.aclose(drain=False)
            raise
        self._sched = sched
        self._loop = asyncio.get_running_loop()

    async def aclose(self) -> None:
        """Close the scheduler: refuse new calls, finish the queued ones, stop the lanes."""
        if self._sched is not None:
            await self._sched.aclose()

    def __del__(self) -> Coroutine[Any, Any, None] | None:
        # Ray Serve's graceful shutdown calls __del__ explicitly, once, on this replica's
        # event loop after draining in-flight calls, and awaits whatever it returns: that is
        # its only shutdown hook. A plain def returning the close coroutine, rather than an
        # ``async def __del__``, leaves no never-awaited coroutine when the garbage
        # collector calls it off the loop (the Scheduler then warns that it was left open).
        sched = self._sched if hasattr(self, "_sched") else None
        if sched is None or sched.closed:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self.aclose() if loop is self._loop else None

    def check_health(self) -> None:
        """Raise when the replica cannot serve (closed, or no lane left): Serve replaces it."""
        sched = self.scheduler
        snap = sched.snapshot()
        if snap.closed or sched.closed:
            raise errors.SchedulerClosed("the replica's scheduler is closed")
        if snap.lanes and not any(lane.alive for lane in snap.lanes):
            raise errors.LaneFailed("every lane of the replica's scheduler has failed")

    def describe(self) -> dict[str, Any]:
        """The models served (input shape, dtype, largest batch) and the scheduler's settings."""
        sched = self.scheduler
        return {
            "replica": self.name,
            "backend": sched.backend.name,
            "lanes": sched.backend.lanes,
            "policy": sched.snapshot().policy,
            "models": {
                spec.name: {
                    "input_shape": None if spec.input_shape is None else list(spec.input_shape),
                    "dtype": None if spec.dtype is None else str(spec.dtype).removeprefix("torch."),
                    "max_batch_size": spec.max_batch_size,
                }
                for spec in sched.models
            },
        }

    def stats(self) -> dict[str, Any]:
        """This replica's :meth:`Scheduler.snapshot` as plain data, with ``replica``."""
        return {"replica": self.name, **self.scheduler.snapshot().to_dict()}

    async def infer(
        self,
        model: str,
        x: Any,
        deadline_at: float | None = None,
        *,
        sent_at: float | None = None,
    ) -> Reply:
        """Run ``x`` on ``model`` by ``deadline_at`` (``time.time()`` seconds; ``None``: none).

        What is left of the deadline on arrival is the budget the scheduler
        gets; a deadline that passed in transit is :class:`DeadlineExceeded`
        without reaching the scheduler. aiosched's errors come back in the
        :class:`Reply`; anything else raises (Ray reports it as a task error).
        """
        arrived = time.time()
        transit = None if sent_at is None else arrived - sent_at
        budget: float | None = None
        if deadline_at is not None:
            budget = deadline_at - arrived
            if not budget > 0:  # NaN too: nothing to give the scheduler
                late = "" if math.isnan(budget) else f" ({-budget * 1e3:.1f} ms ago)"
                return self._error(
                    DeadlineExceeded(f"{model}: deadline passed in transit{late}"), transit
                )
        try:
            y = await self.scheduler.infer(model, x, budget)
        except AioschedError as exc:
            return self._error(exc, transit)
        return Reply(output=y, transit_s=transit, replica=self.name)

    def _error(self, exc: AioschedError, transit: float | None) -> Reply:
        message = str(exc)
        if exc.__cause__ is not None:  # a ModelError's cause: the model's own exception
            message = f"{message}: {type(exc.__cause__).__name__}: {exc.__cause__}"
        return Reply(
            error=type(exc).__name__, message=message, transit_s=transit, replica=self.name
        )
