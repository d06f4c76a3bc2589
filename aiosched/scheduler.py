"""The Scheduler: the mechanics between ``infer()`` and a backend's lanes.

A request's life: ``infer()`` validates it (a typed error at once, nothing
enqueued), asks the policy whether to admit it, and queues it. One
dispatcher task sleeps until something changes (a new request, a finished
execution, a time the policy planned, a watchdog), then lets the policy
dispatch batches to free lanes. When a batch finishes, its outputs go to the
waiting futures, the timeline records the execution with its overlaps, the
predictor learns from it and then the policy.

The Scheduler decides nothing about batching, co-location or admission (the
policy does) and keeps its pieces elsewhere: the models and their warm-up in
:mod:`~aiosched.registry`, the lanes in :mod:`~aiosched.lanes`, how a request
is settled (and a failed batch bisected) in :mod:`~aiosched.settle`, running
a batch and watching it in :mod:`~aiosched.runner`, the dispatcher task in
:mod:`~aiosched.dispatcher`, what a policy sees and may do in
:mod:`~aiosched.view`, and its statistics in :mod:`~aiosched.telemetry.snapshot`.

Every request resolves exactly once: with its output, or with one of the
errors in :mod:`aiosched.errors`; the per-model counters account for each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import torch

from . import settle
from .backends import make_backend
from .backends.base import Backend
from .clock import Clock
from .deadlines import absolute_deadline
from .dispatcher import dispatch_loop
from .errors import (
    AioschedError,
    DeadlineExceeded,
    InvalidConfig,
    Overloaded,
    SchedulerClosed,
    UnknownModel,
    WrongEventLoop,
)
from .lanes import Lanes
from .policy import Policy, make_policy
from .predict import Predictor, Profile, make_predictor
from .queue import ModelQueue, Request
from .registry import Registered, Registry
from .runner import BatchRunner
from .spec import ModelSpec, as_shape
from .telemetry.snapshot import ModelSnapshot, SchedulerSnapshot, scheduler_snapshot
from .timeline import Timeline
from .view import SchedulerView

__all__ = ["DEFAULT_PREDICTOR", "Scheduler"]

log = logging.getLogger("aiosched")

#: Deadline-safe sizing: the overlap-aware predictor at its 90th percentile.
DEFAULT_PREDICTOR = "overlap:quantile=0.9"


class Scheduler:
    """Runs ``infer()`` calls on a backend's lanes, earliest deadline first.

    ``backend`` is ``"sim"``, ``"cpu"``, ``"cuda"``, ``"auto"`` (cuda when
    available, else cpu) or a :class:`Backend`; ``lanes`` sizes a named backend.
    ``policy`` and ``predictor`` take a name or an object; the default
    predictor is ``overlap`` at its 90th percentile (deadline-safe sizing).
    ``best_effort=True`` turns early rejection off: every request runs, late
    or not. ``drain`` says what closing does with queued requests: run them
    (default) or fail them with :class:`SchedulerClosed`. ``profile`` (a
    :class:`~aiosched.predict.Profile` or the JSON file ``aiosched profile``
    writes) seeds the predictor with measured solo latencies. ``learn_gap``
    bounds what learning costs when executions are very short: the predictor
    learns from a model's execution once at least that much of the model's
    device time (seconds) has passed since its last lesson, so every execution
    of a model that takes a millisecond or more, and a sample of shorter ones
    (``0``: every execution); always from a model's first one.

    The watchdog: a batch still running ``hang_factor`` times its predicted
    latency after it started (and at least ``hang_after`` seconds) is *hung*.
    Its lane is reported stuck (``snapshot().lanes``) and takes no more work
    until that batch returns; its requests are put back, each to run alone, so
    that an input that hangs the model fails alone with :class:`ModelError`
    while the others are served elsewhere. (Every run that holds a hanging
    input costs a lane until it returns: one by one, that is one lane more.)
    Until the predictor has learnt from one run of a model (its warm-up,
    usually), the floor is 30 s rather than ``hang_after``: a first run may be
    slow (allocations, autotuning), and the prediction is only a guess then.
    """

    def __init__(
        self,
        backend: str | Backend = "sim",
        *,
        lanes: int | None = None,
        policy: str | Policy = "edf",
        predictor: str | Predictor = DEFAULT_PREDICTOR,
        clock: Clock | None = None,
        best_effort: bool = False,
        drain: bool = True,
        warmup_repeats: int = 2,
        keep_executions: int = 100_000,
        learn_gap: float = 1e-3,
        hang_factor: float = 50.0,
        hang_after: float = 1.0,
        profile: Profile | str | os.PathLike[str] | None = None,
    ) -> None:
        w = warmup_repeats
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise InvalidConfig(f"warmup_repeats must be an int >= 0, got {w!r}")
        for name, value, low in (
            ("learn_gap", learn_gap, 0.0),
            ("hang_factor", hang_factor, 1.0),
            ("hang_after", hang_after, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidConfig(f"{name} must be a number, got {value!r}")
            if not (value >= low and math.isfinite(value)):
                raise InvalidConfig(f"{name} must be finite and >= {low:g}, got {value!r}")
        self._backend = make_backend(backend, lanes)
        if clock is not None and self._backend.owns_clock:
            raise InvalidConfig(
                f"the {self._backend.name} backend keeps its own clock; do not pass clock="
            )
        self._policy = make_policy(policy)
        self._admit = self._policy.admit
        self._predictor = make_predictor(predictor)
        self._predictor.attach(self._backend)
        if profile is not None:
            # Measured solo latencies (``aiosched profile``) seed the predictor before any run.
            if not isinstance(profile, Profile):
                profile = Profile.load(Path(profile))
            self._predictor.seed(profile)
        self._clock_override = clock
        self._clock: Clock | None = clock
        self._best_effort = bool(best_effort)
        self._drain = bool(drain)
        self._warmup_repeats = warmup_repeats
        self._learn_gap = float(learn_gap)
        self._hang_factor = float(hang_factor)
        self._hang_after = float(hang_after)
        self._registry = Registry()
        self._models = self._registry.models
        self._timeline = Timeline(keep=keep_executions)
        self._lanes = Lanes(self._backend.lanes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._now = 0.0
        self._started = False
        self._closing = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._view = SchedulerView(self)
        self._runner: BatchRunner | None = None
        self._clock_now: Callable[[], float] = _not_started
        self._create_future: Callable[[], asyncio.Future[Any]] = _not_started

    # -- lifetime ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bring the backend up and start the dispatcher (``async with`` does this)."""
        if self._started or self._closing:
            raise InvalidConfig("a Scheduler can be started once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._clock = self._clock_override or self._backend.default_clock(loop)
        self._clock_now = self._clock.now
        self._create_future = loop.create_future
        await self._backend.start(self._clock)
        try:
            for entry in self._registry:
                self._backend.load(entry.spec)
        except BaseException:
            await self._backend.aclose()  # or its lane threads would outlive a failed start
            raise
        self._runner = BatchRunner(
            self._backend,
            self._predictor,
            self._policy,
            self._registry,
            self._timeline,
            self._lanes,
            self._clock,
            self._wake,
            learn_gap=self._learn_gap,
            hang_factor=self._hang_factor,
            hang_after=self._hang_after,
        )
        self._started = True
        self._policy.bind(self._view)
        self._task = loop.create_task(dispatch_loop(self), name="aiosched-dispatcher")

    async def aclose(self, *, drain: bool | None = None, timeout: float | None = None) -> None:
        """Stop accepting requests, finish or fail the queued ones, and release the backend.

        Returns only when every request is resolved and the dispatcher and
        the backend's lanes are gone (a lane stuck in a hung batch is not
        waited for: its thread ends with that batch, or with the process).
        With ``timeout`` (seconds), whatever is still queued or running then
        fails with :class:`SchedulerClosed` and the lanes are let go without
        waiting. Safe to call more than once, and safe to cancel: the shutdown
        goes on in its own task, and a later call waits for it.
        """
        self._check_loop()
        if self._close_task is None:
            self._closing = True
            self._drain = self._drain if drain is None else bool(drain)
            self._close_task = asyncio.get_running_loop().create_task(
                self._shutdown(self._drain),
                name="aiosched-close",
            )
        if timeout is None:
            await asyncio.shield(self._close_task)
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._close_task), timeout)
        except TimeoutError:
            self._abandon(SchedulerClosed(f"scheduler closed: gave up after {timeout:g} s"))
            await asyncio.shield(self._close_task)

    async def _shutdown(self, drain: bool) -> None:
        try:
            if not drain:
                self._fail_queued(SchedulerClosed("scheduler closed before it ran"))
            self._registry.cancel_warmups()
            if self._task is not None:
                self._wake()
                await asyncio.wait({self._task})  # ends cancelled under aclose(timeout=)
            if self._started:
                for lane, stuck in enumerate(self._lanes.stuck):
                    if stuck is not None:
                        self._backend.abandon_lane(lane)
                await self._backend.aclose()
        finally:
            self._closed = True
            self._fail_queued(SchedulerClosed("scheduler closed"))
            self._registry.depart_all(self._forget_model)
            self._registry.release()

    def _abandon(self, error: AioschedError) -> None:
        """Give up on everything at once: fail what is queued and in flight, stop the
        dispatcher, let the lanes go without waiting for them."""
        self._closing = True
        self._fail_queued(error)
        if self._runner is not None:
            self._runner.abandon_all(error)
        if self._task is not None:
            self._task.cancel()
        if self._started:
            self._backend.close_nowait()
            for lane in range(self._backend.lanes):
                self._backend.abandon_lane(lane)

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_started", False) and not self._closed:
            # As asyncio warns of an unclosed transport: the lane threads would be left.
            _warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
            self._backend.close_nowait()

    def _check_loop(self) -> None:
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise WrongEventLoop(
                "this Scheduler runs on the event loop it was started on; start one per loop"
            )

    # -- registration -----------------------------------------------------

    def register(
        self,
        name: str,
        model: Any = None,
        *,
        max_batch_size: int = 8,
        input_shape: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        deadline: float | None = None,
        max_queue: int = 100_000,
        warmup: bool = True,
    ) -> ModelSpec:
        """Add a model. ``deadline`` is its default budget (seconds) for calls that give none.

        Unless ``warmup=False``, a short warm-up (each power-of-two batch size
        up to ``max_batch_size``) runs before its requests are served, to seed
        the predictor; ``await ready()`` waits for it.
        """
        if self._closing:
            raise SchedulerClosed("cannot register on a closing scheduler")
        # The spec checks every setting (the name first) before the name is used as a key.
        spec = ModelSpec(
            name=name,
            model=model,
            max_batch_size=max_batch_size,
            input_shape=as_shape(name, input_shape),
            dtype=dtype,
            default_deadline=deadline,
            max_queue=max_queue,
            warmup=warmup,
        )
        self._registry.check_free(name)
        if self._started:
            self._backend.load(spec)
        entry = Registered(spec, ModelQueue(spec, self._policy.order))
        entry.checks_input = spec.checks_tensors
        warms = warmup and self._backend.sample_input(spec) is not None
        self._registry.add(entry, self._warmup_repeats if warms else 0)
        self._wake()
        return spec

    async def unregister(self, name: str, *, drain: bool = True) -> ModelSnapshot:
        """Remove a model, and return its final counters.

        From the call on, ``infer(name, ...)`` raises :class:`UnknownModel` and
        registering ``name`` again raises :class:`InvalidConfig`. With
        ``drain=True`` what is queued for the model is served as usual (in the
        policy's order, deadlines and early rejection as ever); with
        ``drain=False`` it fails at once with :class:`~aiosched.errors.ModelUnregistered`.
        Batches already running finish either way, and a warm-up stops after
        the run in flight. Once nothing of the model is queued or running, the
        backend unloads it (its module is no longer referenced), the predictor
        and the policy forget it, it leaves :attr:`models` and ``snapshot()``,
        and this returns its counters as they ended (a total to keep: ``submitted``
        = completed + rejected + failed + cancelled). The name is free again then.

        Like :meth:`aclose`, the work goes on whoever waits: cancelling the
        call does not stop it, and a second call for the same model waits for
        the same end (``drain=False`` still fails what is queued). If the
        scheduler closes meanwhile, the model leaves with the close (every
        request resolves as the close says). On a closing or closed scheduler
        it raises :class:`SchedulerClosed`; before ``start()`` it only removes
        the registration.
        """
        self._check_loop()
        if self._closing:
            raise SchedulerClosed("cannot unregister on a closing scheduler")
        entry = self._models.get(name) if type(name) is str else None
        if entry is None:
            raise UnknownModel(self._registry.unknown(name))
        if not self._started:
            self._registry.depart(entry, _nothing_to_forget)
            return entry.final()
        future = entry.leaving if entry.leaving is not None else self._create_future()
        self._registry.leave(entry, bool(drain), future)
        self._wake()
        return await asyncio.shield(future)

    def _forget_model(self, name: str) -> None:
        """Let the backend, the predictor and the policy drop a model that has left."""
        for forget in (self._backend.unload, self._predictor.forget, self._policy.forget):
            try:
                forget(name)
            except Exception:  # its requests are all resolved: the rest must go on
                log.exception("aiosched: %r failed to let %s go", forget, name)

    async def ready(self) -> None:
        """Wait until every registered model has finished its warm-up."""
        if not self._started:
            raise SchedulerClosed("scheduler is not started: use `async with Scheduler(...)`")
        self._check_loop()
        if not self._closed:
            await self._registry.wait()

    # -- the request path -------------------------------------------------

    def now(self) -> float:
        """The scheduler's clock, for absolute deadlines (``deadline_at``)."""
        if self._clock is None:
            raise SchedulerClosed("scheduler is not started: use `async with Scheduler(...)`")
        return self._clock.now()

    async def infer(
        self,
        model: str,
        x: Any,
        deadline: float | None = None,
        *,
        deadline_at: float | None = None,
    ) -> Any:
        """Run one sample ``x`` (no batch dimension) and return that sample's output.

        ``deadline`` is a budget in seconds from now; ``deadline_at`` an absolute
        time on :meth:`now`'s clock; with neither, the model's default applies
        (or none: the request is served last, never rejected as late).
        """
        if self._closing or not self._started:
            raise SchedulerClosed(
                "scheduler is closed" if self._closing else "scheduler is not started"
            )
        if asyncio.get_running_loop() is not self._loop:
            self._check_loop()
        entry = self._models.get(model) if type(model) is str else None
        if entry is None or entry.leaving is not None:
            raise UnknownModel(self._registry.unknown(model))
        spec = entry.spec
        if entry.checks_input:
            spec.check(x)
        now = self._clock_now()
        if deadline_at is None and type(deadline) is float and 0.0 < deadline < math.inf:
            due = now + deadline  # the common case, without the general checks
        else:
            due = absolute_deadline(spec, now, deadline, deadline_at)
        counters = entry.counters
        counters.submitted += 1
        queue = entry.queue
        if queue._live >= spec.max_queue:
            counters.rejected += 1
            raise Overloaded(f"{model}: queue is full ({spec.max_queue} requests)")
        if due <= now:
            counters.rejected += 1
            raise DeadlineExceeded(f"{model}: deadline already passed")
        refusal = self._admit(queue, due, now)
        if refusal is not None:
            counters.rejected += 1
            raise refusal
        future: asyncio.Future[Any] = self._create_future()
        request = Request(model, x, due, now, future, counters)
        queue.push(request)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        try:
            return await future
        except asyncio.CancelledError:
            settle.cancelled(request, queue)
            if entry.leaving is not None:
                self._wake()  # its last request may have gone: the model can leave now
            raise

    def _fail_queued(self, error: AioschedError) -> None:
        self._registry.fail_queued(error, reject=isinstance(error, SchedulerClosed))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- introspection ----------------------------------------------------

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    @property
    def clock(self) -> Clock:
        """The clock every timestamp of this scheduler comes from (set when it starts)."""
        if self._clock is None:
            raise SchedulerClosed("scheduler is not started: use `async with Scheduler(...)`")
        return self._clock

    @property
    def timeline(self) -> Timeline:
        return self._timeline

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        return tuple(m.spec for m in self._registry)

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot(self) -> SchedulerSnapshot:
        """An immutable copy of the statistics, cheap enough to take several times a second."""
        return scheduler_snapshot(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return (
            f"<Scheduler {state} backend={self._backend.name} lanes={self._backend.lanes} "
            f"policy={self._policy.name} predictor={self._predictor.name}>"
        )


def _nothing_to_forget(name: str) -> None:
    pass  # before start: nothing was loaded, learnt or seen


def _not_started() -> Any:
    raise SchedulerClosed("scheduler is not started: use `async with Scheduler(...)`")
