"""Backends and models by name, for the experiments and the ``profile`` command.

``sim`` models come from the simulated catalogue
(:data:`~aiosched.backends.sim.CATALOGUE`); ``cpu`` and ``cuda`` models from
the torchvision zoo with random weights
(:func:`~aiosched.models.torchvision_model`). The ``cpu`` backend gets one
intra-op thread per lane, so lanes compete for cores the way batches on a
GPU compete for its units.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..backends import BACKENDS as ALL_BACKENDS
from ..backends import make_backend
from ..backends.base import Backend
from ..errors import InvalidConfig
from ..scheduler import Scheduler
from ..spec import ModelSpec

__all__ = [
    "BACKENDS",
    "CPU_MODELS",
    "CUDA_MODELS",
    "SIM_MODELS",
    "Hog",
    "check_models",
    "ModelEntry",
    "load_models",
    "experiment_backend",
    "register_all",
]

#: The backends an experiment runs on: every one that can be named, but ``auto`` (an
#: experiment says which device its figures come from).
BACKENDS = tuple(b for b in ALL_BACKENDS if b != "auto")
SIM_MODELS = ("resnet50", "yolov8n", "roberta_base", "vit_b16", "vgg19", "convnext_b")
CPU_MODELS = ("mobilenet_v3_small", "squeezenet1_1", "resnet18")
CUDA_MODELS = ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "resnet18")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model to serve: what the backend runs, and one sample input for it."""

    name: str
    model: Any
    input_shape: tuple[int, ...] | None
    sample: Any

    def spec(self, max_batch_size: int) -> ModelSpec:
        dtype = torch.float32 if self.input_shape is not None else None
        return ModelSpec(self.name, self.model, max_batch_size, self.input_shape, dtype)


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise InvalidConfig(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_models(backend: str, names: Sequence[str]) -> None:
    """Raise :class:`InvalidConfig` unless every name is a model ``backend`` can run."""
    check_backend(backend)
    if not names:
        raise InvalidConfig("give at least one model")
    if len(set(names)) != len(names):
        raise InvalidConfig("a model is named twice")
    if backend == "sim":
        from ..backends.sim import CATALOGUE

        known: list[str] = list(CATALOGUE)
    else:
        from ..models import ZOO

        known = list(ZOO)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidConfig(
            f"unknown {backend} model(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    if backend != "sim":
        from ..models import require_zoo

        require_zoo(names)


def load_models(backend: str, names: Sequence[str]) -> list[ModelEntry]:
    """Resolve model names for ``backend`` (building the torch ones); checked first."""
    check_models(backend, names)
    if backend == "sim":
        return [ModelEntry(n, None, None, 0.0) for n in names]
    from ..models import torchvision_model

    out = []
    for n in names:
        module, shape = torchvision_model(n)
        out.append(ModelEntry(n, module, shape, torch.zeros(shape)))
    return out


def experiment_backend(
    name: str, lanes: int, *, seed: int = 0, drift: Sequence[Any] = ()
) -> Backend:
    """A fresh backend with the experiments' settings, from :func:`aiosched.backends.make_backend`.

    ``seed`` and ``drift`` (:class:`~aiosched.backends.sim.Drift` steps) go to
    the sim backend; the cpu backend gets one intra-op thread per lane; cuda is
    refused up front where torch sees no GPU.
    """
    check_backend(name)
    if lanes < 1:
        raise InvalidConfig("lanes must be >= 1")
    if name == "sim":
        return make_backend("sim", lanes, seed=seed, drift=drift)
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InvalidConfig("the cuda backend needs a CUDA GPU, and torch sees none here")
        return make_backend("cuda", lanes)
    return make_backend("cpu", lanes, threads_per_lane=1)


def register_all(
    sched: Scheduler, entries: Sequence[ModelEntry], max_batch_size: int, *, warmup: bool = True
) -> None:
    for e in entries:
        dtype = torch.float32 if e.input_shape is not None else None
        sched.register(
            e.name,
            e.model,
            max_batch_size=max_batch_size,
            input_shape=e.input_shape,
            dtype=dtype,
            warmup=warmup,
        )


class Hog:
    """A thread that keeps the device busy with matrix products: a co-running load for drift.

    On ``cpu`` it takes one core (torch releases the GIL inside its kernels,
    so it really competes with the lanes for cores and memory bandwidth); on
    ``cuda`` it keeps a stream of the GPU busy. ``stop()`` joins it.
    """

    def __init__(self, device: str = "cpu", size: int = 384) -> None:
        self._device = device
        self._size = size if device == "cpu" else 4096
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="experiment-hog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        if self._device == "cpu":
            torch.set_num_threads(1)
        a = torch.randn(self._size, self._size, device=self._device)
        out = torch.empty_like(a)
        while not self._stop.is_set():
            torch.mm(a, a, out=out)
            if self._device != "cpu":
                torch.cuda.synchronize(a.device)  # one product in flight, not a queue of them

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
