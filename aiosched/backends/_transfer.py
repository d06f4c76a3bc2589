"""Host-side buffers for the cuda backend: pinned staging for inputs, host copies of outputs.

A copy from pageable host memory to the device is synchronous for the
calling thread and goes through a driver bounce buffer; from pinned memory
it is a true asynchronous DMA on the lane's stream. Pinned allocation is
slow (it maps pages for the device), so each lane keeps one staging buffer
per sample shape and dtype, grown to the largest batch it has seen, and
stacks each batch into its first rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Allocate", "StagingBuffers", "map_tensors", "pinned_empty", "to_host"]

#: Allocates an uninitialised host tensor of a shape and dtype.
Allocate = Callable[[tuple[int, ...], torch.dtype], torch.Tensor]


def pinned_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def _pageable_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype)


class StagingBuffers:
    """One lane's reusable host buffers, keyed by sample shape and dtype.

    Not thread-safe: a lane owns one, and stacks a batch only after its
    previous batch's copies have completed (the lane synchronises on each
    batch's end event), so the rows are never overwritten mid-copy.
    """

    def __init__(self, pinned: bool = True, allocate: Allocate | None = None) -> None:
        self._allocate = allocate or (pinned_empty if pinned else _pageable_empty)
        self._buffers: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}

    def stack(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack host tensors into the first ``len(inputs)`` rows of this lane's buffer."""
        first = inputs[0]
        n = len(inputs)
        key = (tuple(first.shape), first.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape[0] < n:
            # Grow to a power of two so a ramp of batch sizes reallocates a few times, not each.
            rows = 1 << (n - 1).bit_length()
            buffer = self._buffers[key] = self._allocate((rows, *key[0]), first.dtype)
        return torch.stack(list(inputs), out=buffer[:n])

    def clear(self) -> None:
        """Let every buffer go (on the lane's thread, like :meth:`stack`)."""
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor in a model output: tensors, and dicts, tuples, lists of them."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        items = [map_tensors(fn, v) for v in obj]
        if hasattr(obj, "_fields"):  # a namedtuple takes its fields as arguments
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def to_host(out: Any, pinned: bool = True) -> Any:
    """Queue copies of an output's device tensors to fresh host memory on the current stream.

    Fresh, not reused: the per-sample rows handed to callers are views of
    these tensors and live as long as the callers keep them. The copies are
    asynchronous; the caller synchronises before reading them.
    """

    def copy(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cpu":
            return t
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=pinned)
        return host.copy_(t, non_blocking=True)

    return map_tensors(copy, out)
