"""The contract every backend keeps, run against each one (sim in virtual time, cpu and cuda
for real; cuda only where there is a GPU)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import torch

from aiosched import simtime
from aiosched.backends.base import Backend, Completion
from aiosched.backends.cpu import CpuBackend
from aiosched.backends.cuda import CudaBackend
from aiosched.backends.sim import SimBackend
from aiosched.errors import InvalidConfig
from aiosched.spec import ModelSpec
from tests.conftest import flat_model

_WORK = torch.randn(256, 256)


def _double(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        w = _WORK
        for _ in range(40):  # a few ms of real work, so that two lanes overlap in time
            w = torch.tanh(w @ _WORK)
        return batch * 2 + 0 * w.sum()
    return [x * 2 for x in batch]


def _broken(batch: Any) -> Any:
    raise ValueError("broken model")


class _DoubleOnGpu(torch.nn.Module):
    """Doubles its batch after enough GPU work (a few ms) for two lanes to overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.work = torch.nn.Parameter(torch.randn(2048, 2048) / 64, requires_grad=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        w: torch.Tensor = self.work
        for _ in range(40):
            w = torch.tanh(w @ self.work)
        return batch * 2 + 0 * w.sum()


CASES: dict[str, Callable[[], tuple[Backend, Callable[[Awaitable[Any]], Any], ModelSpec]]] = {
    "sim": lambda: (
        SimBackend(lanes=2, models={"m": flat_model(0.01, output=lambda x: x * 2)}),
        simtime.run,
        ModelSpec("m", None, max_batch_size=4),
    ),
    "cpu": lambda: (
        CpuBackend(lanes=2, threads_per_lane=1),
        asyncio.run,
        ModelSpec("m", _double, max_batch_size=4, input_shape=(2,), dtype=torch.float32),
    ),
    "cuda": lambda: (
        CudaBackend(lanes=2),
        asyncio.run,
        ModelSpec("m", _DoubleOnGpu(), max_batch_size=4, input_shape=(2,), dtype=torch.float32),
    ),
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

_TENSOR_BACKENDS = (CpuBackend, CudaBackend)


def _inputs(backend: Backend, n: int) -> list[Any]:
    if isinstance(backend, _TENSOR_BACKENDS):
        return [torch.full((2,), float(i)) for i in range(n)]
    return [float(i) for i in range(n)]


async def _run_one(backend: Backend, spec: ModelSpec, lane: int, inputs: list[Any]) -> Completion:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Completion] = loop.create_future()
    caller = threading.get_ident()

    def on_done(c: Completion) -> None:
        assert threading.get_ident() == caller, "on_done must run on the loop thread"
        done.set_result(c)

    backend.submit(lane, spec, inputs, on_done)
    assert not done.done(), "submit must return before the batch completes"
    return await done


@pytest.mark.parametrize("name", NAMES)
def test_batch_outputs_are_one_per_input_in_order(name: str) -> None:
    backend, run, spec = CASES[name]()

    async def main() -> None:
        clock = backend.default_clock(asyncio.get_running_loop())
        await backend.start(clock)
        backend.load(spec)
        inputs = _inputs(backend, 3)
        try:
            c = await _run_one(backend, spec, 0, inputs)
        finally:
            await backend.aclose()
        assert c.error is None and c.outputs is not None
        assert len(c.outputs) == 3
        for x, y in zip(inputs, c.outputs, strict=True):
            if isinstance(x, torch.Tensor):
                assert torch.equal(y, x * 2)
            else:
                assert y == x * 2
        assert c.start <= c.end <= clock.now()
        await backend.aclose()  # idempotent

    run(main())


@pytest.mark.parametrize("name", NAMES)
def test_lanes_run_concurrently(name: str) -> None:
    backend, run, spec = CASES[name]()

    async def main() -> None:
        await backend.start(backend.default_clock(asyncio.get_running_loop()))
        backend.load(spec)
        try:
            a, b = await asyncio.gather(
                _run_one(backend, spec, 0, _inputs(backend, 4)),
                _run_one(backend, spec, 1, _inputs(backend, 4)),
            )
        finally:
            await backend.aclose()
        assert a.error is None and b.error is None
        assert max(a.start, b.start) <= min(a.end, b.end)  # the two overlapped in time

    run(main())


@pytest.mark.parametrize("name", NAMES)
def test_model_errors_are_returned_not_raised(name: str) -> None:
    backend, run, spec = CASES[name]()
    if isinstance(backend, _TENSOR_BACKENDS):
        spec = ModelSpec("bad", _broken, input_shape=(2,), dtype=torch.float32)
    else:
        backend = SimBackend(lanes=1, models={"bad": flat_model(0.01, fails=lambda x: True)})
        spec = ModelSpec("bad", None)

    async def main() -> None:
        await backend.start(backend.default_clock(asyncio.get_running_loop()))
        backend.load(spec)
        c = await _run_one(backend, spec, 0, _inputs(backend, 2))
        assert c.outputs is None and isinstance(c.error, Exception)
        await backend.aclose()

    run(main())


@pytest.mark.parametrize("name", NAMES)
def test_load_rejects_what_it_cannot_run(name: str) -> None:
    backend, run, _ = CASES[name]()

    async def main() -> None:
        await backend.start(backend.default_clock(asyncio.get_running_loop()))
        with pytest.raises(InvalidConfig):
            backend.load(ModelSpec("nonesuch", 42))
        await backend.aclose()

    run(main())


def test_lanes_must_be_positive() -> None:
    for cls in (SimBackend, CpuBackend, CudaBackend):
        with pytest.raises(InvalidConfig):
            cls(lanes=0)
