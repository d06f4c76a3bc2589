"""``aiosched loadtest --target ray-serve:APP``: the open-loop load through a Serve handle.

The application ``APP`` must be running (deployed with
:func:`~aiosched.integrations.ray_serve.aiosched_deployment`) on the Ray
cluster at ``RAY_ADDRESS`` (default ``auto``: the one ``ray start`` started on
this machine). The load generator is the embedded one's: the same arrivals
from the seed, latency from the intended send time, each call with its
deadline. The models default to every model the application serves; inputs
are random tensors of each model's input shape, made once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from ..errors import InvalidConfig
from ..loadgen.driver import OpenLoopDriver, Progress
from ..loadgen.harness import DEFAULT_DEADLINE_MS, LoadtestConfig
from ..loadgen.report import build_report
from ..loadgen.result import LoadResult
from ..loadgen.trace import load_trace
from ..loadgen.workload import Schedule, Workload

__all__ = ["PREFIX", "app_of", "run_serve_loadtest"]

PREFIX = "ray-serve:"


def app_of(target: str) -> str | None:
    """The application name of ``ray-serve:APP``; ``None`` for ``embedded``."""
    if target == "embedded":
        return None
    if not target.startswith(PREFIX) or not target[len(PREFIX) :].strip():
        raise InvalidConfig(f"--target must be 'embedded' or 'ray-serve:APP', got {target!r}")
    return target[len(PREFIX) :].strip()


def _schedule(cfg: LoadtestConfig, served: dict[str, Any], backend: str) -> Schedule:
    default_ms = DEFAULT_DEADLINE_MS.get(backend, 100.0)
    trace = None
    if cfg.trace is not None:
        trace = load_trace(cfg.trace)
        workload = Workload.for_trace(trace, cfg.deadline, default_deadline_ms=default_ms)
    else:
        models = cfg.models or ",".join(served)
        workload = Workload.parse(models, cfg.deadline, default_deadline_ms=default_ms)
    unknown = sorted(set(workload.names) - set(served))
    if unknown:
        raise InvalidConfig(
            f"the application does not serve {', '.join(unknown)}; it serves "
            f"{', '.join(sorted(served))}"
        )
    if trace is not None:
        return workload.replay(trace, duration=cfg.duration)
    if cfg.rate is None:
        raise InvalidConfig("--target ray-serve needs --rate R (requests/s)")
    return workload.schedule(cfg.arrival, cfg.rate, cfg.duration, cfg.seed)


def _input(spec: dict[str, Any], gen: torch.Generator) -> Any:
    shape = spec.get("input_shape")
    if shape is None:
        return 0.0
    dtype = getattr(torch, spec.get("dtype") or "float32")
    return torch.randn(shape, generator=gen).to(dtype)


async def run_serve_loadtest(
    cfg: LoadtestConfig,
    app: str,
    *,
    on_start: Callable[[dict[str, Any], Schedule], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 1.0,
    on_result: Callable[[LoadResult], None] | None = None,
) -> dict[str, Any]:
    """Drive ``cfg``'s load through application ``app``'s handle; the JSON report.

    ``on_start(info, schedule)`` gets a replica's :meth:`describe` before the
    first send. Connects to the cluster if this process is not connected yet,
    and disconnects at the end if it connected.
    """
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise InvalidConfig(
            f"--target ray-serve needs ray: pip install 'aiosched[ray]' ({exc})"
        ) from None

    from .ray_serve import AioschedClient

    connected = ray.is_initialized()
    if not connected:
        address = os.environ.get("RAY_ADDRESS", "auto")
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InvalidConfig(
                f"no Ray cluster at {address!r} ({exc}); start one (ray start --head) "
                "and deploy the application, or set RAY_ADDRESS"
            ) from None
    try:
        try:
            client = AioschedClient(serve.get_app_handle(app))
        except Exception as exc:  # Serve raises its own exception types for a missing app
            raise InvalidConfig(f"no Ray Serve application {app!r}: {exc}") from None
        info = await client.describe()
        served: dict[str, Any] = info["models"]
        schedule = _schedule(cfg, served, info["backend"])
        gen = torch.Generator().manual_seed(0)
        inputs = {name: _input(served[name], gen) for name in schedule.models}
        if on_start is not None:
            on_start(info, schedule)
        driver = OpenLoopDriver(
            client.infer,
            schedule,
            make_input=inputs.__getitem__,
            on_progress=on_progress,
            progress_interval=progress_interval,
        )
        result = await driver.run()
    finally:
        if not connected:
            ray.shutdown()
    if on_result is not None:
        on_result(result)
    config = {
        **asdict(cfg),
        "target": f"{PREFIX}{app}",
        "backend": info["backend"],
        "lanes": info["lanes"],
        "policy": info["policy"],
        "models": schedule.config.get("models"),
        "models_option": cfg.models,
        "rate": schedule.offered_rps,
        "rate_requested": cfg.rate,
        "rate_mode": cfg.mode,
    }
    # Batches and the predictor live in each replica; a replica's own figures are
    # `AioschedClient.stats()`. The report has what the caller measured.
    return build_report(result, config=config)
