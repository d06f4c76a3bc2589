"""Dispatch policies: ``edf`` (default), ``fifo`` (dynamic batching baseline), ``sequential``."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidConfig
from .base import DispatchView, Policy
from .edf import EdfPolicy
from .fifo import FifoPolicy
from .sequential import SequentialPolicy

__all__ = [
    "POLICIES",
    "DispatchView",
    "EdfPolicy",
    "FifoPolicy",
    "Policy",
    "SequentialPolicy",
    "make_policy",
]

POLICIES: dict[str, Callable[[], Policy]] = {
    "edf": EdfPolicy,
    "fifo": FifoPolicy,
    "sequential": SequentialPolicy,
}


def make_policy(spec: str | Policy) -> Policy:
    if isinstance(spec, Policy):
        return spec
    try:
        return POLICIES[spec]()
    except (KeyError, TypeError):
        raise InvalidConfig(
            f"unknown policy {spec!r}; choose one of {', '.join(sorted(POLICIES))} "
            "or pass a Policy object"
        ) from None
