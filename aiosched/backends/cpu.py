"""The cpu backend: torch models on lane threads.

Each lane is an OS thread with its own share of the cores (``lanes x
threads_per_lane <= cores``). Torch kernels release the GIL, so lanes really
run at once and really interfere (memory bandwidth, caches): a faithful
stand-in for GPU co-location on a machine without one. Inputs are stacked
into a batch and outputs split on the lane thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from ..clock import Clock
from ..errors import InvalidConfig
from ..spec import ModelSpec
from ._lanes import LaneThread
from .base import Backend, Completion, DoneCallback

__all__ = ["CpuBackend", "Execute", "call_stacked", "run_batch", "split_outputs", "stack_batch"]

#: Runs a model on a batch's samples and returns its batched output (on the host).
Execute = Callable[[Callable[[Any], Any], Sequence[Any]], Any]


def split_outputs(out: Any, n: int) -> list[Any]:
    """One output per sample from a batched output (tensor, tuple/dict of tensors, or list)."""
    if isinstance(out, torch.Tensor):
        if out.dim() == 0 or out.shape[0] != n:
            raise ValueError(f"model output has shape {tuple(out.shape)}; expected {n} rows")
        return list(out.unbind(0))
    if isinstance(out, dict):
        columns = {k: split_outputs(v, n) for k, v in out.items()}
        return [{k: col[i] for k, col in columns.items()} for i in range(n)]
    if isinstance(out, tuple) and out and all(isinstance(o, torch.Tensor) for o in out):
        parts = [split_outputs(o, n) for o in out]
        return [tuple(p[i] for p in parts) for i in range(n)]
    if isinstance(out, list | tuple) and len(out) == n:
        return list(out)
    raise ValueError(f"cannot split a model output of type {type(out).__name__} into {n} rows")


def stack_batch(inputs: Sequence[Any]) -> Any:
    """The batch a model sees: tensors stacked on a new first dimension, anything else a list."""
    if isinstance(inputs[0], torch.Tensor):
        return torch.stack(list(inputs))
    return list(inputs)


def call_stacked(model: Callable[[Any], Any], inputs: Sequence[Any]) -> Any:
    """The cpu backend's :data:`Execute`: stack the samples and call the model."""
    return model(stack_batch(inputs))


def run_batch(
    model: Callable[[Any], Any],
    inputs: Sequence[Any],
    clock: Clock,
    execute: Execute = call_stacked,
) -> Completion:
    """Run, split and time one batch; errors are returned, not raised (runs on a lane thread).

    ``execute`` is what differs between devices (the cuda backend stages,
    copies and synchronises there); timing, splitting and error capture are
    shared, so every backend reports a batch the same way.
    """
    start = clock.now()
    try:
        with torch.inference_mode():
            outputs = split_outputs(execute(model, inputs), len(inputs))
    except Exception as exc:
        return Completion(None, exc, start, clock.now())
    return Completion(outputs, None, start, clock.now())


class CpuBackend(Backend):
    """Torch on CPU lane threads; ``threads_per_lane`` defaults to ``max(1, cores // lanes)``."""

    name = "cpu"

    def __init__(self, lanes: int = 2, threads_per_lane: int | None = None) -> None:
        super().__init__(lanes)
        if threads_per_lane is not None and threads_per_lane < 1:
            raise InvalidConfig("threads_per_lane must be >= 1")
        cores = os.cpu_count() or 1
        self.threads_per_lane = threads_per_lane or max(1, cores // lanes)
        if lanes > 1 and lanes * self.threads_per_lane >= cores:
            self.colocation_cost = 0.25
        self._threads: list[LaneThread] = []
        self._clock: Clock | None = None

    async def start(self, clock: Clock) -> None:
        loop = asyncio.get_running_loop()
        self._clock = clock
        threads = self.threads_per_lane
        # The intra-op pool is process-wide in torch; each lane thread also sets its own
        # OpenMP team size, so lanes x threads stays within the cores.
        torch.set_num_threads(threads)
        self._threads = [
            LaneThread(i, loop, partial(torch.set_num_threads, threads), name="aiosched-cpu")
            for i in range(self.lanes)
        ]

    def load(self, spec: ModelSpec) -> None:
        model = spec.model
        if not callable(model):
            raise InvalidConfig(f"{spec.name}: the cpu backend needs a torch module or callable")
        if isinstance(model, torch.nn.Module):
            model.eval()

    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        if self._clock is None:
            raise RuntimeError("CpuBackend.submit before start")
        self._threads[lane].submit(partial(run_batch, spec.model, inputs, self._clock), on_done)

    async def aclose(self) -> None:
        threads, self._threads = self._threads, []
        for thread in threads:
            await thread.stop()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads_per_lane": self.threads_per_lane}
