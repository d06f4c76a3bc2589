"""The Fleet: one Scheduler per device, a router in front, a rebalance beside.

The fleet itself holds no queue and runs no batch. ``infer()`` picks a device
(:meth:`Placement.route <aiosched.fleet.routing.Placement.route>`) and awaits
that device's scheduler; the device does everything else, and the request
resolves exactly as a single scheduler's would. Around the call the fleet
keeps its *backlog* of that device (the predicted work of the requests it
has there and that have not returned), the only state routing needs.

How a model's replicas come and go (added, dormant, released, lost,
unregistered) is :mod:`.replicas`, whose methods the Fleet inherits. A device
whose lanes have all failed answers with :class:`~aiosched.errors.LaneFailed`;
the fleet then stops routing to it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Self

import torch

from ..backends.base import Backend
from ..backends.sim import SimBackend, SimModel
from ..deadlines import absolute_deadline
from ..errors import InvalidConfig, LaneFailed, SchedulerClosed, UnknownModel
from ..policy import Policy
from ..predict import Predictor, Profile
from ..scheduler import DEFAULT_PREDICTOR, Scheduler
from ..spec import ModelSpec, as_shape
from ..telemetry.snapshot import ModelSnapshot
from .config import (
    check_rebalance,
    check_release_after,
    history_per_device,
    model_factory,
    policy_for_device,
)
from .devices import make_devices
from .rebalance import Move, measure, plan
from .replicas import Replicas
from .routing import Placement, initial_devices
from .snapshot import FleetSnapshot, model_totals

__all__ = ["Fleet"]

log = logging.getLogger("aiosched")


class Fleet(Replicas):
    """Schedulers on several devices behind the API of one :class:`~aiosched.Scheduler`.

    ``devices`` lists backends or device names (``"sim"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``); ``lanes`` sizes the named ones. Each device
    gets its own scheduler with a policy made from ``policy`` (a name, or a
    function that returns a fresh :class:`~aiosched.Policy`: a policy object
    binds to one scheduler) and a predictor from ``predictor`` (a name, or a
    :class:`~aiosched.Predictor` whose fresh :meth:`~aiosched.Predictor.clone`
    each device gets, so that each learns its own device). ``best_effort``,
    ``drain``, ``warmup_repeats``, ``learn_gap``, ``hang_factor``,
    ``hang_after`` and ``profile`` go to every scheduler as they are.
    ``keep_executions`` is the fleet's total: each device keeps its share,
    ``max(1_000, keep_executions // devices)`` (never more than the total),
    so that 64 devices do not keep 64 times the history, and pay for it in
    garbage collection (:func:`~aiosched.fleet.config.history_per_device`).

    Rebalancing runs every ``rebalance_every`` seconds of the fleet's clock
    (``None``: only when :meth:`rebalance` is called); ``grow_above``,
    ``shrink_below`` and ``min_replicas`` are its thresholds
    (:mod:`aiosched.fleet.rebalance`). ``release_after`` (seconds, default
    ``None``: never) unregisters a model from a host that has been dormant
    that long (see the module doc): it trades a warm-up when the load comes
    back for the device memory the model holds.
    """

    def __init__(
        self,
        devices: Sequence[str | Backend],
        *,
        lanes: int | None = None,
        policy: str | Callable[[], Policy] = "edf",
        predictor: str | Predictor = DEFAULT_PREDICTOR,
        best_effort: bool = False,
        drain: bool = True,
        rebalance_every: float | None = 0.5,
        grow_above: float = 0.8,
        shrink_below: float = 0.4,
        min_replicas: int = 1,
        release_after: float | None = None,
        warmup_repeats: int = 2,
        keep_executions: int = 100_000,
        learn_gap: float = 1e-3,
        hang_factor: float = 50.0,
        hang_after: float = 1.0,
        profile: Profile | str | os.PathLike[str] | None = None,
    ) -> None:
        backends, labels = make_devices(devices, lanes)
        n = len(backends)
        check_rebalance(n, rebalance_every, grow_above, shrink_below, min_replicas)
        keep_each = history_per_device(keep_executions, n)
        self._release_after = check_release_after(release_after)
        if isinstance(policy, Policy) or not (isinstance(policy, str) or callable(policy)):
            raise InvalidConfig(
                f"policy must be a name or a function returning a fresh Policy (a policy "
                f"object binds to one scheduler), got {policy!r}"
            )
        if not isinstance(predictor, str | Predictor):
            raise InvalidConfig(f"predictor must be a name or a Predictor, got {predictor!r}")
        if profile is not None and not isinstance(profile, Profile):
            profile = Profile.load(Path(profile))  # once, for every device
        self._scheds = [
            Scheduler(
                backend,
                policy=policy_for_device(policy),
                predictor=predictor.clone() if isinstance(predictor, Predictor) else predictor,
                best_effort=best_effort,
                drain=drain,
                warmup_repeats=warmup_repeats,
                keep_executions=keep_each,
                learn_gap=learn_gap,
                hang_factor=hang_factor,
                hang_after=hang_after,
                profile=profile,
            )
            for backend in backends
        ]
        self._labels = tuple(labels)
        self._every = None if rebalance_every is None else float(rebalance_every)
        self._grow_above = float(grow_above)
        self._shrink_below = float(shrink_below)
        self._min_replicas = min_replicas
        self._placements: dict[str, Placement] = {}
        self._backlog = [0.0] * n  # predicted seconds of work outstanding, per device
        self._outstanding = [0] * n  # requests routed there that have not returned
        self._live = [True] * n
        self._load = (0.0,) * n
        self._grown = self._shrunk = self._released = 0
        self._last_rebalance = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._warming: set[asyncio.Task[None]] = set()
        self._unregistering: dict[str, tuple[Placement, asyncio.Task[ModelSnapshot]]] = {}
        self._started = False
        self._closing = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._clock_now: Callable[[], float] = _not_started

    @classmethod
    def sim(
        cls,
        n: int,
        *,
        lanes: int = 2,
        models: Mapping[str, SimModel] | None = None,
        seed: int = 0,
        **options: Any,
    ) -> Fleet:
        """``n`` simulated devices of ``lanes`` lanes (seeds ``seed``, ``seed + 1``, ...)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidConfig(f"a fleet needs an int >= 1 of devices, got {n!r}")
        devices = [SimBackend(lanes=lanes, models=models, seed=seed + i) for i in range(n)]
        return cls(devices, **options)

    @classmethod
    def cuda(cls, *, lanes: int = 2, **options: Any) -> Fleet:
        """Every CUDA device torch sees (``CUDA_VISIBLE_DEVICES`` chooses them)."""
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise InvalidConfig("Fleet.cuda() needs a CUDA GPU, and torch sees none")
        return cls([f"cuda:{i}" for i in range(count)], lanes=lanes, **options)

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
        """Start every device's scheduler and the rebalance (``async with`` does this)."""
        if self._started or self._closing:
            raise InvalidConfig("a Fleet can be started once")
        loop = self._loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(s.start() for s in self._scheds), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # One device that cannot start fails the fleet; the others must not outlive it.
            self._closing = True
            await asyncio.gather(*(s.aclose() for s in self._scheds), return_exceptions=True)
            self._closed = True
            raise errors[0]
        self._clock_now = self._scheds[0].clock.now
        self._started = True
        self._last_rebalance = self._clock_now()
        self._refresh()
        if self._every is not None:
            self._task = loop.create_task(self._rebalance_loop(), name="aiosched-fleet-rebalance")

    async def aclose(self, *, drain: bool | None = None, timeout: float | None = None) -> None:
        """Stop accepting requests and close every device as ``Scheduler.aclose`` does.

        The devices close side by side, each finishing (or, with
        ``drain=False``, failing) what it holds; ``timeout`` applies to each.
        Returns when every device is closed. Safe to call more than once and
        to cancel: the shutdown goes on in its own task.
        """
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(
                self._shutdown(drain, timeout), name="aiosched-fleet-close"
            )
        await asyncio.shield(self._close_task)

    async def _shutdown(self, drain: bool | None, timeout: float | None) -> None:
        try:
            # A release's unregistration goes on in its device, which resolves it on closing.
            background = [t for t in (self._task, *self._warming) if t is not None]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.gather(*(s.aclose(drain=drain, timeout=timeout) for s in self._scheds))
            # Each release ends with its device's close: keep what those hosts counted.
            releases = [t for p in self._placements.values() for t in p.releasing.values()]
            await asyncio.gather(*releases, return_exceptions=True)
        finally:
            self._closed = True

    # -- registration -----------------------------------------------------

    def register(
        self,
        name: str,
        model: Any = None,
        *,
        replicas: int | None = None,
        devices: Sequence[int] | None = None,
        max_batch_size: int = 8,
        input_shape: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        deadline: float | None = None,
        max_queue: int = 100_000,
        warmup: bool = True,
    ) -> ModelSpec:
        """Add a model on ``replicas`` devices (default: all), or on the ``devices`` listed.

        The other settings are :meth:`Scheduler.register
        <aiosched.Scheduler.register>`'s, for each device (``max_queue``
        bounds each device's queue). With ``replicas``, the least-loaded
        devices are chosen. A torch module is copied for each device (the
        cuda backend moves a module onto its device), so the object passed in
        stays as it is and is the original of replicas added later.
        """
        if self._closing:
            raise SchedulerClosed("cannot register on a closing fleet")
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
        if name in self._placements:
            raise InvalidConfig(f"model {name!r} is already registered")
        if name in self._unregistering:
            raise InvalidConfig(
                f"model {name!r} is being unregistered; "
                "await unregister() before registering the name again"
            )
        chosen = initial_devices(self._live, self._load, self._placements, replicas, devices)
        placement = Placement(spec, len(self._scheds), model_factory(model))
        try:
            for d in chosen:
                self._host(placement, d)
                placement.add(d)
        finally:
            # A device that refuses it (it does not fit, say) raises here; the devices that
            # took it before keep it, and serve it.
            if placement.hosts:
                self._placements[name] = placement
        if self._started:
            self._refresh()
        return spec

    async def ready(self) -> None:
        """Wait until every device has warmed up its models; then routing uses what they learnt."""
        if not self._started:
            raise SchedulerClosed("fleet is not started: use `async with Fleet(...)`")
        await asyncio.gather(*(s.ready() for s in self._scheds))
        if not self._closed:
            self._refresh()

    # -- the request path -------------------------------------------------

    def now(self) -> float:
        """The fleet's clock (every device's), for absolute deadlines (``deadline_at``)."""
        if not self._started:
            raise SchedulerClosed("fleet is not started: use `async with Fleet(...)`")
        return self._clock_now()

    async def infer(
        self,
        model: str,
        x: Any,
        deadline: float | None = None,
        *,
        deadline_at: float | None = None,
    ) -> Any:
        """Run one sample ``x`` on one device; arguments and errors as ``Scheduler.infer``."""
        if self._closing or not self._started:
            raise SchedulerClosed("fleet is closed" if self._closing else "fleet is not started")
        placement = self._placements.get(model) if type(model) is str else None
        if placement is None:
            raise UnknownModel(f"unknown model {model!r}; registered: {sorted(self._placements)}")
        now = self._clock_now()
        if deadline_at is None and type(deadline) is float and 0.0 < deadline < math.inf:
            budget = deadline
        else:
            budget = absolute_deadline(placement.spec, now, deadline, deadline_at) - now
        if not placement.replicas:
            refused = placement.retired  # counted by no device: the fleet counts it
            refused.submitted += 1
            refused.failed += 1  # as a device counts a LaneFailed
            raise LaneFailed(self._no_replica(placement))
        d = placement.route(self._backlog, budget)
        cost = placement.cost[d]
        backlog, outstanding = self._backlog, self._outstanding
        backlog[d] += cost
        outstanding[d] += 1
        placement.routed[d] += cost
        try:
            # The same arguments: the device computes the same deadline (no await since now).
            y = await self._scheds[d].infer(model, x, deadline, deadline_at=deadline_at)
        except LaneFailed:
            self._lost(d)
            raise
        finally:
            left = outstanding[d] = outstanding[d] - 1
            backlog[d] = backlog[d] - cost if left else 0.0  # no float crumbs when empty
        placement.latency.record(self._clock_now() - now)
        return y

    # -- rebalancing ------------------------------------------------------

    async def _rebalance_loop(self) -> None:
        assert self._every is not None
        while True:
            await asyncio.sleep(self._every)
            try:
                self.rebalance()
            except Exception:  # a bad move must not stop the fleet serving, or rebalancing
                log.exception("aiosched fleet: rebalance failed")

    def rebalance(self) -> list[Move]:
        """Measure each device's load since the last rebalance, then grow and shrink replicas.

        Runs by itself every ``rebalance_every`` seconds; returns the moves made.
        A replica added on a device where the model is cold serves once it has
        warmed up there; a replica removed stops getting new requests and
        drains what it holds.
        """
        if not self._started or self._closing:
            return []
        now = self._clock_now()
        elapsed = now - self._last_rebalance
        self._last_rebalance = now
        self._refresh()
        load, models = measure(self._placements, len(self._scheds), elapsed)
        self._load = tuple(load)
        if elapsed <= 0:
            self._release_dormant(now)
            return []
        moves = plan(
            load,
            models,
            self._live,
            grow_above=self._grow_above,
            shrink_below=self._shrink_below,
            min_replicas=self._min_replicas,
        )
        done = []
        for move in moves:
            placement = self._placements[move.model]
            if move.grow:
                self._grow(placement, move.device)
                self._grown += 1
            elif placement.replicas != [move.device]:  # never the last serving replica
                placement.remove(move.device, now)
                self._shrunk += 1
            else:
                continue
            done.append(move)
        self._release_dormant(now)
        return done

    # -- introspection ----------------------------------------------------

    @property
    def devices(self) -> tuple[Scheduler, ...]:
        """Each device's scheduler, in device order (for inspection: route through the fleet)."""
        return tuple(self._scheds)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        return tuple(p.spec for p in self._placements.values())

    @property
    def closed(self) -> bool:
        return self._closed

    def placement(self, model: str) -> tuple[int, ...]:
        """The devices ``model``'s new requests go to."""
        return tuple(self._placement(model).replicas)

    def snapshot(self) -> FleetSnapshot:
        """Every device's snapshot, the totals per model, and the placement."""
        devices = tuple(s.snapshot() for s in self._scheds)
        return FleetSnapshot(
            time=self._clock_now() if self._started else 0.0,
            closed=self._closed,
            labels=self._labels,
            devices=devices,
            live=tuple(self._live),
            load=self._load,
            backlog=tuple(self._backlog),
            placement=MappingProxyType(
                {name: tuple(p.replicas) for name, p in self._placements.items()}
            ),
            models=MappingProxyType(
                {
                    name: model_totals(
                        name,
                        [*p.counters.values(), p.retired],
                        p.latency,
                        devices,
                        p.replicas,
                    )
                    for name, p in self._placements.items()
                }
            ),
            grown=self._grown,
            shrunk=self._shrunk,
            released=self._released,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<Fleet {state} devices={len(self._scheds)} models={len(self._placements)}>"


def _not_started() -> float:
    raise SchedulerClosed("fleet is not started: use `async with Fleet(...)`")
