"""A fleet's settings, checked at the constructor: typed errors before anything starts."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from ..errors import InvalidConfig
from ..policy import Policy

__all__ = [
    "check_release_after",
    "check_rebalance",
    "history_per_device",
    "model_factory",
    "policy_for_device",
]

MIN_HISTORY = 1_000
"""The fewest executions a device keeps (unless the fleet's total is smaller): enough
trace for the predictor experiments to replay one device."""

MIN_REBALANCE_S = 0.01
"""The shortest rebalance period (seconds): a rebalance measures the load over it."""


def policy_for_device(policy: str | Callable[[], Policy]) -> str | Policy:
    """A policy for one more device: the name, or a fresh object from the function."""
    if isinstance(policy, str):
        return policy
    made = policy()
    if not isinstance(made, Policy):
        raise InvalidConfig(f"the policy function must return a Policy, got {made!r}")
    return made


def history_per_device(keep_executions: int, devices: int) -> int:
    """Each device's part of the fleet's ``keep_executions``: an even share, at least
    :data:`MIN_HISTORY`, at most the total. The history's cost is the garbage collector's
    walk over it, which grows with the heap: kept whole on each device, 64 devices would
    hold 64 times what was asked for."""
    if type(keep_executions) is not int or keep_executions < 0:
        raise InvalidConfig(f"keep_executions must be an int >= 0, got {keep_executions!r}")
    return min(keep_executions, max(MIN_HISTORY, keep_executions // devices))


def model_factory(model: Any) -> Callable[[], Any]:
    """Where each device's model comes from: a copy of a torch module (the cuda backend
    moves a module onto its device, in place), else the object itself."""
    if isinstance(model, torch.nn.Module):
        return lambda: copy.deepcopy(model)
    return lambda: model


def check_rebalance(
    devices: int,
    every: float | None,
    grow_above: float,
    shrink_below: float,
    min_replicas: int,
) -> None:
    """The rebalance's settings (see :mod:`aiosched.fleet.rebalance`), or InvalidConfig."""
    numbers = {"grow_above": grow_above, "shrink_below": shrink_below}
    if every is not None:
        numbers["rebalance_every"] = every
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidConfig(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InvalidConfig(f"{name} must be finite, got {value!r}")
    if every is not None and every < MIN_REBALANCE_S:
        # A rebalance measures the load over its period: shorter is noise, and in
        # virtual time a period near zero would never let the clock move on.
        raise InvalidConfig(
            f"rebalance_every must be >= {MIN_REBALANCE_S} s (or None), got {every!r}"
        )
    if not 0 <= shrink_below < grow_above:
        raise InvalidConfig(
            f"need 0 <= shrink_below < grow_above, got {shrink_below!r} and {grow_above!r}"
        )
    if type(min_replicas) is not int or not 1 <= min_replicas <= devices:
        raise InvalidConfig(
            f"min_replicas must be an int from 1 to the {devices} devices, got {min_replicas!r}"
        )


def check_release_after(value: float | None) -> float | None:
    """``release_after`` as a float (``None`` stays), or InvalidConfig."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidConfig(f"release_after must be a number of seconds or None, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise InvalidConfig(f"release_after must be finite and >= 0 seconds, got {value!r}")
    return float(value)
