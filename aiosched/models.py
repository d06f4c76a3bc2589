"""Models to serve: torchvision architectures with random weights, and tiny models for tests.

Nothing is downloaded: every torchvision model is built with ``weights=None``.
:data:`ZOO` gives each known name's input shape so ``register`` can be told it.
torchvision is an extra (``vision``), imported only when a torchvision
architecture is built; without it, building one raises :class:`InvalidConfig`
saying what to install, and the tiny models still work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import InvalidConfig

__all__ = [
    "ZOO",
    "ZooEntry",
    "identity",
    "require_torchvision",
    "require_zoo",
    "tiny_cnn",
    "tiny_mlp",
    "torchvision_model",
]


@dataclass(frozen=True, slots=True)
class ZooEntry:
    name: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module]
    vision: bool = True
    """Built by torchvision (the ``vision`` extra)."""


def require_torchvision() -> Any:
    """``torchvision.models``, or :class:`InvalidConfig` naming the extra to install."""
    try:
        return importlib.import_module("torchvision.models")
    except ModuleNotFoundError:  # not installed; a broken install raises its own error
        raise InvalidConfig(
            "torchvision models need torchvision: pip install 'aiosched[vision]'"
        ) from None


def _tv(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        tvm = require_torchvision()
        return tvm.get_model(name, weights=None, **kwargs)  # type: ignore[no-any-return]

    return build


_IMAGE = (3, 224, 224)

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("mobilenet_v3_small", _IMAGE, _tv("mobilenet_v3_small")),
        ZooEntry("mobilenet_v3_large", _IMAGE, _tv("mobilenet_v3_large")),
        ZooEntry("squeezenet1_1", _IMAGE, _tv("squeezenet1_1")),
        ZooEntry("shufflenet_v2_x0_5", _IMAGE, _tv("shufflenet_v2_x0_5")),
        ZooEntry("efficientnet_b0", _IMAGE, _tv("efficientnet_b0")),
        ZooEntry("resnet18", _IMAGE, _tv("resnet18")),
        ZooEntry("resnet50", _IMAGE, _tv("resnet50")),
        ZooEntry("vgg19", _IMAGE, _tv("vgg19")),
        ZooEntry("vit_b_16", _IMAGE, _tv("vit_b_16")),
        ZooEntry("convnext_base", _IMAGE, _tv("convnext_base")),
        ZooEntry("tiny_mlp", (16,), lambda: tiny_mlp(), vision=False),
        ZooEntry("tiny_cnn", (3, 32, 32), lambda: tiny_cnn(), vision=False),
    )
}


def require_zoo(names: Iterable[str]) -> None:
    """Check, before anything runs, that the zoo models ``names`` can be built: raises
    :class:`InvalidConfig` naming the extra when one needs torchvision and it is missing."""
    if any(entry.vision for entry in map(ZOO.get, names) if entry is not None):
        require_torchvision()


def torchvision_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """Build a zoo model by name (random weights, eval mode) and return it with its input shape."""
    entry = ZOO.get(name)
    if entry is None:
        raise InvalidConfig(f"unknown model {name!r}; known: {', '.join(sorted(ZOO))}")
    torch.manual_seed(0)
    return entry.build().eval(), entry.input_shape


def tiny_mlp(features: int = 16, hidden: int = 32, classes: int = 4) -> nn.Module:
    """A two-layer MLP on ``(features,)`` inputs: fast enough for unit tests."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes)).eval()


def tiny_cnn(classes: int = 10) -> nn.Module:
    """A small conv net on ``(3, 32, 32)`` inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 16, classes),
    ).eval()


def identity(batch: Any) -> Any:
    """A zero-cost model: returns its batch (for overhead benchmarks)."""
    return batch
