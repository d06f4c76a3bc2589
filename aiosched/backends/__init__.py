"""Backends: ``sim`` (virtual-time device), ``cpu`` (torch on lane threads), ``cuda``.

``auto`` picks ``cuda`` where torch sees a CUDA GPU and ``cpu`` elsewhere.
"""

from __future__ import annotations

from ..errors import InvalidConfig
from .base import Backend, Completion, LaneFailure
from .cuda import DeviceOutOfMemory

__all__ = ["BACKENDS", "Backend", "Completion", "DeviceOutOfMemory", "LaneFailure", "make_backend"]

BACKENDS = ("sim", "cpu", "cuda", "auto")


def make_backend(spec: str | Backend, lanes: int | None = None) -> Backend:
    """Resolve a backend name (with an optional lane count) or pass a Backend through."""
    if isinstance(spec, Backend):
        if lanes is not None and lanes != spec.lanes:
            raise InvalidConfig(f"lanes={lanes} conflicts with the backend's {spec.lanes} lanes")
        return spec
    n = 2 if lanes is None else lanes  # the cpu backend picks its own default (cores)
    if spec == "auto":
        import torch

        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "sim":
        from .sim import SimBackend

        return SimBackend(lanes=n)
    if spec == "cpu":
        from .cpu import CpuBackend

        return CpuBackend(lanes=lanes)
    if spec == "cuda":
        from .cuda import CudaBackend

        return CudaBackend(lanes=n)
    raise InvalidConfig(
        f"unknown backend {spec!r}; choose one of {', '.join(BACKENDS)} or pass a Backend object"
    )
