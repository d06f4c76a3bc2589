"""Backends: ``sim`` (virtual-time device), ``cpu`` (torch on lane threads)."""

from __future__ import annotations

from ..errors import InvalidConfig
from .base import Backend, Completion, LaneFailure

__all__ = ["BACKENDS", "Backend", "Completion", "LaneFailure", "make_backend"]

BACKENDS = ("sim", "cpu")


def make_backend(spec: str | Backend, lanes: int | None = None) -> Backend:
    """Resolve a backend name (with an optional lane count) or pass a Backend through."""
    if isinstance(spec, Backend):
        if lanes is not None and lanes != spec.lanes:
            raise InvalidConfig(f"lanes={lanes} conflicts with the backend's {spec.lanes} lanes")
        return spec
    if spec == "sim":
        from .sim import SimBackend

        return SimBackend(lanes=2 if lanes is None else lanes)
    if spec == "cpu":
        from .cpu import CpuBackend

        return CpuBackend(lanes=2 if lanes is None else lanes)
    raise InvalidConfig(
        f"unknown backend {spec!r}; choose one of {', '.join(BACKENDS)} or pass a Backend object"
    )
