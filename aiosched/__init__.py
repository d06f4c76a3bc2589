"""aiosched: asyncio ML inference scheduling with predictable latency.

async with aiosched.Scheduler(backend="cpu", lanes=2) as sched:
    sched.register("resnet18", model, max_batch_size=8, input_shape=(3, 224, 224),
                   dtype=torch.float32)
    y = await sched.infer("resnet18", x, deadline=0.2)
"""

from __future__ import annotations

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
    Overloaded,
    SchedulerClosed,
    UnknownModel,
    WrongEventLoop,
)
from .policy import DispatchView, EdfPolicy, FifoPolicy, Policy, SequentialPolicy
from .predict import (
    ErrorSummary,
    EwmaPredictor,
    OraclePredictor,
    OverlapPredictor,
    Predictor,
    Profile,
    RlsPredictor,
    SgdPredictor,
    SoloPredictor,
    StaticPredictor,
)
from .scheduler import Scheduler
from .spec import ModelSpec
from .telemetry.snapshot import LaneSnapshot, LatencySummary, ModelSnapshot, SchedulerSnapshot
from .timeline import Execution, Peer, Running, Timeline

__version__ = "0.1.0"

__all__ = [
    "AioschedError",
    "Backend",
    "Clock",
    "Completion",
    "CpuBackend",
    "CudaBackend",
    "DeadlineExceeded",
    "DeadlineUnmeetable",
    "DeviceOutOfMemory",
    "DispatchView",
    "Drift",
    "EdfPolicy",
    "ErrorSummary",
    "EwmaPredictor",
    "Execution",
    "FifoPolicy",
    "InvalidConfig",
    "InvalidInput",
    "LaneFailed",
    "LaneFailure",
    "LaneSnapshot",
    "LatencySummary",
    "LoopClock",
    "ModelError",
    "ModelSnapshot",
    "ModelSpec",
    "OraclePredictor",
    "OverlapPredictor",
    "Overloaded",
    "Peer",
    "PerfClock",
    "Policy",
    "Predictor",
    "Profile",
    "RlsPredictor",
    "Running",
    "Scheduler",
    "SchedulerClosed",
    "SchedulerSnapshot",
    "SequentialPolicy",
    "SgdPredictor",
    "SimBackend",
    "SimModel",
    "SoloPredictor",
    "StaticPredictor",
    "Timeline",
    "UnknownModel",
    "WrongEventLoop",
    "run",
    "__version__",
]
