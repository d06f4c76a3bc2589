"""The cuda backend: torch models on CUDA streams, one stream and one thread per lane.

Each lane is a :class:`~aiosched.backends._lanes.LaneThread` (shared with the
cpu backend) that owns a CUDA stream, so that Python-side kernel launches
never run on the event loop and batches on different lanes run on the GPU
at once. A batch on a lane: stack the samples into the lane's pinned
staging buffer, copy it to the device asynchronously on the lane's stream,
run the model there (or replay its CUDA graph), queue the copy of the
output back into pinned host memory, record an event and wait for it on the
lane thread; then split the output and hand the completion to the loop.

Two times per batch: host timestamps on the scheduler's clock around the
whole batch (what the timeline and predictors use, so that overlaps between
lanes are exact on one clock) and the device time between two CUDA events
on the lane's stream (kept per lane and shown in :meth:`CudaBackend.telemetry`).

Outputs always come back as CPU tensors, whether the inputs came from the
host (the normal case) or were already on the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import torch

from ..clock import Clock
from ..errors import AioschedError, InvalidConfig
from ..spec import ModelSpec
from ..telemetry.nvml import NvmlSampler
from ._graphs import GraphCache, GraphKey, capture_cuda_graph, graph_key
from ._lanes import LaneThread
from ._transfer import StagingBuffers, to_host
from .base import Backend, Completion, DoneCallback, LaneFailure
from .cpu import run_batch

__all__ = ["CudaBackend", "DeviceOutOfMemory", "guard_oom"]

T = TypeVar("T")


class DeviceOutOfMemory(AioschedError):
    """The device ran out of memory running a batch; its cached memory was released.

    A smaller batch may fit: the scheduler reruns a failed batch's requests
    one by one. ``batch_size`` is the size that did not fit.
    """

    def __init__(self, message: str, batch_size: int, device: str) -> None:
        super().__init__(message)
        self.batch_size = batch_size
        self.device = device


def guard_oom(run: Callable[[], T], drain: Callable[[], None], batch_size: int, device: str) -> T:
    """``run()``, turning torch's CUDA OOM into :class:`DeviceOutOfMemory` after freeing the cache.

    ``drain`` waits for the lane's queued copies on any error, so that the
    staging buffer is not refilled under a copy still reading it.
    """
    try:
        return run()
    except torch.cuda.OutOfMemoryError as exc:
        message = str(exc).split("\n", 1)[0]
    except BaseException:
        drain()
        raise
    # Out here the OOM and its traceback are gone, and with them the frames holding the
    # batch's device tensors: only now can empty_cache hand their memory back.
    drain()
    torch.cuda.empty_cache()
    raise DeviceOutOfMemory(
        f"{device}: out of memory on a batch of {batch_size}: {message}", batch_size, device
    )


class _Lane:
    """One lane's CUDA state; every method but the constructor runs on the lane's thread."""

    def __init__(self, backend: CudaBackend, index: int) -> None:
        self.index = index
        self.device = backend.device
        self.stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        self.begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        self.end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        self.pinned = backend.pinned
        self.staging = StagingBuffers(pinned=backend.pinned)
        self.graphs = backend.graphs
        self.clock = backend.clock
        self.device_s = math.nan
        self.broken: BaseException | None = None

    def setup(self) -> None:
        # The current device is per thread in CUDA; a setup error must not kill the thread
        # (its queued jobs would never answer), so the lane reports it on each batch instead.
        try:
            torch.cuda.set_device(self.device)
        except Exception as exc:
            self.broken = exc

    def run(self, name: str, model: Callable[[Any], Any], inputs: Sequence[Any]) -> Completion:
        if self.broken is not None:
            now = self.clock.now()
            return Completion(None, LaneFailure(f"cuda lane {self.index}: {self.broken}"), now, now)
        graphs = self.graphs
        key = None if graphs is None else graph_key(name, inputs)
        if key is not None and graphs is not None and not graphs.known(key):
            # Before run_batch takes its start time: a capture is set-up, not the batch's
            # latency, and must not teach the predictor that this size is slow.
            with torch.inference_mode(), torch.cuda.stream(self.stream):
                graphs.capture(key, model, partial(self._to_device, inputs))
            self._drain()
        return run_batch(model, inputs, self.clock, partial(self._execute, key))

    def _execute(
        self, key: GraphKey | None, model: Callable[[Any], Any], inputs: Sequence[Any]
    ) -> Any:
        run = partial(self._round_trip, key, model, inputs)
        return guard_oom(run, self._drain, len(inputs), str(self.device))

    def _round_trip(
        self, key: GraphKey | None, model: Callable[[Any], Any], inputs: Sequence[Any]
    ) -> Any:
        stream = self.stream
        runner = None if key is None or self.graphs is None else self.graphs.runner(key, self.index)
        with torch.cuda.stream(stream):
            self.begin.record(stream)
            batch = self._to_device(inputs)
            out = model(batch) if runner is None else runner(batch)
            host = to_host(out, self.pinned)
            self.end.record(stream)
        self.end.synchronize()
        self.device_s = self.begin.elapsed_time(self.end) / 1e3
        return host

    def _to_device(self, inputs: Sequence[Any]) -> Any:
        if not isinstance(inputs[0], torch.Tensor):
            return list(inputs)  # a model on other inputs gets the samples as they are
        if any(t.is_cuda for t in inputs):
            # Device inputs were made on some other stream (the default one, as a rule):
            # order this lane's stream after it before reading them.
            self.stream.wait_stream(torch.cuda.default_stream(self.device))
            return torch.stack([t.to(self.device, non_blocking=True) for t in inputs])
        return self.staging.stack(inputs).to(self.device, non_blocking=True)

    def _drain(self) -> None:
        # After an error the stream may be broken too; what matters is not to leave a copy
        # in flight from the staging buffer.
        with contextlib.suppress(Exception):
            self.stream.synchronize()


class CudaBackend(Backend):
    """Torch on one CUDA device, one stream (and one lane thread) per lane.

    ``device`` is a CUDA device (``"cuda"`` means the current one).
    ``graphs=True`` captures a CUDA graph per (model, batch shape) on first
    use and replays it (eager where capture fails). ``pinned`` stages inputs
    in page-locked memory, for truly asynchronous copies. ``nvml`` samples
    the GPU's counters every ``nvml_interval`` seconds where NVML is present.
    Nothing touches CUDA before :meth:`start`, which fails with
    :class:`InvalidConfig` where there is no usable GPU.
    """

    name = "cuda"

    def __init__(
        self,
        lanes: int = 2,
        device: str | int | torch.device = "cuda",
        graphs: bool = False,
        pinned: bool = True,
        nvml: bool = True,
        nvml_interval: float = 0.1,
    ) -> None:
        super().__init__(lanes)
        try:
            self.device = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidConfig(f"device must name a CUDA device, got {device!r}") from exc
        if self.device.type != "cuda":
            raise InvalidConfig(f"the cuda backend runs on a CUDA device, not {self.device}")
        if not nvml_interval > 0:
            raise InvalidConfig(f"nvml_interval must be > 0 seconds, got {nvml_interval!r}")
        self.use_graphs = bool(graphs)
        self.pinned = bool(pinned)
        self.use_nvml = bool(nvml)
        self.nvml_interval = float(nvml_interval)
        self.graphs: GraphCache | None = None
        self.sampler: NvmlSampler | None = None
        self._clock: Clock | None = None
        self._lanes: list[_Lane] = []
        self._threads: list[LaneThread] = []
        self._pending: list[ModelSpec] = []
        self._device_name = ""

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            raise RuntimeError("CudaBackend used before start")
        return self._clock

    async def start(self, clock: Clock) -> None:
        loop = asyncio.get_running_loop()
        if self.device.index is None and torch.cuda.is_initialized():
            # "cuda" means this thread's current device (the worker below has its own).
            self.device = torch.device("cuda", torch.cuda.current_device())
        # Creating the CUDA context takes up to seconds: not on the event loop.
        index, uuid = await asyncio.to_thread(self._open_device)
        self._clock = clock
        # Models registered before start move now, before any thread exists to leak if one
        # does not fit.
        pending, self._pending = self._pending, []
        for spec in pending:
            self.load(spec)
        if self.use_graphs:
            self.graphs = GraphCache(self.lanes, capture_cuda_graph)
        self._lanes = [_Lane(self, i) for i in range(self.lanes)]
        fault = partial(Completion.failed, clock=clock)
        try:
            for i, lane in enumerate(self._lanes):
                self._threads.append(
                    LaneThread(i, loop, lane.setup, name="aiosched-cuda", fault=fault)
                )
            if self.use_nvml:
                self.sampler = await asyncio.to_thread(self._start_sampler, index, uuid)
        except BaseException:
            await self.aclose()  # the lanes already started would outlive a failed start
            raise

    def _open_device(self) -> tuple[int, str]:
        """Check the device and initialise CUDA on it; returns its index and UUID ("" if none)."""
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA (a cpu-only build)"
            raise InvalidConfig(
                f"the cuda backend needs a CUDA GPU, and torch sees none (torch {torch.__version__}"
                f", built for {built}); use backend='cpu', or 'auto' to take a GPU when present"
            )
        count = torch.cuda.device_count()
        index = self.device.index or 0
        self.device = torch.device("cuda", index)
        if index >= count:
            raise InvalidConfig(f"{self.device} does not exist: torch sees {count} CUDA device(s)")
        torch.cuda.set_device(self.device)
        torch.zeros(1, device=self.device)  # creates the context here, not on the loop's thread
        props = torch.cuda.get_device_properties(index)
        self._device_name = props.name
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid and not uuid.startswith(("GPU-", "MIG-")):
            uuid = f"GPU-{uuid}"  # NVML's spelling
        return index, uuid

    def _start_sampler(self, index: int, uuid: str) -> NvmlSampler | None:
        # By UUID first: NVML numbers devices physically, torch after CUDA_VISIBLE_DEVICES.
        # The index is right whenever that variable is unset.
        for device in (uuid, index) if uuid else (index,):
            sampler = NvmlSampler(device, self.nvml_interval)
            if sampler.start():
                return sampler
        return None

    def load(self, spec: ModelSpec) -> None:
        model = spec.model
        if not callable(model):
            raise InvalidConfig(f"{spec.name}: the cuda backend needs a torch module or callable")
        if self._clock is None:
            self._pending.append(spec)  # moved to the device once start has found it
            return
        if isinstance(model, torch.nn.Module):
            # A no-op for a module already there (registered twice, say). The copy blocks
            # the loop for a moment: registration is set-up time, not request time.
            try:
                model.eval().to(self.device)
                # .to() copies on this thread's stream; the lanes read on theirs.
                torch.cuda.current_stream(self.device).synchronize()
            except torch.cuda.OutOfMemoryError as exc:
                raise InvalidConfig(f"{spec.name}: does not fit on {self.device}: {exc}") from None

    def unload(self, name: str) -> None:
        """Forget ``name``: its graphs (their static buffers are device memory) and, on each
        lane's thread after what it is running, the pinned staging buffers.

        The staging buffers are kept by sample shape, not by model: every lane drops
        them all and the models still here make theirs again on their next batch (one
        allocation per shape). The module itself is the caller's: it stays on the
        device as long as something else holds it.
        """
        self._pending = [spec for spec in self._pending if spec.name != name]
        if self.graphs is not None:
            self.graphs.forget(name)
        for lane, thread in zip(self._lanes, self._threads, strict=False):
            thread.call(lane.staging.clear)

    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        if not self._threads:
            raise RuntimeError("CudaBackend.submit before start")
        job = partial(self._lanes[lane].run, spec.name, spec.model, inputs)
        self._threads[lane].submit(job, on_done)

    def abandon_lane(self, lane: int) -> None:
        if 0 <= lane < len(self._threads):
            self._threads[lane].abandon()

    def close_nowait(self) -> None:
        for thread in self._threads:
            thread.stop_nowait()

    async def aclose(self) -> None:
        threads, self._threads = self._threads, []
        for thread in threads:
            await thread.stop()
        sampler, self.sampler = self.sampler, None
        if sampler is not None:
            await asyncio.to_thread(sampler.close)  # joins a thread that may be inside NVML
        if self.graphs is not None:
            self.graphs.clear()

    @property
    def device_times(self) -> tuple[float, ...]:
        """Each lane's last batch on the device, in seconds (CUDA events); NaN before its first."""
        return tuple(lane.device_s for lane in self._lanes)

    def telemetry(self) -> Mapping[str, float]:
        values: dict[str, float] = {}
        if self.sampler is not None:
            values.update(self.sampler.latest())
        for lane in self._lanes:
            if not math.isnan(lane.device_s):
                values[f"lane{lane.index}_device_ms"] = lane.device_s * 1e3
        if self.graphs is not None:
            values["graphs_captured"] = float(len(self.graphs.captured))
            values["graphs_failed"] = float(len(self.graphs.failed))
        return values

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "device": str(self.device),
            "device_name": self._device_name,
            "graphs": self.use_graphs,
            "pinned": self.pinned,
            "nvml": self.sampler is not None,
        }
