"""``aiosched mlperf``: MLPerf LoadGen drives the embedded scheduler, and prints its summary.

LoadGen (extra ``mlperf``: mlcommons-loadgen) issues the queries of a
scenario (``server``: Poisson arrivals at ``--target-qps``; ``offline``: every
sample at once; ``singlestream``: one after another) to a system under test
whose ``issue_query`` hands each sample to an aiosched Scheduler running on an
asyncio loop in its own thread (:mod:`aiosched.integrations.mlperf`). The
defaults keep a run to about 5 s of load: ``--duration 5``, ``--min-queries
64``. LoadGen's summary is printed as LoadGen wrote it. Bad options, or
LoadGen missing: one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._choices import SCENARIOS
from ._parse import DURATION_HELP, check_lanes, fail, optional_ms

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def mlperf(
        scenario: Annotated[str, typer.Option(help=SCENARIOS)] = "server",
        backend: Annotated[str, typer.Option(help="sim or cpu")] = "sim",
        model: Annotated[
            str | None,
            typer.Option(help="model (default: resnet50 on sim, mobilenet_v3_small on cpu)"),
        ] = None,
        lanes: Annotated[int, typer.Option(min=1, help="concurrent lanes on the device")] = 2,
        max_batch_size: Annotated[int, typer.Option(min=1, help="largest batch")] = 8,
        target_qps: Annotated[
            float | None,
            typer.Option(
                help="server: arrival rate (default: half the warm-up's capacity estimate); "
                "offline: expected rate (default: the estimate)"
            ),
        ] = None,
        latency: Annotated[
            str | None,
            typer.Option(
                help="server's latency bound and each sample's deadline "
                f"(default 50 on sim, 300 on cpu; {DURATION_HELP})"
            ),
        ] = None,
        expected_latency: Annotated[
            str | None,
            typer.Option(
                help="singlestream's expected latency (default: the warm-up's prediction; "
                f"{DURATION_HELP})"
            ),
        ] = None,
        duration: Annotated[float, typer.Option(help="LoadGen's minimum duration, s")] = 5.0,
        min_queries: Annotated[int, typer.Option(min=1, help="LoadGen's minimum queries")] = 64,
        samples: Annotated[int, typer.Option(min=1, help="query sample library size")] = 1024,
        log_dir: Annotated[
            Path | None,
            typer.Option(help="keep LoadGen's logs here (default: a temporary directory)"),
        ] = None,
    ) -> None:
        """Run MLPerf LoadGen against the embedded scheduler and print LoadGen's summary."""
        from ..errors import AioschedError, InvalidConfig
        from ..integrations.mlperf import MlperfConfig, require_loadgen, run_mlperf

        try:
            cfg = MlperfConfig(
                scenario=scenario,
                backend=backend,
                model=model,
                lanes=lanes,
                max_batch_size=max_batch_size,
                target_qps=target_qps,
                latency_ms=optional_ms(latency, "--latency"),
                expected_latency_ms=optional_ms(expected_latency, "--expected-latency"),
                min_duration_s=duration,
                min_queries=min_queries,
                samples=samples,
                log_dir=None if log_dir is None else str(log_dir),
            )
            _check_model(cfg.backend, cfg.model_name)
        except InvalidConfig as exc:
            raise fail(exc) from None
        check_lanes(cfg.backend, lanes)
        try:
            require_loadgen()  # after the options: a bad one is named even without LoadGen
        except InvalidConfig as exc:
            raise fail(exc) from None
        try:
            result = run_mlperf(cfg)
        except (AioschedError, OSError) as exc:
            raise fail(exc) from None
        if not result.summary:
            raise fail("LoadGen wrote no summary")
        typer.echo(result.summary.rstrip())
        typer.echo(
            f"aiosched: {result.issued} samples issued, {result.completed} completed, "
            f"{result.met_deadline} within their deadline, {result.errors} errors"
            + (f"; LoadGen's logs in {result.log_dir}" if result.log_dir else "")
        )


def _check_model(backend: str, name: str) -> None:
    from ..errors import InvalidConfig

    if backend == "sim":
        from ..backends.sim import CATALOGUE

        known = set(CATALOGUE)
    else:
        from ..models import ZOO

        known = set(ZOO)
    if name not in known:
        raise InvalidConfig(
            f"--model: unknown model {name!r} for the {backend} backend; "
            f"known: {', '.join(sorted(known))}"
        )
