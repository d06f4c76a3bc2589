"""Backends: ``sim`` (virtual-time device), ``cpu`` (torch on lane threads), ``cuda``.

``auto`` picks ``cuda`` where torch sees a CUDA GPU and ``cpu`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidConfig
from .base import Backend, Completion, LaneFailure
from .cuda import DeviceOutOfMemory

__all__ = ["BACKENDS", "Backend", "Completion", "DeviceOutOfMemory", "LaneFailure", "make_backend"]

BACKENDS = ("sim", "cpu", "cuda", "auto")


def make_backend(spec: str | Backend, lanes: int | None = None, **options: Any) -> Backend:
    """Resolve a backend name (with an optional lane count) or pass a Backend through.

    ``options`` go to the backend's constructor, for the settings a name cannot
    carry: ``seed=`` and ``drift=`` of the sim backend, ``threads_per_lane=`` of
    the cpu one, ``device=`` of cuda. This is the one place that maps names to
    backend classes; the experiments and the command line come through it too.
    """
    if isinstance(spec, Backend):
        if lanes is not None and lanes != spec.lanes:
            raise InvalidConfig(f"lanes={lanes} conflicts with the backend's {spec.lanes} lanes")
        if options:
            raise InvalidConfig(
                f"options {', '.join(sorted(options))} are for a backend made by name, "
                "not for a Backend object"
            )
        return spec
    if spec == "auto":
        import torch

        spec = "cuda" if torch.cuda.is_available() else "cpu"
    cls: Callable[..., Backend]
    if spec == "sim":
        from .sim import SimBackend as cls
    elif spec == "cpu":
        from .cpu import CpuBackend as cls
    elif spec == "cuda":
        from .cuda import CudaBackend as cls
    else:
        raise InvalidConfig(
            f"unknown backend {spec!r}; choose one of {', '.join(BACKENDS)} "
            "or pass a Backend object"
        )
    # The cpu backend picks its own default (as many lanes as cores, up to 2); others get 2.
    count = lanes if lanes is not None or spec == "cpu" else 2
    try:
        return cls(lanes=count, **options)
    except TypeError as exc:  # an option this backend does not take
        raise InvalidConfig(f"bad options for the {spec} backend: {exc}") from None
