"""What the scheduler knows about a registered model, and the check of each input against it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InvalidConfig, InvalidInput

__all__ = ["ModelSpec"]


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
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise InvalidConfig(
                f"{self.name}: max_batch_size must be an int >= 1, got {self.max_batch_size!r}"
            )
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise InvalidConfig(f"{self.name}: input_shape must be non-negative ints: {shape}")
            object.__setattr__(self, "input_shape", shape)
        if self.dtype is not None and not isinstance(self.dtype, torch.dtype):
            raise InvalidConfig(f"{self.name}: dtype must be a torch.dtype, got {self.dtype!r}")
        d = self.default_deadline
        if d is not None and not (isinstance(d, int | float) and d > 0 and math.isfinite(d)):
            raise InvalidConfig(f"{self.name}: default_deadline must be seconds > 0, got {d!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise InvalidConfig(f"{self.name}: max_queue must be an int >= 1")

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
