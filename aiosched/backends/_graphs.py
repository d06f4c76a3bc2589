"""CUDA graphs for the cuda backend: one capture per (model, batch shape), replayed per lane.

A captured graph replays a model's kernels with one launch, which takes the
Python and launch overhead out of small batches. It replays on fixed
buffers, so two lanes cannot share one graph: a replay would overwrite the
other's input and output mid-flight, and launches of one graph serialise
anyway. The cache therefore captures one copy per lane the first time a key
is seen, which is during the scheduler's warm-up for the sizes it warms up.

When a capture fails (a model that synchronises, allocates on the host or
branches on data cannot be captured), the key is remembered as failed and
runs eagerly from then on: capture is slow and drains the device, so it is
never retried on the hot path. The cache is independent of CUDA; the
capture function is injected, which keeps its rules testable without a GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["Capture", "GraphCache", "GraphKey", "Runner", "capture_cuda_graph", "graph_key"]

log = logging.getLogger("aiosched")

#: Replays a captured model on a batch (already on the device) and returns its output.
Runner = Callable[[Any], Any]
#: Captures ``model`` on an example batch and returns a :data:`Runner` for that shape.
Capture = Callable[[Callable[[Any], Any], Any], Runner]
#: (model name, batch size, sample shape, dtype)
GraphKey = tuple[str, int, tuple[int, ...], torch.dtype]

# Capture drains the whole device and must not interleave with another capture
# (two lanes, or two backends in one process); it happens only while warming up.
_CAPTURE_LOCK = threading.Lock()


def graph_key(model: str, inputs: Sequence[Any]) -> GraphKey | None:
    """The cache key of a batch: model, batch size, sample shape and dtype; None if not tensors."""
    first = inputs[0]
    if not isinstance(first, torch.Tensor):
        return None
    return (model, len(inputs), tuple(first.shape), first.dtype)


class GraphCache:
    """Captured runners per key, one per lane, and the keys whose capture failed."""

    def __init__(self, lanes: int, capture: Capture) -> None:
        self.lanes = lanes
        self._capture = capture
        self._runners: dict[GraphKey, tuple[Runner, ...]] = {}
        self._failed: dict[GraphKey, str] = {}
        self._lock = threading.Lock()

    def known(self, key: GraphKey) -> bool:
        """Whether ``key`` was tried already (captured or failed): then capture() is a no-op."""
        return key in self._runners or key in self._failed

    def capture(
        self, key: GraphKey, model: Callable[[Any], Any], example: Callable[[], Any]
    ) -> bool:
        """Capture ``model`` for ``key`` once per lane; ``example()`` makes the batch to capture on.

        Returns whether graphs exist for ``key``. Never raises: a failure is
        logged, remembered, and the key runs eagerly.
        """
        with self._lock:
            if self.known(key):
                return key in self._runners
            try:
                batch = example()
                runners = tuple(self._capture(model, batch) for _ in range(self.lanes))
            except Exception as exc:
                # Keep only the text: the traceback would pin the example's device memory.
                self._failed[key] = f"{type(exc).__name__}: {exc}"
                log.warning("aiosched: CUDA graph capture failed for %s; running eagerly", key)
                return False
            self._runners[key] = runners
            return True

    def runner(self, key: GraphKey, lane: int) -> Runner | None:
        """The lane's runner for ``key``, or None to run eagerly."""
        runners = self._runners.get(key)
        return None if runners is None else runners[lane]

    @property
    def captured(self) -> tuple[GraphKey, ...]:
        return tuple(self._runners)

    @property
    def failed(self) -> Mapping[GraphKey, str]:
        """Keys whose capture failed, with the error's text."""
        return MappingProxyType(dict(self._failed))

    def forget(self, model: str) -> None:
        """Drop ``model``'s graphs (and the device memory their buffers hold) and failures."""
        with self._lock:
            for table in (self._runners, self._failed):
                for key in [k for k in table if k[0] == model]:
                    del table[key]

    def clear(self) -> None:
        """Drop every graph (and the device memory its buffers hold) and every failure."""
        with self._lock:
            self._runners.clear()
            self._failed.clear()


def capture_cuda_graph(
    model: Callable[[Any], Any], example: torch.Tensor, warmup: int = 2
) -> Runner:
    """Capture ``model`` on the current stream with a static copy of ``example`` as its input.

    The eager warm-up runs first so that lazy initialisation and algorithm
    selection (cuDNN, cuBLAS workspaces) happen outside the capture. The
    capture is thread-local: other lanes keep running (and synchronising)
    while one lane captures.
    """
    stream = torch.cuda.current_stream()
    with _CAPTURE_LOCK:
        static_in = example.clone()
        for _ in range(warmup):
            model(static_in)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            static_out = model(static_in)

    def replay(batch: Any) -> Any:
        static_in.copy_(batch, non_blocking=True)
        graph.replay()
        return static_out

    return replay
