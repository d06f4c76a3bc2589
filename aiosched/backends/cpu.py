"""The cpu backend: torch models on lane threads.

Each lane is an OS thread with its own share of the cores (at most one
lane per core; by default ``lanes x threads_per_lane <= cores``). Torch
kernels release the GIL, so lanes really run at once and really interfere
(memory bandwidth, caches): a faithful stand-in for GPU co-location on a
machine without one. Inputs are stacked into a batch and outputs split on
the lane thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from ..clock import Clock
from ..errors import InvalidConfig, ModelOutputError
from ..spec import ModelSpec
from ._lanes import LaneThread
from .base import Backend, Completion, DoneCallback

__all__ = [
    "CpuBackend",
    "Execute",
    "call_stacked",
    "run_batch",
    "split_outputs",
    "stack_batch",
    "stacks",
    "usable_cores",
]

#: Runs a model on a batch's samples and returns its batched output (on the host).
Execute = Callable[[Callable[[Any], Any], Sequence[Any]], Any]


def split_outputs(out: Any, n: int, *, samples_as_list: bool = False) -> list[Any]:
    """One output per input from a model's output for a batch of ``n``.

    The one rule, whatever ``n`` is: a tensor is split along dim 0 and must have
    exactly ``n`` rows; a tuple (a named tuple too), list or dict is structure, split
    element by element, so that each caller gets the same structure holding its own
    row of every tensor in it. Anything else (a number, a string, ``None``, another
    object, a 0-d tensor, or a structure with no tensor in it) is a
    :class:`~aiosched.errors.ModelOutputError`. The size of the batch never decides what
    a value is: a list of two batched heads is two heads for a batch of two as for any
    other, so no caller is ever handed a row of somebody else's.

    One exception, set by what the model was given rather than by what it returned: a
    model whose samples are not tensors is called with a plain list of them
    (``samples_as_list``), and may answer with a list of one output per sample, in
    order ("list in, list out"); any other answer follows the rule above.
    """
    if samples_as_list and type(out) is list:
        if len(out) != n:
            raise ModelOutputError(
                f"model output is a list of {len(out)} items for a batch of {n} samples given "
                "as a list: a list answer must have one output per sample"
            )
        return list(out)
    found = [0]
    rows = _split(out, n, "model output", found)
    if not found[0]:
        raise ModelOutputError(
            f"model output ({_describe(out)}) holds no tensor: nothing to split into one row "
            f"per input; return a tensor, or a tuple, list or dict of tensors, batch first"
        )
    return rows


def _split(out: Any, n: int, where: str, found: list[int]) -> list[Any]:
    if isinstance(out, torch.Tensor):
        if out.dim() == 0 or out.shape[0] != n:
            got = "no rows (0-d)" if out.dim() == 0 else f"{out.shape[0]} rows"
            raise ModelOutputError(
                f"{where} has shape {tuple(out.shape)}, {got}, for a batch of {n}: every "
                "output tensor must have the batch as its first dimension"
            )
        found[0] += 1
        return list(out.unbind(0))
    if isinstance(out, dict):
        columns = {k: _split(v, n, f"{where}[{k!r}]", found) for k, v in out.items()}
        return [{k: col[i] for k, col in columns.items()} for i in range(n)]
    if isinstance(out, tuple | list):
        parts = [_split(v, n, f"{where}[{j}]", found) for j, v in enumerate(out)]
        rows = [[p[i] for p in parts] for i in range(n)]
        if isinstance(out, list):
            return rows
        return [_rebuild(out, r) for r in rows]
    raise ModelOutputError(
        f"{where} is {_describe(out)}: only tensors, and tuples, lists and dicts of them, "
        "split into one row per input"
    )


def _rebuild(like: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    """A row in the tuple type the model returned (named tuples keep their fields)."""
    kind = type(like)
    if kind is tuple:
        return tuple(items)
    if hasattr(like, "_fields"):  # a named tuple takes its fields as arguments
        return kind(*items)  # type: ignore[no-any-return]
    try:
        return kind(items)  # torch.return_types and other struct sequences take one sequence
    except TypeError:
        return tuple(items)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def stacks(inputs: Sequence[Any]) -> bool:
    """Whether a batch is stacked into one tensor (its samples are tensors), not a list."""
    return isinstance(inputs[0], torch.Tensor)


def stack_batch(inputs: Sequence[Any]) -> Any:
    """The batch a model sees: tensors stacked on a new first dimension, anything else a list."""
    if stacks(inputs):
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

    Whatever the model raises is this batch's error, ``BaseException`` included: on a
    lane thread neither ``SystemExit`` nor ``KeyboardInterrupt`` means what it means on
    the main thread. Python delivers signals (Ctrl-C) to the main thread only, where the
    application's own handling runs, so a ``KeyboardInterrupt`` here was raised by the
    model's code; and ``sys.exit()`` on a thread only ends that thread. Let through,
    either would end the lane silently, strand its callers and hang ``aclose()``;
    returned, the callers get a :class:`~aiosched.errors.ModelError` with it as the cause,
    and the lane runs on.
    """
    start = clock.now()
    try:
        with torch.inference_mode():
            out = execute(model, inputs)
            outputs = split_outputs(out, len(inputs), samples_as_list=not stacks(inputs))
    except BaseException as exc:
        return Completion(None, exc, start, clock.now())
    return Completion(outputs, None, start, clock.now())


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class CpuBackend(Backend):
    """Torch on CPU lane threads: at most one lane per core.

    ``lanes`` defaults to two (one on a single core), ``threads_per_lane`` to
    ``max(1, cores // lanes)``, so that ``lanes x threads_per_lane <= cores``;
    a ``threads_per_lane`` given is taken as it is. The cores are those this
    process may run on.
    """

    name = "cpu"

    def __init__(self, lanes: int | None = None, threads_per_lane: int | None = None) -> None:
        cores = usable_cores()
        if lanes is None:
            lanes = min(2, cores)
        elif isinstance(lanes, int) and not isinstance(lanes, bool) and lanes > cores:
            # Past one core a lane, lanes only take turns on the cores: no more work gets
            # done, every batch takes longer, and the event loop waits behind them.
            raise InvalidConfig(
                f"the cpu backend runs each lane on a core of its own, and this process may "
                f"use {cores} core(s): lanes must be <= {cores}, got {lanes}"
            )
        super().__init__(lanes)
        t = threads_per_lane
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise InvalidConfig(f"threads_per_lane must be an int >= 1, got {t!r}")
        self.threads_per_lane = t or max(1, cores // lanes)
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
        fault = partial(Completion.failed, clock=clock)
        setup = partial(torch.set_num_threads, threads)
        try:
            for i in range(self.lanes):
                self._threads.append(LaneThread(i, loop, setup, name="aiosched-cpu", fault=fault))
        except BaseException:
            await self.aclose()  # the lanes already started would outlive a failed start
            raise

    def load(self, spec: ModelSpec) -> None:
        model = spec.model
        if not callable(model):
            raise InvalidConfig(f"{spec.name}: the cpu backend needs a torch module or callable")
        if isinstance(model, torch.nn.Module):
            model.eval()

    def unload(self, name: str) -> None:
        """Nothing to release: the cpu backend keeps no model, and a lane thread lets go of
        each batch's job (so of its model) as soon as the batch is done."""

    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        if self._clock is None:
            raise RuntimeError("CpuBackend.submit before start")
        self._threads[lane].submit(partial(run_batch, spec.model, inputs, self._clock), on_done)

    def abandon_lane(self, lane: int) -> None:
        if 0 <= lane < len(self._threads):
            self._threads[lane].abandon()

    def close_nowait(self) -> None:
        for thread in self._threads:
            thread.stop_nowait()

    async def aclose(self) -> None:
        threads, self._threads = self._threads, []
        for thread in threads:
            await thread.stop()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads_per_lane": self.threads_per_lane}
