"""The contract every backend keeps, run against each one (sim in virtual time, cpu and cuda
for real; cuda only where there is a GPU).

The clauses live in :func:`aiosched.testing.check_backend`, the kit users run on their own
backends; here it runs on the built-in ones, with its own models and with ours.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from aiosched.backends.base import Backend
from aiosched.backends.cpu import CpuBackend
from aiosched.backends.cuda import CudaBackend
from aiosched.backends.sim import SimBackend
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
