"""Where a model runs, and which of its devices a request goes to.

A model being registered starts on the devices given, or on the
least-loaded live ones (:func:`initial_devices`); rebalancing moves it from
there (:mod:`.rebalance`).

A model's :class:`Placement` knows the devices that host it (it is registered
there) and, among them, its *replicas*: the devices new requests are routed
to. A host that is not a replica is dormant (it was shrunk away, and drains
what it had; with ``release_after`` the fleet unregisters it there after a
while, see :mod:`.core`) or pending (still warming up). Per device the placement keeps
two predictions, refreshed from that device's own predictor at each
rebalance rather than asked per request:

- ``cost``: the device time one request takes at full batches (the
  predicted latency of a batch of ``max_batch_size``, divided by it). Summed
  over a device's outstanding requests, it is the predicted work ahead of a
  new one there: the fleet's *backlog* of that device.
- ``solo``: the predicted latency of one request alone.

:meth:`Placement.route` sends a request to the replica with the earliest
predicted completion, ``backlog + solo``, when that meets the request's
budget; when none does, to the least-loaded replica (smallest backlog),
whose own admission then decides (and rejects with
:class:`~aiosched.errors.DeadlineUnmeetable` what cannot make it). One pass
over the replicas: O(replicas) per request, no allocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, KeysView, Mapping, Sequence
from typing import Any

from ..errors import InvalidConfig
from ..predict import Predictor
from ..spec import ModelSpec
from ..telemetry.stats import LatencyHistogram, ModelCounters
from .snapshot import add_counters

__all__ = ["Placement", "initial_devices"]


class Placement:
    """One model's devices: hosts, replicas, per-device predictions and routed work."""

    __slots__ = (
        "cost",
        "counters",
        "dormant",
        "factory",
        "latency",
        "pending",
        "releasing",
        "replicas",
        "retired",
        "routed",
        "solo",
        "spec",
    )

    def __init__(self, spec: ModelSpec, devices: int, factory: Callable[[], Any]) -> None:
        self.spec = spec
        self.factory = factory  # the model object for one more device
        self.replicas: list[int] = []  # devices new requests go to, in the order added
        self.pending: set[int] = set()  # hosts warming up to become replicas
        self.cost = [0.0] * devices
        self.solo = [0.0] * devices
        self.routed = [0.0] * devices  # work routed to each device since the last rebalance
        # Each host's own counters, keyed by host (the live object, so that totals are
        # exact at any instant, a release under way included); and those of the hosts
        # released, with the requests the fleet refused itself (no replica to route to).
        self.counters: dict[int, ModelCounters] = {}
        self.retired = ModelCounters()
        self.latency = LatencyHistogram()  # the fleet's own record: call to result
        self.dormant: dict[int, float] = {}  # host -> when it stopped being a replica
        self.releasing: dict[int, asyncio.Task[None]] = {}  # hosts being unregistered

    def route(self, backlog: Sequence[float], budget: float) -> int:
        """The replica for a request with ``budget`` seconds left (see the module doc)."""
        replicas = self.replicas
        solo = self.solo
        best = replicas[0]
        best_at = backlog[best] + solo[best]
        for d in replicas:
            at = backlog[d] + solo[d]
            if at < best_at:
                best, best_at = d, at
        if best_at <= budget:
            return best
        # Nobody meets it: the least-loaded replica, whose admission decides.
        least = best
        for d in replicas:
            if backlog[d] < backlog[least]:
                least = d
        return least

    @property
    def hosts(self) -> KeysView[int]:
        """The devices the model is registered on: those whose counters it reads."""
        return self.counters.keys()

    def refresh(self, device: int, predictor: Predictor, now: float) -> None:
        """Ask ``device``'s predictor again (it learns): a request's work there, and alone."""
        name, top = self.spec.name, self.spec.max_batch_size
        self.cost[device] = predictor.predict(name, top, (), now) / top
        self.solo[device] = predictor.predict(name, 1, (), now)

    def add(self, device: int) -> None:
        """Route to ``device`` from now on."""
        self.pending.discard(device)
        self.dormant.pop(device, None)
        if device not in self.replicas:
            self.replicas.append(device)

    def remove(self, device: int, now: float) -> None:
        """Route no new request to ``device``; what it holds stays there and drains."""
        self.pending.discard(device)
        if device in self.replicas:
            self.replicas.remove(device)
        if device in self.counters and device not in self.releasing:
            self.dormant.setdefault(device, now)

    def retire(self, device: int) -> None:
        """``device`` no longer hosts the model: keep what its counters say."""
        counters = self.counters.pop(device, None)
        if counters is not None:
            add_counters(self.retired, counters)
        self.dormant.pop(device, None)
        self.releasing.pop(device, None)


def initial_devices(
    live: Sequence[bool],
    load: Sequence[float],
    placements: Mapping[str, Placement],
    replicas: int | None,
    devices: Sequence[int] | None,
) -> list[int]:
    """Where a model being registered starts: the ``devices`` given (checked), or the
    ``replicas`` least-loaded live devices (the fewest replicas of other models breaking
    ties), or every live device."""
    n = len(live)
    up = [d for d in range(n) if live[d]]
    if devices is not None:
        if replicas is not None:
            raise InvalidConfig("give replicas= or devices=, not both")
        chosen = list(devices) if isinstance(devices, Sequence) else None
        if (
            not chosen
            or not all(type(d) is int and 0 <= d < n for d in chosen)
            or len(set(chosen)) != len(chosen)
        ):
            raise InvalidConfig(
                f"devices must be distinct device indices in [0, {n}), got {devices!r}"
            )
        dead = [d for d in chosen if not live[d]]
        if dead:
            raise InvalidConfig(f"devices {dead} have failed: place the model elsewhere")
        return chosen
    if replicas is None:
        return up
    if type(replicas) is not int or not 1 <= replicas <= n:
        raise InvalidConfig(f"replicas must be an int from 1 to {n}, got {replicas!r}")
    hosted = [0] * n
    for p in placements.values():
        for d in p.replicas:
            hosted[d] += 1
    return sorted(up, key=lambda d: (load[d], hosted[d], d))[:replicas]
