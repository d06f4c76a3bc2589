"""The Scheduler: per-model EDF queues, one dispatcher task, a backend's lanes.

A request's life: ``infer()`` validates it (typed error at once, nothing
enqueued), asks the predictor whether it could meet its deadline at all
(early rejection), and queues it. The dispatcher task sleeps until something
changes (a new request, a finished execution, or a time the policy planned),
then lets the policy dispatch batches to free lanes. When a batch finishes,
its outputs go to the waiting futures, the timeline records the execution
with its overlaps, and the predictor learns from it.

Every request resolves exactly once: with its output, or with one of the
errors in :mod:`aiosched.errors`; the per-model counters account for each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Self

import torch

from .backends import make_backend
from .backends.base import Backend, Completion, LaneFailure
from .clock import Clock
from .errors import (
    AioschedError,
    DeadlineExceeded,
    InvalidConfig,
    InvalidInput,
    LaneFailed,
    ModelError,
    Overloaded,
    SchedulerClosed,
    UnknownModel,
)
from .policy import Policy, make_policy
from .predict import Predictor, Profile, make_predictor
from .queue import QUEUED, SETTLED, ModelQueue, Request
from .ready import ReadyQueues
from .spec import ModelSpec, as_shape
from .telemetry.snapshot import LaneSnapshot, LatencySummary, ModelSnapshot, SchedulerSnapshot
from .telemetry.stats import ModelCounters
from .timeline import Running, Timeline

__all__ = ["DEFAULT_PREDICTOR", "Scheduler"]

#: Deadline-safe sizing: the overlap-aware predictor at its 90th percentile.
DEFAULT_PREDICTOR = "overlap:quantile=0.9"

log = logging.getLogger("aiosched")

# The smallest timer the dispatcher sets: a planned time that has (numerically) just
# passed must still move a virtual clock forward rather than spin.
_MIN_TIMER_S = 1e-6


@dataclass(eq=False)
class _Model:
    spec: ModelSpec
    queue: ModelQueue
    counters: ModelCounters = field(default_factory=ModelCounters)
    warmup_plan: deque[int] = field(default_factory=deque)
    warming: bool = False  # a warm-up run is in flight
    unlearnt: float = 0.0  # device seconds run since the predictor last learnt from it

    # Precomputed for the request path.
    checks_input: bool = False

    @property
    def warm(self) -> bool:
        return not self.warmup_plan and not self.warming


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
    (``0``: every execution).
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
        profile: Profile | str | os.PathLike[str] | None = None,
    ) -> None:
        self._backend = make_backend(backend, lanes)
        if clock is not None and self._backend.owns_clock:
            raise InvalidConfig(
                f"the {self._backend.name} backend keeps its own clock; do not pass clock="
            )
        self._policy = make_policy(policy)
        self._admit = self._policy.admit
        self._predictor = make_predictor(predictor)
        self._predictor.attach(self._backend)
        w = warmup_repeats
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise InvalidConfig(f"warmup_repeats must be an int >= 0, got {w!r}")
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
        if not (learn_gap >= 0 and math.isfinite(learn_gap)):
            raise InvalidConfig("learn_gap must be seconds >= 0")
        self._learn_gap = float(learn_gap)
        self._models: dict[str, _Model] = {}
        # The queues of warm models, most urgent head first; and the models still warming
        # up. Neither is ever scanned in full per step: 1000 models must cost no more.
        self._ready = ReadyQueues()
        self._cold: dict[str, _Model] = {}
        self._timeline = Timeline(keep=keep_executions)
        n = self._backend.lanes
        self._lane_running: list[Running | None] = [None] * n
        self._lane_alive = [True] * n
        self._lane_count = [0] * n
        self._max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._now = 0.0
        self._started = False
        self._closing = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._ready_waiters: list[asyncio.Future[None]] = []
        self._view = _View(self)
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
        if self._started:
            raise InvalidConfig("a Scheduler can be started once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._clock = self._clock_override or self._backend.default_clock(loop)
        self._clock_now = self._clock.now
        self._create_future = loop.create_future
        await self._backend.start(self._clock)
        try:
            for model in self._models.values():
                self._backend.load(model.spec)
        except BaseException:
            await self._backend.aclose()  # or its lane threads would outlive a failed start
            raise
        self._started = True
        self._policy.bind(self._view)
        self._task = loop.create_task(self._dispatch_loop(), name="aiosched-dispatcher")

    async def aclose(self, *, drain: bool | None = None) -> None:
        """Stop accepting requests, finish or fail the queued ones, and release the backend.

        Returns only when every request is resolved and the dispatcher and
        the backend's lanes are gone. Safe to call more than once, and safe to
        cancel: the shutdown goes on in its own task, and a later call waits
        for it.
        """
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(
                self._shutdown(self._drain if drain is None else drain),
                name="aiosched-close",
            )
        await asyncio.shield(self._close_task)

    async def _shutdown(self, drain: bool) -> None:
        try:
            if not drain:
                for model in self._models.values():
                    for request in model.queue.pop_all():
                        self._reject(request, SchedulerClosed("scheduler closed before it ran"))
            self._cancel_warmups()
            if self._task is not None:
                self._wake()
                await self._task
            if self._started:
                await self._backend.aclose()
        finally:
            self._closed = True
            self._fail_queued(SchedulerClosed("scheduler closed"))
            self._release_ready_waiters()

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
        if name in self._models:
            raise InvalidConfig(f"model {name!r} is already registered")
        if self._started:
            self._backend.load(spec)
        entry = _Model(spec, ModelQueue(spec, self._policy.order))
        if warmup and self._warmup_repeats and self._backend.sample_input(spec) is not None:
            sizes = sorted({*(1 << i for i in range(max_batch_size.bit_length())), max_batch_size})
            sizes = [b for b in sizes if b <= max_batch_size]
            # The first run of a model is cold (allocations, lazy init): run it, learn nothing.
            entry.warmup_plan.extend([0, *[b for b in sizes for _ in range(self._warmup_repeats)]])
        entry.checks_input = spec.checks_tensors
        self._models[name] = entry
        if entry.warm:
            self._ready.attach(entry.queue)
        else:
            self._cold[name] = entry
        self._wake()
        return spec

    async def ready(self) -> None:
        """Wait until every registered model has finished its warm-up."""
        if not self._cold or self._closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._ready_waiters.append(waiter)
        await waiter

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
        entry = self._models.get(model)
        if entry is None:
            raise UnknownModel(f"unknown model {model!r}; registered: {sorted(self._models)}")
        spec = entry.spec
        if entry.checks_input:
            spec.check(x)
        now = self._clock_now()
        if deadline_at is None and type(deadline) is float and 0.0 < deadline < math.inf:
            due = now + deadline  # the common case, without the general checks
        else:
            due = self._deadline(spec, now, deadline, deadline_at)
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
            if request.state != SETTLED:
                if request.state == QUEUED:
                    queue.discard(request)
                request.state = SETTLED
                counters.cancelled += 1
            raise

    @staticmethod
    def _deadline(
        spec: ModelSpec, now: float, budget: float | None, absolute: float | None
    ) -> float:
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

    # -- resolving requests -----------------------------------------------

    def _reject(self, request: Request, error: AioschedError) -> None:
        if request.state == SETTLED:
            return
        request.state = SETTLED
        request.counters.rejected += 1
        if not request.future.done():
            request.future.set_exception(error)

    def _fail(self, request: Request, error: AioschedError) -> None:
        if request.state == SETTLED:
            return
        request.state = SETTLED
        request.counters.failed += 1
        if not request.future.done():
            request.future.set_exception(error)

    def _fail_queued(self, error: AioschedError) -> None:
        for model in self._models.values():
            for request in model.queue.pop_all():
                if isinstance(error, SchedulerClosed):
                    self._reject(request, error)
                else:
                    self._fail(request, error)

    # -- the dispatcher ---------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._clock is not None
        clock = self._clock
        while True:
            try:
                wake_at = self._step()
            except Exception as exc:
                # A broken policy or predictor must not strand callers: fail what is queued.
                log.exception("aiosched dispatcher failed")
                self._closing = True
                error = AioschedError(f"dispatcher failed: {exc!r}")
                error.__cause__ = exc
                self._fail_queued(error)
                if not self._timeline.in_flight:
                    return
                wake_at = None
            if self._closing and self._idle():
                return
            waiter = self._waiter = loop.create_future()
            timer = None
            if wake_at is not None:
                delay = max(wake_at - clock.now(), _MIN_TIMER_S)
                timer = loop.call_later(delay, _release, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()

    def _idle(self) -> bool:
        if self._timeline.in_flight:
            return False
        if not any(self._lane_alive):
            return True
        if any(m.warmup_plan for m in self._cold.values()):
            return False
        return self._ready.empty()

    def _step(self) -> float | None:
        assert self._clock is not None
        self._now = self._clock.now()
        if not any(self._lane_alive):
            self._fail_queued(LaneFailed("every lane of the backend has failed"))
            self._cancel_warmups()  # nothing can warm up: let ready() return
            self._release_ready_waiters()
            return None
        self._start_warmups()
        return self._policy.step(self._view)

    def _start_warmups(self) -> None:
        for model in self._cold.values():
            if model.warming or not model.warmup_plan:
                continue
            lanes = self.free_lanes()
            if not lanes:
                return
            size = model.warmup_plan.popleft()
            x = self._backend.sample_input(model.spec)
            self._submit(model, [x] * max(1, size), lanes[0], (), warmup=size > 0)
            model.warming = True

    # -- what the policy sees and does (through _View) --------------------

    def _cancel_warmups(self) -> None:
        for model in list(self._cold.values()):
            model.warmup_plan.clear()
            self._warmed(model)

    def _warmed(self, model: _Model) -> None:
        """Serve the model's queue once its warm-up is over (run, or cancelled)."""
        if model.warm and self._cold.pop(model.spec.name, None) is not None:
            self._ready.attach(model.queue)

    def free_lanes(self) -> list[int]:
        """Lanes that are alive and idle."""
        return [
            i
            for i, (busy, alive) in enumerate(
                zip(self._lane_running, self._lane_alive, strict=True)
            )
            if busy is None and alive
        ]

    def _dispatch(
        self, queue: ModelQueue, n: int, lane: int, predicted: float, skip: int = 0
    ) -> int:
        if self._lane_running[lane] is not None or not self._lane_alive[lane]:
            raise RuntimeError(f"policy dispatched to lane {lane}, which is not free")
        batch = queue.pop_batch_after(skip, max(1, n))
        if not batch:
            return 0
        if len(batch) != n:
            predicted = math.nan  # an isolated request cut the batch short: predict its size
        try:
            self._submit(self._models[queue.name], batch, lane, tuple(batch), predicted=predicted)
        except BaseException:
            # Nothing ran: put the batch back so that the failure path can resolve it.
            for request in batch:
                if request.state != SETTLED:
                    queue.push(request)
            raise
        return len(batch)

    def _reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        self._reject(queue.pop(), error)

    # -- running batches --------------------------------------------------

    def _submit(
        self,
        model: _Model,
        inputs: list[Any],
        lane: int,
        requests: tuple[Request, ...],
        *,
        predicted: float = math.nan,
        warmup: bool = False,
    ) -> None:
        name = model.spec.name
        size = len(inputs)
        at_dispatch = self._timeline.in_flight
        if requests:
            inputs = [r.x for r in requests]
        if not math.isfinite(predicted) or len(inputs) != size:
            predicted = self._predictor.predict(name, size, at_dispatch, self._now)
        deadline = min([r.deadline for r in requests], default=math.inf)
        running = self._timeline.begin(name, size, lane, self._now, predicted, deadline)
        self._lane_running[lane] = running
        if len(at_dispatch) >= self._max_in_flight:
            self._max_in_flight = len(at_dispatch) + 1

        def on_done(completion: Completion) -> None:
            self._finish(model, running, at_dispatch, requests, completion, warmup)

        try:
            self._backend.submit(lane, model.spec, inputs, on_done)
        except BaseException:
            self._timeline.abandon(running)
            self._lane_running[lane] = None
            raise

    def _finish(
        self,
        model: _Model,
        running: Running,
        at_dispatch: tuple[Running, ...],
        requests: tuple[Request, ...],
        completion: Completion,
        warmup: bool,
    ) -> None:
        assert self._clock is not None
        lane = running.lane
        self._lane_running[lane] = None
        self._lane_count[lane] += 1
        error = completion.error
        execution = self._timeline.finish(
            running,
            completion.start,
            completion.end,
            at_dispatch=at_dispatch,
            ok=error is None,
            warmup=warmup or not requests,
        )
        if not requests:
            model.warming = False
            if isinstance(error, LaneFailure):
                self._lane_alive[lane] = False
            if model.warm:
                self._warmed(model)
                self._release_ready_waiters()
        elif isinstance(error, LaneFailure):
            log.error("aiosched lane %d failed: %s; its batch is requeued", lane, error)
            self._lane_alive[lane] = False
            for request in requests:
                if request.state != SETTLED:
                    model.queue.push(request)
        elif error is not None:
            self._resolve_failed_batch(model, requests, error)
        else:
            self._resolve_outputs(model, requests, completion.outputs)
        if requests:
            model.counters.batch_sizes[len(requests)] += 1
        if error is None and (requests or warmup):
            # A lesson costs tens of microseconds: from executions shorter than that, learning
            # from each would cost more than running them, and tell no more than a sample.
            model.unlearnt += execution.latency
            if model.unlearnt >= self._learn_gap or warmup:
                model.unlearnt = 0.0
                try:
                    self._predictor.learn(execution)
                except Exception:
                    log.exception("aiosched predictor %s failed to learn", self._predictor.name)
        if error is None:
            try:
                self._policy.finished(execution)
            except Exception:
                log.exception("aiosched policy %s failed on a finished batch", self._policy.name)
        self._wake()

    def _resolve_outputs(
        self, model: _Model, requests: tuple[Request, ...], outputs: Sequence[Any] | None
    ) -> None:
        assert self._clock is not None
        if outputs is None or len(outputs) != len(requests):
            got = "no outputs" if outputs is None else f"{len(outputs)} outputs"
            self._resolve_failed_batch(
                model, requests, RuntimeError(f"model returned {got} for {len(requests)} inputs")
            )
            return
        done_at = self._clock.now()
        latencies: list[float] = []
        met = 0
        for request, output in zip(requests, outputs, strict=True):
            if request.state == SETTLED:
                continue
            request.state = SETTLED
            latencies.append(done_at - request.arrival)
            if done_at <= request.deadline:
                met += 1
            future = request.future
            # A cancelled caller's future is done before its task marks the request settled.
            if not future.done():
                future.set_result(output)
        counters = model.counters
        counters.completed += len(latencies)
        counters.met_deadline += met
        counters.missed_deadline += len(latencies) - met
        counters.latency.record_many(latencies)

    def _resolve_failed_batch(
        self, model: _Model, requests: tuple[Request, ...], error: BaseException
    ) -> None:
        live = [r for r in requests if r.state != SETTLED]
        if len(requests) > 1:
            # Which input broke it is unknown (even if only one caller is still waiting):
            # rerun each alone, so only the bad one fails.
            for request in live:
                request.isolate = True
                model.queue.push(request)
            return
        for request in live:
            failure = ModelError(f"{model.spec.name}: model raised {type(error).__name__}: {error}")
            failure.__cause__ = error
            self._fail(request, failure)

    def _release_ready_waiters(self) -> None:
        if self._closed or not self._cold:
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                if not waiter.done():
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
        return tuple(m.spec for m in self._models.values())

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot(self) -> SchedulerSnapshot:
        """An immutable copy of the statistics, cheap enough to take several times a second."""
        now = self._clock.now() if self._clock is not None else 0.0
        in_flight = self._timeline.in_flight
        models = {}
        for name, m in self._models.items():
            c = m.counters
            h = c.latency
            latency = (
                LatencySummary(
                    count=h.count,
                    mean=h.total / h.count,
                    p50=h.percentile(50),
                    p90=h.percentile(90),
                    p99=h.percentile(99),
                    p999=h.percentile(99.9),
                    max=h.max,
                )
                if h.count
                else LatencySummary()
            )
            models[name] = ModelSnapshot(
                name=name,
                submitted=c.submitted,
                completed=c.completed,
                met_deadline=c.met_deadline,
                missed_deadline=c.missed_deadline,
                rejected=c.rejected,
                failed=c.failed,
                cancelled=c.cancelled,
                queue_depth=len(m.queue),
                in_flight=sum(1 for r in in_flight if r.model == name),
                latency=latency,
                batch_sizes=MappingProxyType(dict(sorted(c.batch_sizes.items()))),
                warm=m.warm,
            )
        lanes = tuple(
            LaneSnapshot(
                lane=i,
                busy=r is not None,
                alive=self._lane_alive[i],
                model=r.model if r is not None else None,
                batch_size=r.batch_size if r is not None else 0,
                executions=self._lane_count[i],
            )
            for i, r in enumerate(self._lane_running)
        )
        err = self._predictor.error()
        return SchedulerSnapshot(
            time=now,
            backend=self._backend.name,
            policy=self._policy.name,
            predictor=self._predictor.name,
            closed=self._closed,
            models=MappingProxyType(models),
            lanes=lanes,
            executions=sum(self._lane_count),
            max_concurrency=self._max_in_flight,
            predictor_mape=err.mape,
            predictor_p95_ape=err.p95_ape,
            extra=MappingProxyType({"device": dict(self._backend.telemetry())}),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return (
            f"<Scheduler {state} backend={self._backend.name} lanes={self._backend.lanes} "
            f"policy={self._policy.name} predictor={self._predictor.name}>"
        )


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _View:
    """The :class:`~aiosched.policy.DispatchView` a policy gets: the scheduler at this step."""

    __slots__ = ("_s",)

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler

    @property
    def now(self) -> float:
        return self._s._now

    @property
    def queues(self) -> list[ModelQueue]:
        return self._s._ready.queues()

    def ordered(self) -> Iterator[tuple[float, ModelQueue]]:
        ready = self._s._ready
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
        return self._s.free_lanes()

    def dispatch(
        self, queue: ModelQueue, n: int, lane: int, predicted: float, skip: int = 0
    ) -> int:
        return self._s._dispatch(queue, n, lane, predicted, skip)

    def reject_head(self, queue: ModelQueue, error: AioschedError) -> None:
        self._s._reject_head(queue, error)


def _not_started() -> Any:
    raise SchedulerClosed("scheduler is not started: use `async with Scheduler(...)`")
