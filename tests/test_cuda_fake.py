"""The cuda backend's lane pipeline on a fake CUDA runtime, so its logic runs on every machine.

Streams, events and the device are replaced by stand-ins that run on the
host: what is left is the backend's own code (staging, the order of
records and synchronisations, graph capture and replay per lane, OOM
handling, timing and splitting) driven by the real scheduler. The real
CUDA calls are covered by the ``cuda``-marked tests on a GPU machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import aiosched
from aiosched.backends import cuda as cuda_module
from aiosched.backends.cuda import CudaBackend, DeviceOutOfMemory
from aiosched.models import tiny_mlp


class FakeStream:
    def __init__(self, device: Any = None) -> None:
        self.log: list[str] = []
        self.time = 0.0  # the stream's own clock: lanes record concurrently

    def synchronize(self) -> None:
        self.log.append("sync")

    def wait_stream(self, other: Any) -> None:
        self.log.append("wait")


class FakeEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.at: float | None = None
        self.stream: FakeStream | None = None

    def record(self, stream: FakeStream) -> None:
        stream.time += 0.004  # each record is 4 ms after the stream's last
        self.at = stream.time
        self.stream = stream
        stream.log.append("record")

    def synchronize(self) -> None:
        assert self.stream is not None
        self.stream.log.append("event-sync")

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.at is not None and end.at is not None
        return (end.at - self.at) * 1e3


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Patch CUDA away; yields the list of batch sizes the fake graph capture saw."""
    current: list[FakeStream] = []

    @contextlib.contextmanager
    def stream(s: FakeStream) -> Iterator[None]:
        current.append(s)
        try:
            yield
        finally:
            current.pop()

    def open_device(self: CudaBackend) -> tuple[int, str]:
        self.device = torch.device("cpu")  # the host stands in for the device
        return 0, ""

    captured: list[int] = []

    def capture(model: Callable[[Any], Any], example: torch.Tensor) -> Callable[[Any], Any]:
        assert current, "capture must run on the lane's stream"
        assert torch.is_inference_mode_enabled()
        captured.append(len(example))
        static_in = example.clone()

        def replay(batch: torch.Tensor) -> Any:
            static_in.copy_(batch)
            return model(static_in)

        return replay

    monkeypatch.setattr(CudaBackend, "_open_device", open_device)
    monkeypatch.setattr(cuda_module, "capture_cuda_graph", capture)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "default_stream", lambda device=None: FakeStream())
    yield captured


def test_batches_run_through_stream_events_and_staging(fake_cuda: list[int]) -> None:
    model = tiny_mlp()
    backend = CudaBackend(lanes=2, pinned=False, nvml=False)

    async def main() -> None:
        async with aiosched.Scheduler(backend) as sched:
            sched.register("mlp", model, max_batch_size=4, input_shape=(16,), dtype=torch.float32)
            await sched.ready()
            xs = [torch.randn(16) for _ in range(12)]
            ys = await asyncio.gather(*(sched.infer("mlp", x, deadline=5.0) for x in xs))
            with torch.inference_mode():
                expected = model(torch.stack(xs))
            for y, e in zip(ys, expected, strict=True):
                torch.testing.assert_close(y, e)
            assert sched.snapshot().extra["device"]["lane0_device_ms"] == pytest.approx(4.0)

    asyncio.run(main())
    lane = backend._lanes[0]
    assert isinstance(lane.stream, FakeStream)
    # Per batch: the begin and end events on the lane's stream, then a wait on the end event.
    assert lane.stream.log[:3] == ["record", "record", "event-sync"]
    assert lane.staging.nbytes > 0  # inputs were stacked into the lane's staging buffer
    assert backend.device_times[0] == pytest.approx(0.004)
    assert fake_cuda == []  # graphs are off by default


def test_graphs_are_captured_per_lane_at_warm_up_and_replayed(fake_cuda: list[int]) -> None:
    net = tiny_mlp()

    def model(batch: torch.Tensor) -> Any:
        return net(batch)

    backend = CudaBackend(lanes=2, graphs=True, pinned=False, nvml=False)

    async def main() -> None:
        async with aiosched.Scheduler(backend) as sched:
            sched.register("m", model, max_batch_size=4, input_shape=(16,), dtype=torch.float32)
            await sched.ready()
            assert backend.graphs is not None
            assert sorted(key[1] for key in backend.graphs.captured) == [1, 2, 4]
            assert sorted(fake_cuda) == [1, 1, 2, 2, 4, 4]  # one copy per lane and size
            x = torch.randn(16)
            y = await sched.infer("m", x, deadline=5.0)
            with torch.inference_mode():
                torch.testing.assert_close(y, net(x[None])[0])
            assert sched.snapshot().extra["device"]["graphs_captured"] == 3.0

    asyncio.run(main())
    assert backend.graphs is not None and backend.graphs.captured == ()  # released at close


def test_a_batch_that_triggers_a_capture_starts_after_it(fake_cuda: list[int]) -> None:
    ticks = iter(range(100))

    class Clock:
        def now(self) -> float:
            return float(next(ticks))

    backend = CudaBackend(lanes=1, graphs=True, pinned=False, nvml=False)
    spec = aiosched.ModelSpec("m", lambda b: b + 1, input_shape=(2,), dtype=torch.float32)

    def slow_capture(model: Callable[[Any], Any], example: Any) -> Callable[[Any], Any]:
        for _ in range(5):
            backend.clock.now()  # capture takes five ticks
        return model

    async def main() -> None:
        await backend.start(Clock())
        backend.load(spec)
        assert backend.graphs is not None
        backend.graphs._capture = slow_capture
        try:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            backend.submit(0, spec, [torch.zeros(2)], done.set_result)
            c = await done
        finally:
            await backend.aclose()
        assert c.error is None and c.end - c.start == 1.0  # the capture's ticks are not counted

    asyncio.run(main())


def test_out_of_memory_on_a_lane_is_reported_as_device_out_of_memory(
    fake_cuda: list[int],
) -> None:
    def greedy(batch: torch.Tensor) -> torch.Tensor:
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return batch * 2

    async def main() -> None:
        async with aiosched.Scheduler(CudaBackend(lanes=1, pinned=False, nvml=False)) as sched:
            sched.register("g", greedy, max_batch_size=4, input_shape=(2,), warmup=False)
            xs = [torch.full((2,), float(i)) for i in range(3)]
            # The batch of three runs out of memory; each request then reruns alone and fits.
            ys = await asyncio.gather(*(sched.infer("g", x, deadline=5.0) for x in xs))
            for x, y in zip(xs, ys, strict=True):
                assert torch.equal(y, x * 2)
            failed = [e for e in sched.timeline if not e.ok]
            assert failed and failed[0].batch_size > 1

    asyncio.run(main())

    backend = CudaBackend(lanes=1, pinned=False, nvml=False)
    spec = aiosched.ModelSpec("g", greedy, input_shape=(2,))

    async def direct() -> Any:
        await backend.start(aiosched.PerfClock())
        backend.load(spec)
        try:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            backend.submit(0, spec, [torch.zeros(2)] * 2, done.set_result)
            return await done
        finally:
            await backend.aclose()

    c = asyncio.run(direct())
    assert isinstance(c.error, DeviceOutOfMemory) and c.error.batch_size == 2
    stream = backend._lanes[0].stream
    assert (
        isinstance(stream, FakeStream) and "sync" in stream.log
    )  # drained before the staging buffer is reused


def test_models_loaded_before_start_move_at_start(fake_cuda: list[int]) -> None:
    model = tiny_mlp().train()
    backend = CudaBackend(lanes=1, nvml=False)
    backend.load(aiosched.ModelSpec("m", model))
    assert model.training  # nothing happens before start: there may be no GPU at all

    async def main() -> None:
        await backend.start(aiosched.PerfClock())
        await backend.aclose()

    asyncio.run(main())
    assert not model.training


def test_a_list_of_batched_heads_comes_back_one_row_of_each_per_caller(
    fake_cuda: list[int],
) -> None:
    def heads(batch: torch.Tensor) -> list[torch.Tensor]:
        return [batch * 10, batch * 100]

    backend = CudaBackend(lanes=1, pinned=False, nvml=False)

    async def main() -> None:
        async with aiosched.Scheduler(backend, policy="fifo", best_effort=True) as sched:
            sched.register("h", heads, max_batch_size=2, input_shape=(1,), warmup=False)
            a, b = await asyncio.gather(
                sched.infer("h", torch.tensor([1.0]), deadline=5.0),
                sched.infer("h", torch.tensor([2.0]), deadline=5.0),
            )
            assert [h.tolist() for h in a] == [[10.0], [100.0]]
            assert [h.tolist() for h in b] == [[20.0], [200.0]]
            assert dict(sched.snapshot().models["h"].batch_sizes) == {2: 1}

    asyncio.run(main())


def test_a_base_exception_escaping_a_cuda_lane_job_answers_its_batch(fake_cuda: list[int]) -> None:
    # Graph capture runs the model outside run_batch's error capture: a sys.exit() there
    # ended the lane thread and stranded the batch.
    backend = CudaBackend(lanes=1, graphs=True, pinned=False, nvml=False)
    spec = aiosched.ModelSpec("m", lambda b: b + 1, input_shape=(2,), dtype=torch.float32)
    calls = [0]

    def exiting_capture(model: Callable[[Any], Any], example: Any) -> Callable[[Any], Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise SystemExit(1)
        return model

    async def main() -> tuple[Any, Any]:
        await backend.start(aiosched.PerfClock())
        backend.load(spec)
        assert backend.graphs is not None
        backend.graphs._capture = exiting_capture
        loop = asyncio.get_running_loop()
        try:
            first: asyncio.Future[Any] = loop.create_future()
            second: asyncio.Future[Any] = loop.create_future()
            backend.submit(0, spec, [torch.zeros(2)], first.set_result)
            backend.submit(0, spec, [torch.zeros(2)], second.set_result)
            async with asyncio.timeout(60):  # a guard against the old hang only
                return await first, await second
        finally:
            await backend.aclose()

    first, second = asyncio.run(main())
    assert isinstance(first.error, SystemExit)
    assert second.error is None and second.outputs[0].tolist() == [1.0, 1.0]


def test_a_failed_start_stops_the_cuda_lanes_it_had_started(
    fake_cuda: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cuda_module.LaneThread

    def second_fails(index: int, *args: Any, **kwargs: Any) -> Any:
        if index == 1:
            raise RuntimeError("can't start new thread")
        return real(index, *args, **kwargs)

    monkeypatch.setattr(cuda_module, "LaneThread", second_fails)
    backend = CudaBackend(lanes=2, pinned=False, nvml=False)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="new thread"):
            await backend.start(aiosched.PerfClock())

    asyncio.run(main())
    assert not [t.name for t in threading.enumerate() if t.name.startswith("aiosched-cuda")]
