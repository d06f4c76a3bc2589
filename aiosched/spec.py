"""What the scheduler knows about a registered model, and the check of each input against it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

from .errors import InvalidConfig, InvalidInput

__all__ = ["MAX_BATCH_INPUT_BYTES", "MAX_BATCH_SIZE", "ModelSpec", "as_shape"]

#: The largest batch a model may be registered with. Warm-up runs every power of two up
#: to it, and the scheduler builds batches that large: past about a thousand, a batch is
#: throughput work, not the predictable-latency serving this library is for.
MAX_BATCH_SIZE = 1024

#: The most input one batch of a model may take (its ``max_batch_size`` samples of
#: ``input_shape`` and ``dtype``): warm-up allocates it, on the host and on the device.
MAX_BATCH_INPUT_BYTES = 1 << 30


def as_shape(name: object, value: object) -> tuple[int, ...] | None:
    """``input_shape`` as a tuple of ints >= 1, or :class:`InvalidConfig` saying why not."""
    if value is None:
        return None
    if not isinstance(value, Iterable):
        raise InvalidConfig(
            f"{name}: input_shape must be a sequence of ints (one sample, no batch "
            f"dimension), got {value!r}"
        )
    shape = tuple(value)
    dims = [d for d in shape if _int_at_least(d, 1)]
    if len(dims) != len(shape):
        raise InvalidConfig(
            f"{name}: input_shape must be ints >= 1 (an empty dimension holds no data), "
            f"got {value!r}"
        )
    return tuple(dims)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def _int_at_least(value: object, low: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A registered model.

    ``model`` is whatever the backend runs: a torch module or a callable on a
    batch for the cpu backend, a :class:`~aiosched.backends.sim.SimModel` for
    the sim backend. ``input_shape`` and ``dtype`` describe one sample, without
    the batch dimension; ``None`` means "not checked" (then inputs need not be
    tensors).

    What the model returns for a batch is split into one output per input by one
    rule, whatever the batch size (:func:`aiosched.backends.cpu.split_outputs`): a
    tensor along its first dimension, which must have one row per input; tuples,
    lists and dicts of tensors, nested, element by element; anything else fails the
    batch's callers with :class:`~aiosched.errors.ModelError`. A model whose samples
    are not tensors gets them as a list and may answer with a list, one per sample.
    """

    name: str
    model: Any
    max_batch_size: int = 8
    input_shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    default_deadline: float | None = None
    max_queue: int = 100_000
    warmup: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidConfig(f"model name must be a non-empty string, got {self.name!r}")
        shape = as_shape(self.name, self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if self.dtype is not None and not isinstance(self.dtype, torch.dtype):
            raise InvalidConfig(f"{self.name}: dtype must be a torch.dtype, got {self.dtype!r}")
        b = self.max_batch_size
        if not _int_at_least(b, 1):
            raise InvalidConfig(f"{self.name}: max_batch_size must be an int >= 1, got {b!r}")
        dtype = self.dtype or torch.float32
        sample = 0 if shape is None else math.prod(shape) * dtype.itemsize
        input_size = "" if shape is None else f": {_gib(b * sample)} of input a batch"
        if b > MAX_BATCH_SIZE:
            raise InvalidConfig(
                f"{self.name}: max_batch_size={b} is over {MAX_BATCH_SIZE}, the largest batch "
                f"aiosched runs (warm-up runs every power of two up to it{input_size})"
            )
        if b * sample > MAX_BATCH_INPUT_BYTES:
            raise InvalidConfig(
                f"{self.name}: max_batch_size={b} samples of {shape} {dtype} is over the "
                f"{_gib(MAX_BATCH_INPUT_BYTES)} of input a batch may take ({_gib(b * sample)}; "
                f"warm-up allocates it): use max_batch_size <= {MAX_BATCH_INPUT_BYTES // sample}"
            )
        d = self.default_deadline
        if d is not None and (
            isinstance(d, bool)
            or not isinstance(d, int | float)
            or not (d > 0 and math.isfinite(d))
        ):
            raise InvalidConfig(
                f"{self.name}: the default deadline must be a finite number of seconds > 0 "
                f"(leave it out for none), got {d!r}"
            )
        if not _int_at_least(self.max_queue, 1):
            raise InvalidConfig(
                f"{self.name}: max_queue must be an int >= 1, got {self.max_queue!r}"
            )

    @property
    def checks_tensors(self) -> bool:
        return self.input_shape is not None or self.dtype is not None

    def check(self, x: Any) -> None:
        """Raise :class:`InvalidInput` unless ``x`` is one valid sample for this model."""
        if not self.checks_tensors:
            return
        if not isinstance(x, torch.Tensor):
            raise InvalidInput(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if self.input_shape is not None and x.shape != self.input_shape:
            raise InvalidInput(
                f"{self.name}: expected one sample of shape {self.input_shape} (no batch "
                f"dimension), got {tuple(x.shape)}"
            )
        if self.dtype is not None and x.dtype != self.dtype:
            raise InvalidInput(f"{self.name}: expected dtype {self.dtype}, got {x.dtype}")

    def sample(self) -> torch.Tensor | None:
        """A zero sample for warm-up, or ``None`` where the shape is unknown."""
        if self.input_shape is None:
            return None
        return torch.zeros(self.input_shape, dtype=self.dtype or torch.float32)
