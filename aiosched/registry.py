"""The registered models: each with its spec, queue, counters and warm-up plan.

A model is *cold* until its warm-up has run: a few batches of each
power-of-two size (after one cold run that teaches nothing: allocations,
lazy initialisation), so that the predictor has seen the model before any
caller's deadline depends on it. Its queue joins the ready index only once it
is warm. :meth:`Registry.wait` is what ``Scheduler.ready()`` awaits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import settle
from .errors import AioschedError, InvalidConfig
from .queue import ModelQueue
from .ready import ReadyQueues
from .spec import ModelSpec
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
    checks_input: bool = False  # precomputed for the request path

    @property
    def warm(self) -> bool:
        return not self.warmup_plan and not self.warming


class Registry:
    """The models by name; which are cold; the ready index of the warm ones' queues."""

    __slots__ = ("_waiters", "cold", "models", "ready")

    def __init__(self) -> None:
        self.models: dict[str, Registered] = {}
        self.cold: dict[str, Registered] = {}
        self.ready = ReadyQueues()
        self._waiters: list[asyncio.Future[None]] = []

    def __iter__(self) -> Iterator[Registered]:
        return iter(self.models.values())

    def add(self, entry: Registered, warmup_repeats: int) -> None:
        """Register ``entry``, planning ``warmup_repeats`` runs of each power-of-two size."""
        name = entry.spec.name
        if name in self.models:
            raise InvalidConfig(f"model {name!r} is already registered")
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
