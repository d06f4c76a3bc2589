"""The registered models: each with its spec, queue, counters and warm-up plan.

A model is *cold* until its warm-up has run: a few batches of each
power-of-two size (after one cold run that teaches nothing: allocations,
lazy initialisation), so that the predictor has seen the model before any
caller's deadline depends on it. Its queue joins the ready index only once it
is warm. :meth:`Registry.wait` is what ``Scheduler.ready()`` awaits.

A model *leaves* (``Scheduler.unregister``) in two steps. :meth:`Registry.leave`
marks it: from then on it takes no new requests, its warm-up plan is dropped
(a warm-up run in flight finishes), and without draining its queue is failed
with :class:`~aiosched.errors.ModelUnregistered`. It stays in :attr:`models`
so that what is queued and running finishes as usual; after each step the
dispatcher calls :meth:`Registry.depart_idle`, which takes out each leaving
model with nothing of it queued or running, lets the backend, predictor and
policy forget it, and hands its final counters to whoever awaits them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import settle
from .errors import AioschedError, InvalidConfig, ModelUnregistered, SchedulerClosed
from .queue import ModelQueue
from .ready import ReadyQueues
from .spec import ModelSpec
from .telemetry.snapshot import ModelSnapshot, model_snapshot
from .telemetry.stats import ModelCounters

if TYPE_CHECKING:
    from .backends.base import Backend
    from .lanes import Lanes
    from .runner import BatchRunner

__all__ = ["Registered", "Registry"]


@dataclass(eq=False)
class Registered:
    """One registered model."""

    spec: ModelSpec
    queue: ModelQueue
    counters: ModelCounters = field(default_factory=ModelCounters)
    warmup_plan: deque[int] = field(default_factory=deque)
    warming: bool = False  # a warm-up run is in flight
    unlearnt: float = 0.0  # device seconds run since the predictor last learnt from it
    learnt: bool = False  # the predictor has learnt from one of its runs (the watchdog asks)
    checks_input: bool = False  # precomputed for the request path
    # Set by Registry.leave: resolves with the final counters once the model has left.
    leaving: asyncio.Future[ModelSnapshot] | None = None
    drain: bool = True  # while leaving: serve what is queued (else fail it)

    @property
    def warm(self) -> bool:
        return not self.warmup_plan and not self.warming

    def final(self) -> ModelSnapshot:
        """Its counters, with nothing queued or in flight: what ``unregister`` returns."""
        return model_snapshot(self.spec.name, self.counters, 0, 0, self.warm)


class Registry:
    """The models by name; which are cold; the ready index of the warm ones' queues."""

    __slots__ = ("_waiters", "cold", "departed", "leaving", "models", "ready")

    def __init__(self) -> None:
        self.models: dict[str, Registered] = {}
        self.cold: dict[str, Registered] = {}
        self.leaving: dict[str, Registered] = {}
        self.departed: set[str] = set()  # names unregistered since (for error messages)
        self.ready = ReadyQueues()
        self._waiters: list[asyncio.Future[None]] = []

    def __iter__(self) -> Iterator[Registered]:
        return iter(self.models.values())

    def add(self, entry: Registered, warmup_repeats: int) -> None:
        """Register ``entry``, planning ``warmup_repeats`` runs of each power-of-two size."""
        name = entry.spec.name
        self.check_free(name)
        self.departed.discard(name)
        if warmup_repeats:
            top = entry.spec.max_batch_size
            sizes = sorted({*(1 << i for i in range(top.bit_length())), top})
            sizes = [b for b in sizes if b <= top]
            entry.warmup_plan.extend([0, *[b for b in sizes for _ in range(warmup_repeats)]])
        self.models[name] = entry
        if entry.warm:
            self.ready.attach(entry.queue)
        else:
            self.cold[name] = entry

    def check_free(self, name: str) -> None:
        """Raise :class:`InvalidConfig` unless ``name`` may be registered now."""
        if name in self.leaving:
            raise InvalidConfig(
                f"model {name!r} is being unregistered; "
                "await unregister() before registering the name again"
            )
        if name in self.models:
            raise InvalidConfig(f"model {name!r} is already registered")

    def unknown(self, name: object) -> str:
        """Why ``name`` names no model that takes requests (an ``UnknownModel``'s message)."""
        if isinstance(name, str) and name in self.leaving:
            return f"model {name!r} is being unregistered"
        if isinstance(name, str) and name in self.departed:
            return f"model {name!r} was unregistered"
        return f"unknown model {name!r}; registered: {sorted(self.models.keys() - self.leaving)}"

    def leave(self, entry: Registered, drain: bool, future: asyncio.Future[ModelSnapshot]) -> None:
        """Start the unregistration of ``entry`` (see the module doc). For a model already
        leaving, ``drain=False`` still fails what is queued; ``drain=True`` changes nothing."""
        if entry.leaving is None:
            entry.leaving = future
            entry.drain = drain
            self.leaving[entry.spec.name] = entry
            entry.warmup_plan.clear()
            self.warmed(entry)  # what waited for the warm-up is served (or failed below)
        elif not drain:
            entry.drain = False
        if not entry.drain:
            self._fail_leaving(entry)

    def fail_undrained(self) -> None:
        """Fail what is queued for the models leaving without draining: the dispatcher
        calls it before the policy dispatches, so that a request put back after its batch
        failed is not run again."""
        for entry in self.leaving.values():
            if not entry.drain:
                self._fail_leaving(entry)

    def depart_idle(self, busy: Collection[str], forget: Callable[[str], None]) -> None:
        """Take out the leaving models with nothing queued, warming up or ``busy`` (running);
        ``forget(name)`` lets the rest of the scheduler drop each."""
        for name, entry in list(self.leaving.items()):
            if not entry.queue and not entry.warming and name not in busy:
                self.depart(entry, forget)

    def depart_all(self, forget: Callable[[str], None]) -> None:
        """Take out every leaving model now (the scheduler is closing); what is still
        queued for one fails with :class:`~aiosched.errors.SchedulerClosed`."""
        for entry in list(self.leaving.values()):
            for request in entry.queue.pop_all():
                settle.reject(request, SchedulerClosed("scheduler closed"))
            self.depart(entry, forget)

    def depart(self, entry: Registered, forget: Callable[[str], None]) -> None:
        """Remove ``entry`` for good and resolve its unregistration, if one awaits it."""
        name = entry.spec.name
        del self.models[name]
        self.leaving.pop(name, None)
        self.departed.add(name)
        # Out of the ready index, entries and all: a stale entry would keep the queue, so
        # the spec and its model, alive until it surfaced.
        entry.queue._ready = None
        self.ready._forget(entry.queue)
        self.ready._compact()
        if self.cold.pop(name, None) is not None and not self.cold:
            self.release()
        forget(name)
        future = entry.leaving
        if future is not None and not future.done():
            future.set_result(entry.final())

    def _fail_leaving(self, entry: Registered) -> None:
        error = ModelUnregistered(
            f"{entry.spec.name}: model unregistered without draining "
            "(not run, or not run again after its batch failed)"
        )
        for request in entry.queue.pop_all():
            settle.reject(request, error)

    def fail_queued(self, error: AioschedError, *, reject: bool) -> None:
        """Settle every queued request with ``error`` (counted as rejected: it never ran)."""
        for entry in self.models.values():
            for request in entry.queue.pop_all():
                (settle.reject if reject else settle.fail)(request, error)

    def warming_up(self) -> Iterator[Registered]:
        """Cold models with a warm-up run due and none in flight."""
        for entry in self.cold.values():
            if entry.warmup_plan and not entry.warming:
                yield entry

    def start_warmups(
        self, lanes: Lanes, backend: Backend, runner: BatchRunner, now: float
    ) -> None:
        """Send the next warm-up batch of each model warming up, while lanes are free."""
        for entry in list(self.warming_up()):
            free = lanes.free()
            if not free:
                return
            size = entry.warmup_plan.popleft()
            x = backend.sample_input(entry.spec)
            runner.submit(entry, [x] * max(1, size), free[0], (), warmup=size > 0, now=now)
            entry.warming = True

    def warmup_pending(self) -> bool:
        return any(entry.warmup_plan for entry in self.cold.values())

    def warmed(self, entry: Registered) -> None:
        """Serve ``entry``'s queue once its warm-up is over (run, or cancelled)."""
        if entry.warm and self.cold.pop(entry.spec.name, None) is not None:
            self.ready.attach(entry.queue)
        if not self.cold:
            self.release()

    def cancel_warmups(self) -> None:
        """Nothing more will warm up (closing, or no lane left): serve as they are."""
        for entry in list(self.cold.values()):
            entry.warmup_plan.clear()
            self.warmed(entry)

    async def wait(self) -> None:
        """Until no model is cold (or :meth:`release` is called)."""
        if not self.cold:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def release(self) -> None:
        """Let every :meth:`wait` return."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
