"""A fleet's replicas over time: where a model is registered, added, let go and lost.

The :class:`~aiosched.Fleet` routes and rebalances; this part of it changes
where a model is, one device at a time, and keeps every request's outcome
counted while it does:

- **add** (``add_replica``, a rebalance's grow): a device that hosts the
  model already (dormant) is a replica at once; elsewhere the model is
  registered and the device is *pending* until its warm-up has taught its
  predictor the model. An activation adds only the registration it waited
  for: if the model was let go there meanwhile, a later one takes over.
- **remove** (``remove_replica``, a shrink): the device gets no new request
  and drains what it holds; it stays registered (dormant) until
  ``release_after`` unregisters it there (:meth:`Scheduler.unregister
  <aiosched.Scheduler.unregister>`, which drains first). A grow onto a host
  being released waits for the release, then registers afresh.
- **lose** (every lane of a device failed): routing skips the device, and a
  model left without a replica is placed on a live device at once.
- **unregister**: every device lets the model go, side by side.

Each host's counters are read live (:attr:`Placement.counters
<aiosched.fleet.routing.Placement.counters>`) and folded into the model's
``retired`` counts when it leaves, so the totals are exact at any instant.
The state is the fleet's: :class:`Replicas` only holds the methods, and
:class:`~aiosched.Fleet` inherits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..errors import InvalidConfig, SchedulerClosed, UnknownModel
from ..scheduler import Scheduler
from ..telemetry.snapshot import ModelSnapshot
from ..telemetry.stats import ModelCounters
from .routing import Placement
from .snapshot import model_totals

__all__ = ["Replicas"]

log = logging.getLogger("aiosched")


class Replicas:
    """The replica lifecycle of a :class:`~aiosched.Fleet` (see the module doc)."""

    _scheds: list[Scheduler]
    _labels: tuple[str, ...]
    _placements: dict[str, Placement]
    _live: list[bool]
    _backlog: list[float]
    _closing: bool
    _started: bool
    _warming: set[asyncio.Task[None]]
    _unregistering: dict[str, tuple[Placement, asyncio.Task[ModelSnapshot]]]
    _release_after: float | None
    _released: int
    _clock_now: Callable[[], float]

    async def unregister(self, name: str, *, drain: bool = True) -> ModelSnapshot:
        """Remove a model from every device, and return its totals.

        From the call on, ``infer(name, ...)`` raises :class:`UnknownModel`.
        Every device that hosts the model unregisters it, side by side, as
        :meth:`Scheduler.unregister <aiosched.Scheduler.unregister>` does (with
        ``drain``, what a device holds is served; without, it fails with
        :class:`~aiosched.errors.ModelUnregistered`). Returns once every device
        has let it go, with the counters of every device it ran on (the
        latency covers the requests whose results had reached their callers).
        Cancelling the call stops the wait, not the devices; a second call
        waits for the same end (with ``drain=False``, it fails what the devices
        still hold). The name can be registered again once every
        device has let it go (before, ``register`` raises
        :class:`InvalidConfig`).
        """
        if self._closing:
            raise SchedulerClosed("cannot unregister on a closing fleet")
        under_way = self._unregistering.get(name) if type(name) is str else None
        if under_way is None:
            placement = self._placement(name)
            del self._placements[name]
            placement.replicas.clear()
            placement.pending.clear()
            task = asyncio.get_running_loop().create_task(self._let_go(placement, drain))
            self._unregistering[name] = placement, task
            task.add_done_callback(lambda _: self._unregistering.pop(name, None))
        else:
            placement, task = under_way
            if not drain:  # as Scheduler.unregister: a second call can cut the drain short
                await asyncio.gather(*(self._cut_short(placement, d) for d in [*placement.hosts]))
        return await asyncio.shield(task)

    async def _let_go(self, placement: Placement, drain: bool) -> ModelSnapshot:
        releases = [asyncio.shield(t) for t in placement.releasing.values()]
        leaving = [d for d in placement.hosts if d not in placement.releasing]
        await asyncio.gather(*releases, *(self._leave(placement, d, drain) for d in leaving))
        devices = tuple(s.snapshot() for s in self._scheds)
        parts = [*placement.counters.values(), placement.retired]
        return model_totals(placement.spec.name, parts, placement.latency, devices, ())

    async def _cut_short(self, placement: Placement, device: int) -> None:
        with contextlib.suppress(SchedulerClosed, UnknownModel):  # closing, or gone already
            await self._scheds[device].unregister(placement.spec.name, drain=False)

    async def _leave(self, placement: Placement, device: int, drain: bool) -> None:
        try:
            await self._scheds[device].unregister(placement.spec.name, drain=drain)
        except SchedulerClosed:
            return  # the device is closing: the close resolves what it holds
        placement.retire(device)

    def _host(self, placement: Placement, device: int) -> bool:
        """Register the model on ``device`` unless it is there; whether it already was."""
        if device in placement.hosts:
            return True
        spec = placement.spec
        self._scheds[device].register(
            spec.name,
            placement.factory(),
            max_batch_size=spec.max_batch_size,
            input_shape=spec.input_shape,
            dtype=spec.dtype,
            deadline=spec.default_deadline,
            max_queue=spec.max_queue,
            warmup=spec.warmup,
        )
        placement.counters[device] = _counters(self._scheds[device], spec.name)
        return False

    def _no_replica(self, placement: Placement) -> str:
        name = placement.spec.name
        if placement.pending:
            where = ", ".join(self._labels[d] for d in sorted(placement.pending))
            return f"{name}: its devices failed; it is being placed again on {where}"
        return f"{name}: every device that could run it has failed"

    def _lost(self, device: int) -> None:
        """Every lane of ``device`` failed: route nothing more there."""
        if not self._live[device]:
            return
        self._live[device] = False
        log.warning("aiosched fleet: device %s lost every lane", self._labels[device])
        now = self._clock_now()
        for placement in self._placements.values():
            placement.remove(device, now)
            if placement.replicas or self._closing:
                continue
            warming = [
                d
                for d in placement.pending
                if d in placement.hosts and d not in placement.releasing
            ]
            if warming:
                placement.add(min(warming))  # at once: its requests wait for the warm-up
            else:
                self._replace(placement)

    def _replace(self, placement: Placement) -> None:
        """Put a model that lost its last replica on the least-loaded live device, at once."""
        live = [d for d in range(len(self._scheds)) if self._live[d]]
        if not live:
            return
        ready = [d for d in live if d not in placement.releasing] or live
        device = min(ready, key=lambda d: (self._backlog[d], d))
        if device in placement.releasing:
            self._grow(placement, device)  # every live one is letting it go: back after that
            return
        self._host(placement, device)
        placement.add(device)  # even cold: its requests wait for the warm-up there
        self._refresh_one(placement, device)

    def add_replica(self, model: str, device: int) -> None:
        """Route ``model`` to ``device`` too (by hand; rebalancing does the same).

        Where the model is not registered yet it is, and it serves there once
        warm (:meth:`ready` waits for it). A no-op where it is a replica already.
        """
        placement = self._placement(model)
        if self._closing:
            raise SchedulerClosed("cannot place a model on a closing fleet")
        self._check_device(device)
        if not self._live[device]:
            raise InvalidConfig(f"device {device} has failed: place the model elsewhere")
        if device not in placement.replicas and device not in placement.pending:
            self._grow(placement, device)

    def remove_replica(self, model: str, device: int) -> None:
        """Route no new request of ``model`` to ``device``; it finishes what it holds.

        The model stays registered there (dormant): adding it back is instant,
        until ``release_after`` lets it go. Removing the last replica raises
        :class:`InvalidConfig`.
        """
        placement = self._placement(model)
        self._check_device(device)
        if device in placement.replicas and len(placement.replicas) == 1:
            raise InvalidConfig(f"{model}: device {device} is its last replica")
        placement.remove(device, self._clock_now() if self._started else 0.0)

    def _check_device(self, device: object) -> None:
        if type(device) is not int or not 0 <= device < len(self._scheds):
            raise InvalidConfig(
                f"device must be an index in [0, {len(self._scheds)}), got {device!r}"
            )

    def _grow(self, placement: Placement, device: int) -> None:
        released = placement.releasing.get(device)
        if released is None and self._host(placement, device):
            placement.add(device)  # registered there before: warm, or warming already
            return
        placement.pending.add(device)
        task = asyncio.get_running_loop().create_task(self._activate(placement, device, released))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _activate(
        self, placement: Placement, device: int, released: asyncio.Task[None] | None
    ) -> None:
        """Route to a new replica once its warm-up has taught its predictor the model
        (after the release under way there, if any: then it registers afresh)."""
        if released is not None:
            await asyncio.shield(released)
            if (
                device not in placement.pending
                or not self._live[device]
                or self._closing
                or self._placements.get(placement.spec.name) is not placement
            ):
                placement.pending.discard(device)
                return
            try:
                self._host(placement, device)
            except Exception:  # it does not fit there any more, say: not a replica then
                placement.pending.discard(device)
                log.exception(
                    "aiosched fleet: %s could not be registered again on %s",
                    placement.spec.name,
                    self._labels[device],
                )
                return
        registration = placement.counters.get(device)
        await self._scheds[device].ready()
        # Meanwhile the model may have been let go there (and asked back: pending again,
        # for another activation): only this registration, still there, is made a replica.
        if (
            device in placement.pending
            and device not in placement.releasing
            and registration is not None
            and placement.counters.get(device) is registration
            and self._live[device]
            and not self._closing
        ):
            self._refresh_one(placement, device)
            placement.add(device)

    def _release_dormant(self, now: float) -> None:
        """Unregister each model from the live hosts dormant for ``release_after``."""
        after = self._release_after
        if after is None:
            return
        loop = asyncio.get_running_loop()
        for placement in self._placements.values():
            for device, since in list(placement.dormant.items()):
                if now - since >= after and self._live[device]:
                    del placement.dormant[device]
                    task = loop.create_task(self._release(placement, device))
                    placement.releasing[device] = task

    async def _release(self, placement: Placement, device: int) -> None:
        try:
            await self._scheds[device].unregister(placement.spec.name)  # drains it first
        except SchedulerClosed:
            placement.releasing.pop(device, None)  # closing: it stays, and closes there
            return
        placement.retire(device)
        self._released += 1

    def _refresh(self) -> None:
        for placement in self._placements.values():
            for device in placement.hosts:
                self._refresh_one(placement, device)

    def _refresh_one(self, placement: Placement, device: int) -> None:
        if self._started:
            placement.refresh(device, self._scheds[device].predictor, self._clock_now())

    def _placement(self, model: str) -> Placement:
        p = self._placements.get(model) if type(model) is str else None
        if p is None:
            raise UnknownModel(f"unknown model {model!r}; registered: {sorted(self._placements)}")
        return p


def _counters(sched: Scheduler, name: str) -> ModelCounters:
    """The live counters of ``name`` on ``sched``: a snapshot copies only their summaries,
    whose percentiles do not add up across devices (buckets do)."""
    return sched._models[name].counters
