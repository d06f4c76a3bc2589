"""aiosched: asyncio ML inference scheduling with predictable latency.

async with aiosched.Scheduler(backend="cpu", lanes=2) as sched:
    sched.register("resnet18", model, max_batch_size=8, input_shape=(3, 224, 224),
                   dtype=torch.float32)
    y = await sched.infer("resnet18", x, deadline=0.2)

The names below come in two groups. The *user API* is what an application that
embeds a scheduler needs: the scheduler, its errors, the built-in backends,
policies and predictors to choose from, profiles and snapshots. The *author API*
is what one writes a backend, a policy or a predictor against: the base classes,
what the scheduler hands them (batches and completions, queues and requests,
executions and what runs beside them) and the clocks; :mod:`aiosched.testing`
checks a new backend or predictor against its contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._runtime import run
    from .backends import Backend, Completion, DeviceOutOfMemory, LaneFailure
    from .backends.cpu import CpuBackend
    from .backends.cuda import CudaBackend
    from .backends.sim import Drift, SimBackend, SimModel
    from .clock import Clock, LoopClock, PerfClock
    from .errors import (
        AioschedError,
        DeadlineExceeded,
        DeadlineUnmeetable,
        InvalidConfig,
        InvalidInput,
        LaneFailed,
        ModelError,
        ModelUnregistered,
        Overloaded,
        SchedulerClosed,
        UnknownModel,
        WrongEventLoop,
    )
    from .fleet import Fleet, FleetSnapshot
    from .policy import DispatchView, EdfPolicy, FifoPolicy, Policy, SequentialPolicy
    from .predict import (
        ErrorSummary,
        EwmaPredictor,
        OraclePredictor,
        OverlapPredictor,
        Predictor,
        Profile,
        QuantilePredictor,
        RlsPredictor,
        SgdPredictor,
        SoloPredictor,
        StaticPredictor,
    )
    from .queue import ModelQueue, Request
    from .scheduler import Scheduler
    from .spec import ModelSpec
    from .telemetry.snapshot import LaneSnapshot, LatencySummary, ModelSnapshot, SchedulerSnapshot
    from .timeline import Execution, Peer, Running, Timeline

# Imported on first use (PEP 562): ``import aiosched`` and ``aiosched --help`` stay
# free of torch, which costs seconds to import; the names are the same either way.
_WHERE: dict[str, str] = {
    "AioschedError": ".errors",
    "Backend": ".backends",
    "Clock": ".clock",
    "Completion": ".backends",
    "CpuBackend": ".backends.cpu",
    "CudaBackend": ".backends.cuda",
    "DeadlineExceeded": ".errors",
    "DeadlineUnmeetable": ".errors",
    "DeviceOutOfMemory": ".backends",
    "DispatchView": ".policy",
    "Drift": ".backends.sim",
    "EdfPolicy": ".policy",
    "ErrorSummary": ".predict",
    "EwmaPredictor": ".predict",
    "Execution": ".timeline",
    "FifoPolicy": ".policy",
    "Fleet": ".fleet",
    "FleetSnapshot": ".fleet",
    "InvalidConfig": ".errors",
    "InvalidInput": ".errors",
    "LaneFailed": ".errors",
    "LaneFailure": ".backends",
    "LaneSnapshot": ".telemetry.snapshot",
    "LatencySummary": ".telemetry.snapshot",
    "LoopClock": ".clock",
    "ModelError": ".errors",
    "ModelQueue": ".queue",
    "ModelSnapshot": ".telemetry.snapshot",
    "ModelSpec": ".spec",
    "ModelUnregistered": ".errors",
    "OraclePredictor": ".predict",
    "OverlapPredictor": ".predict",
    "Overloaded": ".errors",
    "Peer": ".timeline",
    "PerfClock": ".clock",
    "Policy": ".policy",
    "Predictor": ".predict",
    "Profile": ".predict",
    "QuantilePredictor": ".predict",
    "Request": ".queue",
    "RlsPredictor": ".predict",
    "Running": ".timeline",
    "Scheduler": ".scheduler",
    "SchedulerClosed": ".errors",
    "SchedulerSnapshot": ".telemetry.snapshot",
    "SequentialPolicy": ".policy",
    "SgdPredictor": ".predict",
    "SimBackend": ".backends.sim",
    "SimModel": ".backends.sim",
    "SoloPredictor": ".predict",
    "StaticPredictor": ".predict",
    "Timeline": ".timeline",
    "UnknownModel": ".errors",
    "WrongEventLoop": ".errors",
    "run": "._runtime",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        # A submodule not imported yet (``aiosched.scheduler``), as an eager package has them.
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module 'aiosched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    # -- user API: embed a scheduler ----------------------------------------------
    "AioschedError",
    "CpuBackend",
    "CudaBackend",
    "DeadlineExceeded",
    "DeadlineUnmeetable",
    "DeviceOutOfMemory",
    "Drift",
    "EdfPolicy",
    "ErrorSummary",
    "EwmaPredictor",
    "FifoPolicy",
    "Fleet",
    "FleetSnapshot",
    "InvalidConfig",
    "InvalidInput",
    "LaneFailed",
    "LaneSnapshot",
    "LatencySummary",
    "ModelError",
    "ModelSnapshot",
    "ModelSpec",
    "ModelUnregistered",
    "OraclePredictor",
    "OverlapPredictor",
    "Overloaded",
    "Profile",
    "QuantilePredictor",
    "RlsPredictor",
    "Scheduler",
    "SchedulerClosed",
    "SchedulerSnapshot",
    "SequentialPolicy",
    "SgdPredictor",
    "SimBackend",
    "SimModel",
    "SoloPredictor",
    "StaticPredictor",
    "UnknownModel",
    "WrongEventLoop",
    "__version__",
    "run",
    # -- author API: write a backend, a policy or a predictor -----------------------
    "Backend",
    "Clock",
    "Completion",
    "DispatchView",
    "Execution",
    "LaneFailure",
    "LoopClock",
    "ModelQueue",
    "Peer",
    "PerfClock",
    "Policy",
    "Predictor",
    "Request",
    "Running",
    "Timeline",
]
