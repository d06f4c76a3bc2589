"""Open-loop load generation: arrival processes, workload mixes, the driver, the report.

Typical use::

    workload = Workload.parse("resnet18:3,mobilenet_v3_small:1", "50,resnet18=80")
    schedule = workload.schedule("poisson", rate=200.0, duration=30.0, seed=1)
    result = await run_open_loop(sched.infer, schedule, make_input=inputs.__getitem__)
    report = build_report(result, config={"policy": "edf"})
    write_report(report, "out.json")

The peak rate that meets an SLO: :func:`search_peak` (:mod:`aiosched.loadgen.peak`);
a warmed-up scheduler that runs schedule after schedule:
:class:`aiosched.loadgen.harness.LoadtestSession`; a closed loop of N users:
:class:`ClosedLoopDriver`; an HTTP server as the target:
:mod:`aiosched.loadgen.http_target`; a fleet of devices as the target:
:mod:`aiosched.loadgen.fleet_load`.
"""

from aiosched.loadgen.arrivals import (
    ARRIVALS,
    ArrivalProcess,
    Bursty,
    Constant,
    Gamma,
    Poisson,
    parse_arrival,
)
from aiosched.loadgen.closed_loop import ClosedLoop, ClosedLoopDriver
from aiosched.loadgen.driver import (
    REJECTIONS,
    OpenLoopDriver,
    SenderKind,
    Target,
    run_open_loop,
)
from aiosched.loadgen.errors import ArrivalSpecError, LoadgenError, TraceError, WorkloadError
from aiosched.loadgen.histogram import Histogram
from aiosched.loadgen.peak import (
    PeakResult,
    PeakStep,
    meets_slo,
    search_peak,
    step_from_report,
)
from aiosched.loadgen.progress import Progress
from aiosched.loadgen.report import (
    REPORT_KEYS,
    BatchStats,
    PredictorStats,
    build_report,
    write_report,
)
from aiosched.loadgen.result import LoadResult, ModelResult, RequestCounts
from aiosched.loadgen.timeseries import CSV_COLUMNS, SeriesRow, TimeSeries
from aiosched.loadgen.trace import Trace, load_trace, parse_trace
from aiosched.loadgen.workload import (
    DEFAULT_DEADLINE_MS,
    ModelLoad,
    Schedule,
    Workload,
    parse_deadlines,
    parse_models,
)

__all__ = [
    "ARRIVALS",
    "CSV_COLUMNS",
    "DEFAULT_DEADLINE_MS",
    "REJECTIONS",
    "REPORT_KEYS",
    "ArrivalProcess",
    "ArrivalSpecError",
    "BatchStats",
    "Bursty",
    "ClosedLoop",
    "ClosedLoopDriver",
    "Constant",
    "Gamma",
    "Histogram",
    "LoadResult",
    "LoadgenError",
    "ModelLoad",
    "ModelResult",
    "OpenLoopDriver",
    "PeakResult",
    "PeakStep",
    "Poisson",
    "PredictorStats",
    "Progress",
    "RequestCounts",
    "Schedule",
    "SenderKind",
    "SeriesRow",
    "Target",
    "TimeSeries",
    "Trace",
    "TraceError",
    "Workload",
    "WorkloadError",
    "build_report",
    "load_trace",
    "meets_slo",
    "parse_arrival",
    "parse_deadlines",
    "parse_models",
    "parse_trace",
    "run_open_loop",
    "search_peak",
    "step_from_report",
    "write_report",
]
