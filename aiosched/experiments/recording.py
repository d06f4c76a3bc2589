"""Recording what the experiments replay: solo profiles and workload traces.

:func:`solo_profile` measures each model alone (:func:`~aiosched.predict.profile.measure`);
:func:`record` runs an open-loop Poisson workload under the scheduler and returns
its timeline (every execution, with who was in flight at its dispatch and who
overlapped it). Both run in virtual time on the sim backend and in real time
otherwise.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from .. import simtime
from .._runtime import run as run_loop
from ..errors import InvalidConfig
from ..loadgen.driver import run_open_loop
from ..predict.profile import Profile, measure
from ..scheduler import Scheduler
from ..timeline import Execution
from .config import PredictorsConfig
from .setup import Hog, experiment_backend, load_models, register_all
from .workload import poisson_schedule

__all__ = ["record", "solo_profile", "trace_stats"]


# On sim, arrivals start this long after the backend does (virtual seconds cost nothing):
# warm-up is over by then, and the sim backend's drift, counted from its start, lines up
# with the workload's phases.
_SIM_LEAD_S = 5.0


async def _record(config: PredictorsConfig, drift: bool) -> tuple[list[Execution], float]:
    """Run the workload; return the trace and the drift time on the scheduler's clock.

    Arrivals start once warm-up is over (on sim, at :data:`_SIM_LEAD_S`); the
    drift (the second phase's mix, the sim backend's slowdown or the load
    thread) starts ``phases[0].duration`` later.
    """
    entries = load_models(config.backend, config.models)
    phases = config.phases(drift)
    steps: list[Any] = []
    if drift and config.backend == "sim":
        from ..backends.sim import Drift

        steps = [Drift(at=_SIM_LEAD_S + phases[0].duration, speed=config.drift_speed)]
    backend = experiment_backend(config.backend, config.lanes, seed=config.seed, drift=steps)
    schedule = poisson_schedule(
        phases, dict.fromkeys(config.models, config.deadline), seed=config.seed
    )
    hog = Hog(config.backend) if drift and config.backend != "sim" else None
    async with Scheduler(backend, predictor=config.recorder) as sched:
        start = sched.now()
        register_all(sched, entries, config.max_batch_size)
        await sched.ready()
        if config.backend == "sim":
            if sched.now() > start + _SIM_LEAD_S:
                raise InvalidConfig("warm-up outlasted the lead before the arrivals")
            await asyncio.sleep(start + _SIM_LEAD_S - sched.now())
        drift_at = sched.now() + phases[0].duration
        inputs = {e.name: e.sample for e in entries}
        # Every request is waited for: the trace is complete when the schedule is.
        send = run_open_loop(
            sched.infer, schedule, make_input=inputs.__getitem__, drain_timeout=None
        )
        if hog is None:
            await send
        else:

            async def start_hog() -> None:
                await asyncio.sleep(max(0.0, drift_at - sched.now()))
                hog.start()

            try:
                await asyncio.gather(send, start_hog())
            finally:
                hog.stop()
        trace = list(sched.timeline.history)
    return trace, drift_at


def record(config: PredictorsConfig, drift: bool = False) -> tuple[list[Execution], float]:
    """Record one trace (virtual time on sim, real time on cpu); see :func:`_record`."""
    config.validate()
    if config.backend == "sim":
        return simtime.run(_record(config, drift))
    return run_loop(_record(config, drift), use_uvloop=False)


async def _measure_profile(config: PredictorsConfig) -> Profile:
    entries = load_models(config.backend, config.models)
    sizes = (
        list(range(1, config.max_batch_size + 1))
        if config.backend == "sim"
        else sorted({1 << i for i in range(config.max_batch_size.bit_length())})
    )
    sizes = [b for b in sizes if b <= config.max_batch_size]
    backend = experiment_backend(config.backend, 1, seed=config.seed)
    specs = [e.spec(config.max_batch_size) for e in entries]
    repeats, warmup = (5, 1) if config.backend == "sim" else (3, 1)
    return await measure(backend, specs, sizes, repeats=repeats, warmup=warmup)


def solo_profile(config: PredictorsConfig) -> Profile:
    """Each model's solo latency by batch size on ``config``'s backend (what seeds the predictors).

    Every size up to the maximum on sim (virtual time, free); powers of two
    on cpu (real time), the rest interpolated.
    """
    config.validate()
    if config.backend == "sim":
        return simtime.run(_measure_profile(config))
    return run_loop(_measure_profile(config), use_uvloop=False)


def trace_stats(trace: Sequence[Execution]) -> dict[str, Any]:
    """Counts that describe a trace: executions, batch sizes, concurrency at dispatch."""
    served = [e for e in trace if not e.warmup and e.ok]
    if not served:
        return {"executions": 0}
    sizes: dict[int, int] = {}
    concurrency: dict[int, int] = {}
    for e in served:
        sizes[e.batch_size] = sizes.get(e.batch_size, 0) + 1
        n = len(e.at_dispatch)
        concurrency[n] = concurrency.get(n, 0) + 1
    overlapped = sum(1 for e in served if not e.solo)
    return {
        "executions": len(served),
        "batch_sizes": dict(sorted(sizes.items())),
        "in_flight_at_dispatch": dict(sorted(concurrency.items())),
        "overlapped_fraction": overlapped / len(served),
        "mean_latency_s": math.fsum(e.latency for e in served) / len(served),
    }
