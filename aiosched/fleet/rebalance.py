"""Placement that follows the load: when a model's replicas grow, and when they shrink.

Every rebalance the fleet measures, per device, the work routed to it since
the last one, as a fraction of the device's time (its *load*: each request
counts its model's predicted device time at full batches, so 1.0 is a device
kept busy by batches run one after another; co-location can take a device a
little past it). :func:`plan` turns those loads into moves:

- **Grow** a model whose replicas run hot (their mean load above
  ``grow_above``): add replicas on the least-loaded live devices that do not
  have it, until the replicas' mean load is projected to come down to the
  midpoint of the two thresholds. Several at once, since a surge should not
  wait a tick per device. A device is added while its part leaves it under
  ``grow_above`` (it has room), or, in a surge too big for that (a model
  offered six devices' worth on two), while it leaves it at least
  :data:`SPREAD_GAIN` cooler than the replicas are: an overload spread over
  more devices is a smaller one, but a device already busy with other models
  does not take heat to save a model only a little hotter than itself.
- **Shrink** a model spread wider than it needs: take it off its busiest
  replica if every other replica would stay under ``shrink_below`` with that
  replica's share of the model spread over them. One per model per tick:
  shrinking gains little (fuller batches, a device freed for the others), so
  it goes gently. A model with no traffic shrinks to ``min_replicas``.

The projections assume routing spreads a model's load evenly over its
replicas (it balances each device's backlog, so nearly). The gap between the
thresholds is the hysteresis: after a grow the mean sits at the midpoint,
above ``shrink_below``; after a shrink every replica is under it, well
below ``grow_above``. Moves only change where *new* requests go: what a
device already admitted stays there, in its order, and drains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .routing import Placement

__all__ = ["SPREAD_GAIN", "ModelLoad", "Move", "measure", "plan"]

SPREAD_GAIN = 0.1
"""In a surge, a device that ends hot is added only if it ends at least this fraction
below the mean load of the model's replicas before it."""


@dataclass(frozen=True, slots=True)
class Move:
    """Add (``grow``) or remove a replica of ``model`` on ``device``."""

    model: str
    device: int
    grow: bool


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """A model's replicas (warming ones included) and its load on each device."""

    replicas: tuple[int, ...]
    share: Sequence[float]  # indexed by device


def measure(
    placements: Mapping[str, Placement], devices: int, elapsed: float
) -> tuple[list[float], dict[str, ModelLoad]]:
    """Each of ``devices``' load, and each model's, from the work routed over the last
    ``elapsed`` seconds; starts the next period's count. Zeros when no time passed."""
    n = devices
    load = [0.0] * n
    models: dict[str, ModelLoad] = {}
    for name, p in placements.items():
        share = [w / elapsed for w in p.routed] if elapsed > 0 else [0.0] * n
        p.routed = [0.0] * n
        for d, w in enumerate(share):
            load[d] += w
        models[name] = ModelLoad((*p.replicas, *sorted(p.pending)), share)
    return load, models


def plan(
    load: Sequence[float],
    models: Mapping[str, ModelLoad],
    live: Sequence[bool],
    *,
    grow_above: float,
    shrink_below: float,
    min_replicas: int,
) -> list[Move]:
    """The moves for devices at ``load`` (see the module doc); models in name order.

    Each move is projected onto the loads before the next model is looked
    at, so two hot models do not both pick the same idle device. Cost:
    O(models x devices) per rebalance, nothing per request.
    """
    projected = list(load)
    target = (grow_above + shrink_below) / 2
    moves: list[Move] = []
    for name in sorted(models):
        m = models[name]
        replicas = list(m.replicas)
        if not replicas:
            continue
        share = {d: m.share[d] for d in replicas}
        total = sum(share.values())
        mean = sum(projected[d] for d in replicas) / len(replicas)
        if mean > grow_above and total > 0:
            moves += _grow(name, replicas, share, total, projected, live, grow_above, target)
        elif len(replicas) > min_replicas:
            moves += _shrink(name, replicas, share, total, projected, shrink_below)
    return moves


def _grow(
    name: str,
    replicas: list[int],
    share: dict[int, float],
    total: float,
    projected: list[float],
    live: Sequence[bool],
    grow_above: float,
    target: float,
) -> list[Move]:
    moves: list[Move] = []
    while True:
        candidates = [d for d in range(len(projected)) if live[d] and d not in share]
        if not candidates:
            return moves
        device = min(candidates, key=lambda d: (projected[d], d))
        each = total / (len(replicas) + 1)
        mean = sum(projected[d] for d in replicas) / len(replicas)
        if projected[device] + each >= max(grow_above, mean * (1 - SPREAD_GAIN)):
            return moves  # no device has room for its part: adding would only move the heat
        for d in replicas:
            projected[d] += each - share[d]
            share[d] = each
        projected[device] += each
        share[device] = each
        replicas.append(device)
        moves.append(Move(name, device, grow=True))
        if sum(projected[d] for d in replicas) / len(replicas) <= target:
            return moves


def _shrink(
    name: str,
    replicas: list[int],
    share: dict[int, float],
    total: float,
    projected: list[float],
    shrink_below: float,
) -> list[Move]:
    device = max(replicas, key=lambda d: (projected[d], d))
    rest = [d for d in replicas if d != device]
    each = total / len(rest)
    after = {d: projected[d] - share[d] + each for d in rest}
    if max(after.values()) >= shrink_below:
        return []
    projected[device] -= share[device]
    for d, value in after.items():
        projected[d] = value
    return [Move(name, device, grow=False)]
