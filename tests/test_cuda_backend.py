"""The cuda backend: the parts that need no GPU run everywhere; the rest are marked ``cuda``.

Without a GPU this covers the graph cache's keys and fallback (with an
injected capture function), the staging buffers, the OOM translation,
backend selection and the error a GPU-less start gives. With one, the
scheduler runs real models on CUDA streams, with and without graphs.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch

import aiosched
from aiosched.backends import BACKENDS, make_backend
from aiosched.backends._graphs import GraphCache, graph_key
from aiosched.backends._transfer import StagingBuffers, map_tensors, to_host
from aiosched.backends.base import Completion
from aiosched.backends.cpu import CpuBackend
from aiosched.backends.cuda import CudaBackend, DeviceOutOfMemory, guard_oom
from aiosched.clock import PerfClock
from aiosched.errors import InvalidConfig
from aiosched.models import tiny_cnn, tiny_mlp
from aiosched.spec import ModelSpec

HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")


# -- graph cache (no GPU) -------------------------------------------------


class _Capture:
    """A capture function that records its calls and fails for the batch sizes it is told to."""

    def __init__(self, fail_sizes: tuple[int, ...] = ()) -> None:
        self.calls: list[int] = []
        self.fail_sizes = fail_sizes

    def __call__(self, model: Callable[[Any], Any], example: Any) -> Callable[[Any], Any]:
        n = len(example)
        self.calls.append(n)
        if n in self.fail_sizes:
            raise RuntimeError("operation not permitted when stream is capturing")
        copy_no = len(self.calls)
        return lambda batch: ("graph", copy_no, model(batch))


def _samples(
    n: int, shape: tuple[int, ...] = (3,), dtype: torch.dtype = torch.float32
) -> list[Any]:
    return [torch.zeros(shape, dtype=dtype) for _ in range(n)]


def test_graph_keys_separate_model_size_shape_and_dtype() -> None:
    base = graph_key("m", _samples(4))
    assert base == ("m", 4, (3,), torch.float32)
    assert graph_key("m", _samples(4)) == base
    others = [
        graph_key("other", _samples(4)),
        graph_key("m", _samples(2)),
        graph_key("m", _samples(4, shape=(5,))),
        graph_key("m", _samples(4, dtype=torch.float16)),
    ]
    assert base not in others and len(set(others)) == len(others)
    assert graph_key("m", [1.0, 2.0]) is None  # no tensors, no graph


def test_a_key_is_captured_once_with_one_runner_per_lane() -> None:
    capture = _Capture()
    cache = GraphCache(lanes=2, capture=capture)
    key = graph_key("m", _samples(4))
    assert key is not None and not cache.known(key)
    assert cache.runner(key, 0) is None
    assert cache.capture(key, lambda b: "out", lambda: _samples(4))
    assert capture.calls == [4, 4]  # one copy per lane: replays on two lanes must not share buffers
    assert cache.capture(key, lambda b: "out", lambda: _samples(4))  # known: nothing captured
    assert capture.calls == [4, 4]
    r0, r1 = cache.runner(key, 0), cache.runner(key, 1)
    assert r0 is not None and r1 is not None and r0 is not r1
    assert r0("x") == ("graph", 1, "out") and r1("x") == ("graph", 2, "out")
    assert cache.captured == (key,) and not cache.failed


def test_a_failed_capture_runs_eagerly_and_is_never_retried() -> None:
    capture = _Capture(fail_sizes=(2,))
    cache = GraphCache(lanes=2, capture=capture)
    bad = graph_key("m", _samples(2))
    good = graph_key("m", _samples(4))
    assert bad is not None and good is not None
    assert not cache.capture(bad, lambda b: b, lambda: _samples(2))
    assert cache.known(bad) and cache.runner(bad, 0) is None and cache.runner(bad, 1) is None
    assert "capturing" in cache.failed[bad]
    for _ in range(3):
        assert not cache.capture(bad, lambda b: b, lambda: _samples(2))
    assert capture.calls == [2]  # the failure is remembered
    assert cache.capture(good, lambda b: b, lambda: _samples(4))  # other keys are unaffected
    assert cache.runner(good, 1) is not None
    cache.clear()
    assert not cache.known(good) and not cache.known(bad)


def test_a_failing_example_counts_as_a_failed_capture() -> None:
    capture = _Capture()
    cache = GraphCache(lanes=1, capture=capture)
    key = graph_key("m", _samples(1))
    assert key is not None

    def no_example() -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert not cache.capture(key, lambda b: b, no_example)
    assert capture.calls == [] and "OutOfMemoryError" in cache.failed[key]


def test_concurrent_lanes_capture_a_key_once() -> None:
    started = threading.Barrier(4)
    capture = _Capture()
    cache = GraphCache(lanes=1, capture=capture)
    key = graph_key("m", _samples(8))
    assert key is not None

    def lane() -> None:
        started.wait()
        cache.capture(key, lambda b: b, lambda: _samples(8))

    threads = [threading.Thread(target=lane) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert capture.calls == [8]


# -- host buffers and OOM (no GPU) ---------------------------------------


def test_staging_reuses_one_buffer_per_sample_shape_and_grows_by_powers_of_two() -> None:
    allocations: list[tuple[int, ...]] = []

    def allocate(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        allocations.append(shape)
        return torch.empty(shape, dtype=dtype)

    staging = StagingBuffers(allocate=allocate)
    xs = [torch.full((2,), float(i)) for i in range(5)]
    a = staging.stack(xs[:3])
    assert torch.equal(a, torch.stack(xs[:3])) and allocations == [(4, 2)]
    b = staging.stack(xs[:2])
    assert torch.equal(b, torch.stack(xs[:2]))
    assert b.data_ptr() == a.data_ptr() and allocations == [(4, 2)]  # reused
    c = staging.stack(xs)
    assert torch.equal(c, torch.stack(xs)) and allocations == [(4, 2), (8, 2)]
    staging.stack([torch.zeros(3, dtype=torch.int64)])  # another sample shape: its own buffer
    assert allocations[-1] == (1, 3) and staging.nbytes == 8 * 2 * 4 + 3 * 8


class _Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


def test_outputs_keep_their_structure_on_the_way_to_the_host() -> None:
    t = torch.ones(2)
    out = {"x": t, "y": (t, [t, "label"]), "z": _Pair(t, t), "n": 3}
    mapped = map_tensors(lambda x: x + 1, out)
    assert torch.equal(mapped["x"], t + 1) and mapped["n"] == 3
    assert isinstance(mapped["z"], _Pair) and torch.equal(mapped["z"].b, t + 1)
    assert mapped["y"][1][1] == "label" and isinstance(mapped["y"][1], list)
    assert to_host(t) is t  # host tensors are not copied


def test_cuda_oom_becomes_device_out_of_memory_after_draining() -> None:
    drained: list[bool] = []

    def oom() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    with pytest.raises(DeviceOutOfMemory) as info:
        guard_oom(oom, lambda: drained.append(True), 8, "cuda:0")
    err = info.value
    assert err.batch_size == 8 and err.device == "cuda:0"
    assert "Tried to allocate 2.00 GiB" in str(err) and "more" not in str(err)
    # Not chained: the OOM's traceback holds the batch's device tensors.
    assert err.__cause__ is None and err.__context__ is None
    assert drained == [True]


def test_other_errors_pass_through_after_draining() -> None:
    drained: list[bool] = []

    def broken() -> None:
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        guard_oom(broken, lambda: drained.append(True), 2, "cuda:0")
    assert drained == [True]
    assert guard_oom(lambda: 7, lambda: drained.append(False), 1, "cuda:0") == 7
    assert drained == [True]


# -- selection and configuration (no GPU) ---------------------------------


def test_auto_picks_cuda_only_where_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"cuda", "auto"} <= set(BACKENDS)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backend = make_backend("auto", lanes=3)
    assert isinstance(backend, CudaBackend) and backend.lanes == 3  # nothing touched CUDA yet
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    backend = make_backend("auto")
    assert isinstance(backend, CpuBackend) and backend.lanes == 2
    assert isinstance(make_backend("cuda"), CudaBackend)


def test_bad_settings_fail_at_construction() -> None:
    for kwargs in ({"lanes": 0}, {"device": "cpu"}, {"device": "nonsense"}, {"nvml_interval": 0}):
        with pytest.raises(InvalidConfig):
            CudaBackend(**kwargs)
    assert str(CudaBackend(device=1).device) == "cuda:1"


def test_start_without_a_gpu_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    async def main() -> None:
        backend = CudaBackend()
        with pytest.raises(InvalidConfig, match=r"needs a CUDA GPU.*backend='cpu'"):
            await backend.start(PerfClock())
        await backend.aclose()  # nothing was started; still safe
        with pytest.raises(InvalidConfig, match="needs a CUDA GPU"):
            async with aiosched.Scheduler("cuda"):
                pass

    asyncio.run(main())


# -- on a GPU ---------------------------------------------------------------


async def _submit(backend: CudaBackend, spec: ModelSpec, inputs: list[Any]) -> Completion:
    done: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
    backend.submit(0, spec, inputs, done.set_result)
    return await done


@pytest.mark.cuda
@needs_gpu
def test_scheduler_results_match_the_model_on_the_host() -> None:
    model = tiny_mlp()
    reference = copy.deepcopy(model)

    async def main() -> None:
        async with aiosched.Scheduler("cuda", lanes=2) as sched:
            sched.register("mlp", model, max_batch_size=8, input_shape=(16,), dtype=torch.float32)
            await sched.ready()
            assert next(model.parameters()).is_cuda
            xs = [torch.randn(16) for _ in range(64)]
            ys = await asyncio.gather(*(sched.infer("mlp", x, deadline=5.0) for x in xs))
            with torch.inference_mode():
                expected = reference(torch.stack(xs))
            for y, e in zip(ys, expected, strict=True):
                assert y.device.type == "cpu"
                torch.testing.assert_close(y, e, rtol=1e-4, atol=1e-5)
            snap = sched.snapshot()
            assert snap.models["mlp"].completed == 64 and snap.backend == "cuda"
            device = snap.extra["device"]
            assert device["lane0_device_ms"] > 0
            backend = sched.backend
            assert isinstance(backend, CudaBackend)
            if backend.sampler is not None:
                assert backend.sampler.wait_for(1, timeout=5.0)
                assert "sm_util_pct" in backend.telemetry()

    asyncio.run(main())


@pytest.mark.cuda
@needs_gpu
def test_graphs_cover_the_warm_up_sizes_and_match_eager() -> None:
    model = tiny_cnn()
    reference = copy.deepcopy(model)
    backend = CudaBackend(lanes=2, graphs=True)

    async def main() -> None:
        async with aiosched.Scheduler(backend) as sched:
            sched.register("cnn", model, max_batch_size=8, input_shape=(3, 32, 32))
            await sched.ready()
            assert backend.graphs is not None
            sizes = {key[1] for key in backend.graphs.captured}
            assert {1, 2, 4, 8} <= sizes and not backend.graphs.failed
            xs = [torch.randn(3, 32, 32) for _ in range(40)]
            ys = await asyncio.gather(*(sched.infer("cnn", x, deadline=5.0) for x in xs))
            with torch.inference_mode():
                expected = reference(torch.stack(xs))
            # cuDNN convolutions may use TF32 on the GPU: close, not equal. A replay on the
            # wrong buffers would be wrong by far more.
            for y, e in zip(ys, expected, strict=True):
                torch.testing.assert_close(y, e, rtol=1e-2, atol=1e-3)
            assert sched.snapshot().extra["device"]["graphs_captured"] >= 4

    asyncio.run(main())


@pytest.mark.cuda
@needs_gpu
def test_a_model_that_cannot_be_captured_runs_eagerly() -> None:
    def syncing(batch: torch.Tensor) -> torch.Tensor:
        scale = float(batch.abs().max().item()) + 1.0  # a host sync: illegal while capturing
        return batch / scale

    backend = CudaBackend(lanes=1, graphs=True, nvml=False)

    async def main() -> None:
        await backend.start(PerfClock())
        spec = ModelSpec("s", syncing, input_shape=(4,), dtype=torch.float32)
        backend.load(spec)
        try:
            xs = [torch.full((4,), 3.0), torch.full((4,), 1.0)]
            for _ in range(2):
                c = await _submit(backend, spec, xs)
                assert c.error is None and c.outputs is not None
                torch.testing.assert_close(c.outputs[0], torch.full((4,), 0.75))
            assert backend.graphs is not None and len(backend.graphs.failed) == 1
        finally:
            await backend.aclose()

    asyncio.run(main())


@pytest.mark.cuda
@needs_gpu
def test_inputs_already_on_the_device_are_accepted() -> None:
    model = tiny_mlp()
    reference = copy.deepcopy(model)

    async def main() -> None:
        async with aiosched.Scheduler("cuda", lanes=2) as sched:
            sched.register("mlp", model, max_batch_size=4, input_shape=(16,))
            await sched.ready()
            xs = [torch.randn(16, device="cuda") for _ in range(8)]
            ys = await asyncio.gather(*(sched.infer("mlp", x, deadline=5.0) for x in xs))
            with torch.inference_mode():
                expected = reference(torch.stack(xs).cpu())
            for y, e in zip(ys, expected, strict=True):
                torch.testing.assert_close(y, e, rtol=1e-4, atol=1e-5)

    asyncio.run(main())


@pytest.mark.cuda
@needs_gpu
def test_out_of_memory_is_reported_distinctly_and_the_lane_recovers() -> None:
    def greedy(batch: torch.Tensor) -> torch.Tensor:
        if bool((batch > 0).any()):
            free, _ = torch.cuda.mem_get_info()
            torch.empty(free * 4, dtype=torch.uint8, device=batch.device)
        return batch * 2

    backend = CudaBackend(lanes=1, nvml=False)

    async def main() -> None:
        await backend.start(PerfClock())
        spec = ModelSpec("g", greedy, input_shape=(2,), dtype=torch.float32)
        backend.load(spec)
        try:
            c = await _submit(backend, spec, [torch.ones(2), torch.zeros(2)])
            assert c.outputs is None and isinstance(c.error, DeviceOutOfMemory)
            assert c.error.batch_size == 2
            c = await _submit(backend, spec, [torch.zeros(2)])
            assert c.error is None and c.outputs is not None
        finally:
            await backend.aclose()

        async with aiosched.Scheduler(CudaBackend(lanes=1, nvml=False)) as sched:
            sched.register("g", greedy, input_shape=(2,), dtype=torch.float32, warmup=False)
            with pytest.raises(aiosched.ModelError) as info:
                await sched.infer("g", torch.ones(2), deadline=5.0)
            assert isinstance(info.value.__cause__, DeviceOutOfMemory)

    asyncio.run(main())
