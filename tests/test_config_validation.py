"""Bad settings and inputs end at the boundary with one typed, one-line error (issue 10)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import aiosched
from aiosched.backends import make_backend
from aiosched.backends.base import MAX_LANES
from aiosched.backends.cpu import CpuBackend, usable_cores
from aiosched.backends.sim import SimBackend
from aiosched.spec import MAX_BATCH_SIZE, ModelSpec
from tests.conftest import sim


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_batch_size": True}, "max_batch_size must be an int"),
        ({"max_batch_size": 2.0}, "max_batch_size must be an int"),
        ({"max_batch_size": 10**6}, f"over {MAX_BATCH_SIZE}"),
        ({"input_shape": (3, 0)}, "ints >= 1"),
        ({"input_shape": (3, True)}, "ints >= 1"),
        ({"input_shape": 3}, "sequence of ints"),
        ({"deadline": math.inf}, "finite number of seconds"),
        ({"deadline": True}, "finite number of seconds"),
        ({"max_queue": True}, "max_queue must be an int"),
    ],
)
def test_register_refuses_bad_settings_with_one_typed_line(
    settings: dict[str, Any], message: str
) -> None:
    sched = aiosched.Scheduler(sim())
    with pytest.raises(aiosched.InvalidConfig) as exc:
        sched.register("m", **settings)
    assert message in _one_line(exc)
    assert not sched.models  # nothing was registered


def test_a_batch_too_large_for_memory_is_refused_and_says_how_large_fits() -> None:
    # 1000 samples of 3 x 512 x 512 float32 would be 2.9 GiB of input for warm-up alone.
    with pytest.raises(aiosched.InvalidConfig) as exc:
        ModelSpec("big", None, max_batch_size=1000, input_shape=(3, 512, 512))
    text = _one_line(exc)
    assert "2.93 GiB" in text and "max_batch_size <= 341" in text
    ModelSpec("big", None, max_batch_size=341, input_shape=(3, 512, 512))
    with pytest.raises(aiosched.InvalidConfig, match="GiB of input a batch"):
        ModelSpec("huge", None, max_batch_size=10**6, input_shape=(3, 64, 64))


@pytest.mark.parametrize("name", [["a"], {"a": 1}, 3, ""])
def test_a_model_name_that_is_not_a_string_is_invalid_config_not_type_error(name: Any) -> None:
    sched = aiosched.Scheduler(sim())
    with pytest.raises(aiosched.InvalidConfig, match="model name"):
        sched.register(name)


@pytest.mark.sim
async def test_an_infinite_deadline_is_refused_per_call_and_as_a_default() -> None:
    async with aiosched.Scheduler(sim()) as sched:
        sched.register("m", warmup=False)
        for bad in (math.inf, -math.inf):
            with pytest.raises(aiosched.InvalidInput, match="finite") as exc:
                await sched.infer("m", 0, deadline=bad)
            _one_line(exc)
            with pytest.raises(aiosched.InvalidInput, match="finite"):
                await sched.infer("m", 0, deadline_at=bad)
        with pytest.raises(aiosched.InvalidConfig, match="finite"):
            sched.register("n", deadline=math.inf)
        assert await sched.infer("m", 7, deadline=1e9) == 7  # large and finite is fine
        assert sched.snapshot().models["m"].submitted == 1


@pytest.mark.parametrize("lanes", [0, True, 2.0, MAX_LANES + 1, 1000])
def test_lane_counts_out_of_range_are_refused(lanes: Any) -> None:
    for backend in ("sim", "cuda"):
        with pytest.raises(aiosched.InvalidConfig, match="lanes must be an int") as exc:
            aiosched.Scheduler(backend, lanes=lanes)
        _one_line(exc)
    with pytest.raises(aiosched.InvalidConfig):
        aiosched.Scheduler("cpu", lanes=lanes)
    SimBackend(lanes=MAX_LANES)


def test_the_cpu_backend_refuses_more_lanes_than_cores() -> None:
    cores = usable_cores()
    with pytest.raises(aiosched.InvalidConfig, match=f"must be <= {cores}") as exc:
        aiosched.Scheduler("cpu", lanes=cores + 1)
    assert "core" in _one_line(exc)
    with pytest.raises(aiosched.InvalidConfig, match="core"):
        aiosched.Scheduler("cpu", lanes=1000)  # the issue's: 1000 threads on 2 cores
    with pytest.raises(aiosched.InvalidConfig, match="threads_per_lane must be an int"):
        CpuBackend(lanes=1, threads_per_lane=True)
    backend = CpuBackend(lanes=cores)
    assert backend.lanes * backend.threads_per_lane <= cores  # the default share
    assert CpuBackend(lanes=1, threads_per_lane=cores + 1).threads_per_lane == cores + 1
    default = make_backend("cpu")
    assert default.lanes == min(2, cores)


def test_scheduler_settings_are_checked_for_type() -> None:
    for bad in (True, 1.5, -1):
        with pytest.raises(aiosched.InvalidConfig, match="warmup_repeats"):
            aiosched.Scheduler(sim(), warmup_repeats=bad)


def test_a_sample_shape_is_a_tuple_whatever_sequence_it_was_given_as() -> None:
    sched = aiosched.Scheduler(sim())
    spec = sched.register("m", input_shape=torch.Size([2, 3]), warmup=False)
    assert spec.input_shape == (2, 3) and type(spec.input_shape) is tuple
    assert sched.register("n", input_shape=[4], warmup=False).input_shape == (4,)
