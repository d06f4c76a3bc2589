"""``aiosched loadtest``: an open-loop load against the embedded scheduler, live.

With no options it runs the embedded default (about 30 s, small torchvision
models on the cpu backend, or cuda where present) at ``--rate auto``: a short
peak search at the start (a few steps of 2.5 s; virtual time on sim), then 70 %
of the measured peak. ``--rate peak`` runs the full search and then runs at the
peak; the JSON report has the search under ``config.peak``. Bad options or files end
with a one-line message and exit code 2, before the run where they can be
checked (``--json`` and ``--csv`` are tried for writing first); Ctrl-C stops
sending, drains, and still prints and writes the report. ``--csv FILE`` writes
the measured run's per-second time series (:mod:`aiosched.loadgen.timeseries`);
``--timeline FILE`` its executions, one per batch run (model, lane, start, end,
batch size, predicted latency: :mod:`aiosched.loadgen.timelinefile`), which
``aiosched report`` draws. ``--target ray-serve:APP`` sends the load through the
handle of a running Ray Serve application instead
(:mod:`aiosched.integrations.ray_serve_load`; needs ``--rate R``);
``--target http://HOST:PORT`` to a running HTTP service
(:mod:`aiosched.loadgen.http_target`; needs ``--rate R`` or ``--concurrency N``).
``--concurrency N`` runs a closed loop of N users instead of an arrival
process (:mod:`aiosched.loadgen.closed_loop`); ``--warmup S`` sends for S
seconds first, uncounted (:mod:`aiosched.loadgen.warmup`). ``--devices N``
(or ``cuda:0,cuda:2``) drives a :class:`~aiosched.Fleet` of N devices instead
of one scheduler (:mod:`aiosched.cli._fleet`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from ..errors import AioschedError
from ..loadgen import LoadResult, Progress, TimeSeries, write_report
from ..loadgen.http_target import DEFAULT_WARMUP_S
from ..loadgen.peak import PeakResult, PeakStep
from ..telemetry.snapshot import SchedulerSnapshot
from ._choices import PREDICTORS
from ._fleet import MAX_DEVICES, device_names, rebalance_seconds, render_devices
from ._live import live_view, plain_line
from ._parse import (
    DURATION_HELP,
    bad,
    check_lanes,
    check_requests,
    check_writable,
    deadline_spec,
    fail,
    finite,
)
from ._render import render_steps, render_summary, terminal_console

if TYPE_CHECKING:  # the harness imports torch: at run time it is imported when a run starts
    from ..loadgen.driver import Target
    from ..loadgen.fleet_load import FleetOptions
    from ..loadgen.harness import Front, FrontSnapshot, LoadtestConfig
    from ..telemetry.prometheus import PrometheusExporter
    from ..telemetry.prometheus_fleet import FleetExporter
    from ..timeline import Execution


LIVE_INTERVAL_S = 1.0
"""Seconds (of the run's clock) between two updates of the live view: its window."""

_OPEN_LOOP_OPTIONS = {"rate": "--rate", "arrival": "--arrival", "trace": "--trace"}
_FLEET_OPTIONS = {"replicas": "--replicas", "rebalance_every": "--rebalance-every"}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _rate(value: str) -> tuple[float | None, str]:
    """``--rate``: requests/s, ``auto`` or ``peak`` -> (rate, rate mode)."""
    if value in ("auto", "peak"):
        return None, value
    try:
        return float(value), "fixed"
    except ValueError:
        bad(f"expected requests/s, 'auto' or 'peak', got {value!r}", "--rate")


def register(app: typer.Typer) -> None:
    @app.command()
    def loadtest(
        ctx: typer.Context,
        backend: Annotated[str, typer.Option(help="auto, cpu, cuda or sim")] = "auto",
        models: Annotated[
            str | None, typer.Option(help="models with optional shares: 'a:3,b:1'")
        ] = None,
        rate: Annotated[
            str,
            typer.Option(
                help="requests/s; 'auto': 70% of a peak found by a short search; "
                "'peak': search the peak, then run at it"
            ),
        ] = "auto",
        duration: Annotated[float, typer.Option(help="seconds of sending")] = 30.0,
        arrival: Annotated[
            str, typer.Option(help="poisson, constant, gamma[:cv=C], bursty[:on=S,off=S], trace")
        ] = "poisson",
        trace: Annotated[
            Path | None, typer.Option(help="CSV or JSONL trace (with --arrival trace)")
        ] = None,
        deadline: Annotated[
            str | None,
            typer.Option(help=f"one value or per model: '100,a=50' ({DURATION_HELP})"),
        ] = None,
        policy: Annotated[str, typer.Option(help="edf, fifo or sequential")] = "edf",
        predictor: Annotated[
            str | None,
            typer.Option(
                help=f"latency predictor: {PREDICTORS} "
                "(default: the scheduler's, overlap:quantile=0.9)"
            ),
        ] = None,
        lanes: Annotated[int, typer.Option(min=1, help="concurrent lanes on the device")] = 2,
        max_batch_size: Annotated[
            int, typer.Option(min=1, help="largest batch per model (at most 1024)")
        ] = 8,
        seed: Annotated[int, typer.Option(min=0, help="seed of the arrivals")] = 0,
        slo_attainment: Annotated[
            float, typer.Option(help="peak search: fraction of requests that must meet deadlines")
        ] = 0.99,
        step_duration: Annotated[
            float | None,
            typer.Option(help="peak search: seconds per step (default 2.5/5 real, 5/10 on sim)"),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="write the JSON report here")
        ] = None,
        csv_path: Annotated[
            Path | None,
            typer.Option(
                "--csv",
                help="write a per-second time series here (offered, completed, met, "
                "rejected, p50/p99 ms)",
            ),
        ] = None,
        timeline_path: Annotated[
            Path | None,
            typer.Option(
                "--timeline",
                help="write the measured run's executions here (model, lane, start, end, "
                "batch size, predicted latency; JSON lines, or CSV for a .csv name; with "
                "--devices every device's, lane = device x lanes + the device's lane)",
            ),
        ] = None,
        live: Annotated[bool, typer.Option("--live/--no-live", help="rich live view")] = True,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                min=0,
                max=65535,
                help="serve Prometheus metrics on this port during the run "
                "(extra 'prometheus'; 0: any free port; with --devices every device's, "
                "labelled device)",
            ),
        ] = None,
        metrics_addr: Annotated[
            str, typer.Option(help="address the metrics server binds")
        ] = "127.0.0.1",
        target: Annotated[
            str,
            typer.Option(
                help="'embedded': a scheduler in this process; 'ray-serve:APP': a running "
                "Ray Serve application of aiosched.integrations.ray_serve (cluster at "
                "RAY_ADDRESS, default auto; needs --rate R); 'http://HOST:PORT' (a path "
                "prefix allowed): a server speaking examples/fastapi_app.py's protocol: POST "
                'URL/infer/MODEL with {"x": input} and X-Deadline-Ms, models and input '
                "shapes from GET URL/models (a URL with {model} in it is used as is, with "
                "--models and --input-shape); needs --rate R or --concurrency N (extra 'http')"
            ),
        ] = "embedded",
        concurrency: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="closed loop: N users, each sending its next request when its last "
                "returned (instead of --rate/--arrival)",
            ),
        ] = None,
        think_ms: Annotated[
            float, typer.Option(min=0.0, help="closed loop: each user's pause between requests")
        ] = 0.0,
        warmup: Annotated[
            float | None,
            typer.Option(
                min=0.0,
                help="seconds of load before the measured run, not counted "
                f"(default {DEFAULT_WARMUP_S:g} for an HTTP target, else 0: the embedded "
                "scheduler warms its models up before the run)",
            ),
        ] = None,
        input_shape: Annotated[
            str | None,
            typer.Option(
                help="HTTP target: every model's input shape, e.g. 16 or 3x224x224 "
                "(default: from GET URL/models)"
            ),
        ] = None,
        devices: Annotated[
            str | None,
            typer.Option(
                help="a fleet, one scheduler per device: N devices of --backend (sim: N "
                "simulated devices, own seeds; cpu: N devices that share the host's cores; "
                f"cuda: cuda:0..N-1; N up to {MAX_DEVICES}), or GPUs by name: cuda:0,cuda:2. "
                "--policy, --predictor and --lanes apply to each device"
            ),
        ] = None,
        replicas: Annotated[
            int | None,
            typer.Option(
                min=1, help="with --devices: each model starts on K of them (default all)"
            ),
        ] = None,
        rebalance_every: Annotated[
            str | None,
            typer.Option(
                help=f"with --devices: time between two rebalances ({DURATION_HELP}; "
                "'off': none; default the fleet's, 500 ms)"
            ),
        ] = None,
    ) -> None:
        """Drive an open-loop workload through the scheduler and report latency and goodput."""
        from ..loadgen.harness import LoadtestConfig, resolve_backend
        from ..scheduler import DEFAULT_PREDICTOR
        from ..spec import MAX_BATCH_SIZE

        console = terminal_console()
        # Everything that can be checked before the run is (bad values: one line, exit 2).
        fixed_rate, rate_mode = _rate(rate)
        if concurrency is not None:
            clash = [f for n, f in _OPEN_LOOP_OPTIONS.items() if _given(ctx, n)]
            if clash:
                bad(
                    f"a closed loop (N users) takes no {' or '.join(clash)}: its rate is "
                    "what the users get",
                    "--concurrency",
                )
            fixed_rate, rate_mode = None, "closed"
        elif _given(ctx, "think_ms"):
            bad("a think time is for a closed loop: give --concurrency N too", "--think-ms")
        finite(duration, "--duration")
        finite(think_ms, "--think-ms")
        finite(warmup, "--warmup")
        finite(step_duration, "--step-duration")
        check_requests(fixed_rate, duration)
        if models is not None and not models.strip():
            bad("give at least one model (leave --models out for the default set)", "--models")
        if max_batch_size > MAX_BATCH_SIZE:
            bad(f"at most {MAX_BATCH_SIZE}, got {max_batch_size}", "--max-batch-size")
        if json_path is not None:
            check_writable(json_path)
        if csv_path is not None:
            check_writable(csv_path, "--csv")
        if timeline_path is not None:
            check_writable(timeline_path, "--timeline")
        if metrics_port is not None:
            from ..telemetry.prometheus import require_prometheus

            try:
                require_prometheus()
            except AioschedError as exc:
                bad(exc, "--metrics-port")
        from ..integrations.ray_serve_load import app_of
        from ..loadgen.http_target import REFUSED_OPTIONS, Endpoint, parse_shape, require_httpx

        if devices is not None and target != "embedded":
            bad("a fleet runs in this process: it takes the embedded target", "--devices")
        serve_app: str | None = None
        shape: tuple[int, ...] | None = None
        try:
            endpoint = Endpoint.parse(target)
            if endpoint is None:
                serve_app = app_of(target)
            else:
                require_httpx()
        except AioschedError as exc:
            bad(exc, "--target")
        fleet: FleetOptions | None = None
        if devices is None:
            for name, flag in _FLEET_OPTIONS.items():
                if _given(ctx, name):
                    bad("it places models on a fleet: give --devices N too", flag)
        else:
            backend, names = device_names(devices, backend)
            if replicas is not None and replicas > len(names):
                bad(f"at most the {len(names)} devices, got {replicas}", "--replicas")
            from ..loadgen.fleet_load import FleetOptions

            try:
                fleet = FleetOptions(names, replicas, rebalance_seconds(rebalance_every))
            except AioschedError as exc:
                bad(exc, "--devices")
        if endpoint is not None:
            for name, flag in REFUSED_OPTIONS.items():
                if _given(ctx, name):
                    bad(f"{flag} is the server's setting: an HTTP target does not take it", flag)
            if rate_mode not in ("fixed", "closed") and trace is None:
                bad("give --rate R or --concurrency N: the peak search is embedded", "--rate")
            if input_shape is not None:
                try:
                    shape = parse_shape(input_shape)
                except AioschedError as exc:
                    bad(exc, "--input-shape")
        elif input_shape is not None:
            bad(
                "the input shapes are the models' own here: it is for an HTTP target",
                "--input-shape",
            )
        if serve_app is not None and concurrency is not None:
            bad("a closed loop runs on the embedded or an HTTP target", "--concurrency")
        if serve_app is not None and warmup:
            bad("a warm-up runs on the embedded or an HTTP target", "--warmup")
        if serve_app is not None:
            if rate_mode != "fixed" and trace is None:
                bad("give --rate R: the peak search runs on the embedded scheduler", "--rate")
            if metrics_port is not None:
                bad("the metrics exporter reads the embedded scheduler", "--metrics-port")
            if timeline_path is not None:
                bad("the executions are the embedded scheduler's", "--timeline")
        try:
            cfg = LoadtestConfig(
                backend=backend,
                models=models,
                rate=fixed_rate,
                rate_mode=rate_mode,
                slo_attainment=slo_attainment,
                step_duration=step_duration,
                duration=duration,
                arrival=arrival,
                trace=None if trace is None else str(trace),
                deadline=deadline_spec(deadline),
                policy=policy,
                predictor=DEFAULT_PREDICTOR if predictor is None else predictor,
                lanes=lanes,
                seed=seed,
                max_batch_size=max_batch_size,
                concurrency=concurrency,
                think_ms=think_ms,
                warmup=(DEFAULT_WARMUP_S if endpoint is not None else 0.0)
                if warmup is None
                else warmup,
            )
        except AioschedError as exc:
            raise fail(exc) from None
        if serve_app is None and endpoint is None:
            check_lanes(resolve_backend(cfg.backend), lanes)
        try:
            executions: list[Execution] = []
            device_executions: list[list[Execution]] = []
            if endpoint is not None:
                report, series = _run_http(cfg, target, shape, console)
            elif serve_app is not None:
                report, series = _run_serve(cfg, serve_app, console)
            else:
                metrics = None if metrics_port is None else (metrics_port, metrics_addr)
                report, _, series = _run(
                    cfg,
                    console,
                    live and console.is_terminal,
                    metrics,
                    executions,
                    fleet,
                    device_executions,
                )
        except (AioschedError, OSError) as exc:
            raise fail(exc) from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            # A second Ctrl-C: in-flight requests were cancelled, there is no full report.
            typer.echo("interrupted: requests in flight were cancelled; no report", err=True)
            raise typer.Exit(130) from None
        console.print(render_summary(report))
        if "fleet" in report:
            console.print(render_devices(report))
        peak = report["config"].get("peak")
        if peak is not None and cfg.mode == "peak":
            console.print(render_steps(peak, title="peak search (--rate peak)"))
        if json_path is not None:
            try:
                write_report(report, json_path)
            except OSError as exc:
                raise fail(f"cannot write {json_path}: {exc}") from None
            console.print(f"report written to {json_path}")
        if csv_path is not None and series is not None:
            try:
                series.write_csv(csv_path)
            except OSError as exc:
                raise fail(f"cannot write {csv_path}: {exc}") from None
            console.print(f"time series ({len(series)} s) written to {csv_path}")
        if timeline_path is not None:
            from ..loadgen.timelinefile import (
                rows_from_devices,
                rows_from_executions,
                write_timeline,
            )

            numbering = ""
            if fleet is None:
                rows = rows_from_executions(executions)
            else:  # one file for every device: their lanes numbered one after the other
                rows = rows_from_devices(device_executions, [cfg.lanes] * len(fleet.devices))
                numbering = f"; lane = device x {cfg.lanes} + the device's lane"
            try:
                write_timeline(rows, timeline_path)
            except OSError as exc:
                raise fail(f"cannot write {timeline_path}: {exc}") from None
            console.print(
                f"timeline ({len(rows)} executions{numbering}) written to {timeline_path}"
            )


def _run(
    cfg: LoadtestConfig,
    console: Console,
    live: bool,
    metrics: tuple[int, str] | None = None,
    executions: list[Execution] | None = None,
    fleet: FleetOptions | None = None,
    device_executions: list[list[Execution]] | None = None,
) -> tuple[dict[str, Any], FrontSnapshot, TimeSeries | None]:
    """Run the load test; the report, the last snapshot and the run's per-second series.

    ``metrics`` is ``(port, address)`` for a Prometheus exporter during the measured run;
    ``executions``, when given, receives the measured run's executions
    (``device_executions`` one list per device); ``fleet`` runs the load on a fleet
    of devices (the snapshots are then the fleet's).
    """
    from .. import simtime
    from .._runtime import run
    from ..loadgen.harness import resolve_backend, run_loadtest
    from ..scheduler import Scheduler
    from ._live_fleet import fleet_live_view, fleet_plain_line

    backend = resolve_backend(cfg.backend)
    simulated = backend == "sim"
    offered = [0.0]
    results: list[LoadResult] = []

    def on_start(front: Front, schedule: Any) -> None:
        offered[0] = schedule.offered_rps
        start_metrics(front)
        if isinstance(front, Scheduler):
            where = f"{backend} backend, {cfg.lanes} lanes"
        else:
            labels = front.labels
            names = ", ".join(labels) if len(labels) <= 4 else f"{labels[0]} .. {labels[-1]}"
            where = f"{len(labels)} {backend} devices ({names}), {cfg.lanes} lanes each"
        if cfg.mode == "closed":
            load = _closed_load(cfg)
        else:
            load = (
                f"{schedule.offered_rps:.1f} requests/s offered for "
                f"{schedule.duration_s:.0f} s ({len(schedule)} requests"
            )
        console.print(
            f"aiosched loadtest: {where}, policy {cfg.policy}, "
            f"predictor {cfg.predictor}, {load}{', virtual time' if simulated else ''})",
            highlight=False,
        )

    def on_step(step: PeakStep) -> None:
        if not simulated:  # on sim the whole search takes a moment: the one line says it all
            console.print(
                f"  peak search: {step.rate_rps:.1f}/s {'ok' if step.passed else 'fail'} "
                f"({_pct(step.attainment)} met)",
                highlight=False,
            )

    def on_peak(peak: PeakResult, rate: float) -> None:
        console.print(_how_found(peak, rate, cfg.mode), highlight=False, soft_wrap=True)

    if cfg.mode in ("auto", "peak") and cfg.trace is None:
        console.print(
            f"finding the rate ({cfg.mode}): a peak search on the {backend} backend, "
            f"SLO {cfg.slo_attainment * 100:g} % met and p99 within each deadline",
            highlight=False,
        )

    exporters: list[PrometheusExporter | FleetExporter] = []

    def start_metrics(front: Front) -> None:
        if metrics is None:
            return
        from ..telemetry.prometheus import PrometheusExporter
        from ..telemetry.prometheus_fleet import FleetExporter

        exporter: PrometheusExporter | FleetExporter
        if isinstance(front, Scheduler):
            exporter = PrometheusExporter(front, interval=0.5)
        else:  # every device's metrics, with a device label
            exporter = FleetExporter(front, interval=0.5)
        exporters.append(exporter)
        exporter.start()
        port = exporter.serve(*metrics)
        console.print(f"metrics on http://{metrics[1]}:{port}/metrics", highlight=False)

    def instrument(infer: Target) -> Target:
        return exporters[-1].instrument(infer) if exporters else infer

    async def main(
        on_progress: Callable[[Progress, FrontSnapshot], None], interval: float
    ) -> tuple[dict[str, Any], FrontSnapshot]:
        try:
            return await run_loadtest(
                cfg,
                on_start=on_start,
                on_progress=on_progress,
                progress_interval=interval,
                handle_sigint=True,
                on_step=on_step,
                on_peak=on_peak,
                on_result=results.append,
                instrument=instrument,
                on_executions=None if executions is None else executions.extend,
                fleet=fleet,
                on_device_executions=None
                if device_executions is None
                else device_executions.extend,
            )
        finally:
            for exporter in exporters:
                await exporter.stop()

    if live:
        # Updates every second of the run's clock, so that "last 1.0 s" means one second. On
        # sim that clock is virtual and runs far ahead of the wall: the view flies by at the
        # sim's speed (pacing it would make sim as slow as the device it stands in for) and
        # its final screen stays up above the summary; on a device it goes when the run ends.
        with Live(console=console, refresh_per_second=4, transient=not simulated) as view:

            def draw(p: Progress, snap: FrontSnapshot) -> None:
                if isinstance(snap, SchedulerSnapshot):
                    view.update(live_view(p, snap, offered[0]))
                else:
                    view.update(fleet_live_view(p, snap, offered[0]))

            coro = main(draw, LIVE_INTERVAL_S)
            report, snap = simtime.run(coro) if simulated else run(coro)
            return report, snap, results[-1].series if results else None

    def line(p: Progress, snap: FrontSnapshot) -> None:
        if isinstance(snap, SchedulerSnapshot):
            text = plain_line(p, snap, offered[0])
        else:
            text = fleet_plain_line(p, snap, offered[0])
        console.print(text, highlight=False, soft_wrap=True)

    interval = cfg.duration / 10 if simulated else _print_every(cfg)
    coro = main(line, interval)
    report, snap = simtime.run(coro) if simulated else run(coro)
    return report, snap, results[-1].series if results else None


def _run_serve(
    cfg: LoadtestConfig, app: str, console: Console
) -> tuple[dict[str, Any], TimeSeries | None]:
    """The load through Ray Serve application ``app``: the report and the per-second series."""
    from .._runtime import run
    from ..integrations.ray_serve_load import run_serve_loadtest

    results: list[LoadResult] = []
    offered = [0.0]

    def on_start(info: dict[str, Any], schedule: Any) -> None:
        offered[0] = schedule.offered_rps
        console.print(
            f"aiosched loadtest: Ray Serve application {app!r} ({info['backend']} replicas, "
            f"{info['lanes']} lanes each, policy {info['policy']}), "
            f"{schedule.offered_rps:.1f} requests/s offered for {schedule.duration_s:.0f} s "
            f"({len(schedule)} requests)",
            highlight=False,
        )

    def line(p: Progress) -> None:
        console.print(
            f"[{p.elapsed_s:6.1f}/{p.window_s:.0f}s] offered {offered[0]:7.1f}/s "
            f"sent {p.sent_rps:7.1f}/s done {p.achieved_rps:7.1f}/s "
            f"good {p.goodput_rps:7.1f}/s miss {p.miss_pct:5.1f}% "
            f"rejected {p.counts.rejected}",
            highlight=False,
            soft_wrap=True,
        )

    interval = _print_every(cfg)
    report = run(
        run_serve_loadtest(
            cfg,
            app,
            on_start=on_start,
            on_progress=line,
            progress_interval=interval,
            on_result=results.append,
        )
    )
    return report, results[-1].series if results else None


def _print_every(cfg: LoadtestConfig) -> float:
    """Seconds between two progress lines of a real-time run: a tenth of it, 1 to 5 s."""
    return max(1.0, min(5.0, cfg.duration / 10))


def _closed_load(cfg: LoadtestConfig) -> str:
    think = f", think {cfg.think_ms:g} ms" if cfg.think_ms else ""
    return (
        f"closed loop: {cfg.concurrency} users for {cfg.duration:g} s "
        f"({cfg.warmup:g} s warm-up{think}"
    )


def _run_http(
    cfg: LoadtestConfig, url: str, shape: tuple[int, ...] | None, console: Console
) -> tuple[dict[str, Any], TimeSeries | None]:
    """The load at the HTTP server at ``url``: the report and the per-second series."""
    from .._runtime import run
    from ..loadgen.http_target import run_http_loadtest

    results: list[LoadResult] = []

    def on_start(schedule: Any, pool: int) -> None:
        if cfg.mode == "closed":
            load = _closed_load(cfg)
        else:
            load = (
                f"{schedule.offered_rps:.1f} requests/s offered for {schedule.duration_s:g} s "
                f"({len(schedule)} requests, after {cfg.warmup:g} s warm-up"
            )
        console.print(
            f"aiosched loadtest: {url}, models {', '.join(schedule.models)}, "
            f"up to {pool} connections, {load})",
            highlight=False,
        )

    def line(p: Progress) -> None:
        console.print(
            f"[{p.elapsed_s:6.1f}/{p.window_s:.0f}s] sent {p.sent_rps:7.1f}/s "
            f"done {p.achieved_rps:7.1f}/s good {p.goodput_rps:7.1f}/s "
            f"miss {p.miss_pct:5.1f}% rejected {p.counts.rejected} failed {p.counts.failed}",
            highlight=False,
            soft_wrap=True,
        )

    interval = _print_every(cfg)
    report = run(
        run_http_loadtest(
            cfg,
            url,
            input_shape=shape,
            on_start=on_start,
            on_progress=line,
            progress_interval=interval,
            on_result=results.append,
        )
    )
    http = report["config"]["http"]
    statuses = ", ".join(f"{k}: {v}" for k, v in http["statuses"].items()) or "none"
    console.print(
        f"responses by status: {statuses} ({http['retry_after']} with Retry-After)",
        highlight=False,
    )
    return report, results[-1].series if results else None


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f} %"


def _how_found(peak: PeakResult, rate: float, mode: str) -> str:
    """The one line saying how the rate was found."""
    from ..loadgen.harness import AUTO_RATE_FRACTION

    tried = ", ".join(f"{s.rate_rps:.0f} {'ok' if s.passed else 'fail'}" for s in peak.steps)
    head = f"rate {mode}: tried {tried} (requests/s)"
    if not peak.found:
        return f"{head}; none met the SLO, running at the lowest tried, {rate:.1f}/s"
    bound = "" if peak.bounded else " (every step passed: at least)"
    if mode == "auto":
        return (
            f"{head}; peak {peak.peak_rps:.1f}/s{bound}, running at "
            f"{AUTO_RATE_FRACTION * 100:.0f} % of it = {rate:.1f}/s"
        )
    return f"{head}; peak {peak.peak_rps:.1f}/s{bound}, running at the peak"
