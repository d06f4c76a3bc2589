"""The contract every backend keeps, run against each one (sim in virtual time, cpu and cuda
for real; cuda only where there is a GPU).

The clauses live in :func:`aiosched.testing.check_backend`, the kit users run on their own
backends; here it runs on the built-in ones, with its own models and with ours.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch

from aiosched import simtime
from aiosched.backends.base import Backend, Completion
from aiosched.backends.cpu import CpuBackend
from aiosched.backends.cuda import CudaBackend
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.errors import InvalidConfig
from aiosched.spec import ModelSpec
from aiosched.testing import check_backend
from tests.conftest import flat_model

CASES: dict[str, Callable[[int], Backend]] = {
    "sim": lambda lanes: SimBackend(lanes=lanes),
    "cpu": lambda lanes: CpuBackend(lanes=lanes, threads_per_lane=1),
    "cuda": lambda lanes: CudaBackend(lanes=lanes),
}

NAMES = [
    pytest.param(
        name,
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    )
    if name == "cuda"
    else name
    for name in sorted(CASES)
]


@pytest.mark.parametrize("name", NAMES)
def test_every_backend_keeps_the_contract(name: str) -> None:
    check_backend(CASES[name](2))


@pytest.mark.parametrize("name", NAMES)
def test_the_contract_holds_with_one_lane(name: str) -> None:
    check_backend(CASES[name](1))


def test_sim_keeps_the_contract_with_models_from_its_catalogue() -> None:
    # A backend that knows its models by name: the spec names one and carries no model.
    backend = SimBackend(
        lanes=2,
        models={
            "m": flat_model(0.01, output=lambda x: x * 2),
            "bad": flat_model(0.01, fails=lambda x: True),
        },
    )
    check_backend(
        backend,
        model=ModelSpec("m", None, max_batch_size=4),
        failing=ModelSpec("bad", None),
    )


def test_cpu_keeps_the_contract_with_a_plain_function() -> None:
    def double(batch: torch.Tensor) -> torch.Tensor:
        return batch * 2

    model = ModelSpec("double", double, max_batch_size=4, input_shape=(3,), dtype=torch.float32)
    check_backend(
        CpuBackend(lanes=1, threads_per_lane=1),
        model=model,
        make_input=lambda i: torch.arange(3.0) + i,
        expected=lambda x: x * 2,
    )


def test_lanes_must_be_positive() -> None:
    for cls in (SimBackend, CpuBackend, CudaBackend):
        with pytest.raises(InvalidConfig):
            cls(lanes=0)


def test_make_backend_passes_options_to_the_constructor() -> None:
    from aiosched.backends import make_backend

    sim = make_backend("sim", 3, seed=7)
    assert isinstance(sim, SimBackend) and sim.lanes == 3 and sim.seed == 7
    assert isinstance(make_backend("cpu", 1, threads_per_lane=1), CpuBackend)
    with pytest.raises(InvalidConfig, match="bad options for the sim backend"):
        make_backend("sim", 2, threads_per_lane=1)
    with pytest.raises(InvalidConfig, match="not for a Backend object"):
        make_backend(sim, seed=1)


class _Times:
    """A sim model's output: its input times ``factor`` (an object a weakref can watch)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: Any) -> Any:
        return x * self.factor


class _Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = torch.nn.Parameter(torch.tensor(factor), requires_grad=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch * self.factor


def _spec(sim: bool, factor: float) -> tuple[ModelSpec, object]:
    """A model named "m" that multiplies by ``factor``, and the object a weakref watches."""
    if sim:
        times = _Times(factor)
        model = SimModel(0.01, 0.0, exponent=1.0, noise=0.0, output=times)
        return ModelSpec("m", model, max_batch_size=2), times
    module = _Scale(factor)
    return ModelSpec("m", module, max_batch_size=2, input_shape=(2,), dtype=torch.float32), module


async def _run_one(backend: Backend, spec: ModelSpec, inputs: list[Any]) -> Completion:
    done: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
    backend.submit(0, spec, inputs, done.set_result)
    return await done


@pytest.mark.parametrize("name", NAMES)
def test_unload_lets_the_model_go_and_the_name_can_be_loaded_again(name: str) -> None:
    backend = CASES[name](1)
    sim = name == "sim"
    inputs: list[Any] = [1.0, 2.0] if sim else [torch.full((2,), 1.0), torch.full((2,), 2.0)]

    async def main() -> None:
        await backend.start(backend.default_clock(asyncio.get_running_loop()))
        try:
            spec, watched = _spec(sim, 2.0)
            ref = weakref.ref(watched)
            backend.load(spec)
            first = await _run_one(backend, spec, inputs)
            assert first.error is None and first.outputs is not None
            assert [float(torch.as_tensor(y).sum()) for y in first.outputs] == (
                [2.0, 4.0] if sim else [4.0, 8.0]
            )
            backend.unload("m")
            backend.unload("never-loaded")  # ignored
            del spec, watched, first
            gc.collect()
            assert ref() is None, f"{name}: the backend still holds the unloaded model"
            again, _ = _spec(sim, 3.0)  # the same name, another model
            backend.load(again)
            second = await _run_one(backend, again, inputs)
            assert second.error is None and second.outputs is not None
            assert [float(torch.as_tensor(y).sum()) for y in second.outputs] == (
                [3.0, 6.0] if sim else [6.0, 12.0]
            )
        finally:
            await backend.aclose()

    (simtime.run if sim else asyncio.run)(main())


def test_the_graph_cache_forgets_one_model() -> None:
    from aiosched.backends._graphs import GraphCache

    cache = GraphCache(2, _capture)
    for name in ("a", "b"):
        cache.capture((name, 4, (2,), torch.float32), lambda x: x, lambda: None)
    cache.capture(("a", 8, (2,), torch.float32), _raises, lambda: None)  # a failed capture
    assert len(cache.failed) == 1
    cache.forget("a")
    assert cache.captured == (("b", 4, (2,), torch.float32),) and not cache.failed


def _capture(model: Callable[[Any], Any], batch: Any) -> Callable[[Any], Any]:
    model(batch)
    return model


def _raises(x: Any) -> Any:
    raise RuntimeError("capture failed")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_unload_drops_the_models_graphs_and_the_staging_buffers() -> None:
    backend = CudaBackend(lanes=1, graphs=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await backend.start(backend.default_clock(loop))
        try:
            spec, _ = _spec(False, 2.0)
            backend.load(spec)
            done = await _run_one(backend, spec, [torch.ones(2), torch.ones(2)])
            assert done.error is None
            assert backend.graphs is not None
            assert [k[0] for k in backend.graphs.captured] == ["m"]
            lane = backend._lanes[0]
            assert lane.staging.nbytes > 0
            backend.unload("m")
            assert backend.graphs.captured == ()
            # The lane clears its buffers on its own thread, after what it was running.
            left: asyncio.Future[int] = loop.create_future()
            backend._threads[0].call(
                lambda: loop.call_soon_threadsafe(left.set_result, lane.staging.nbytes)
            )
            assert await left == 0
        finally:
            await backend.aclose()

    asyncio.run(main())
