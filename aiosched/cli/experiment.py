"""``aiosched experiment``: the figures the README quotes.

- ``experiment predictors``: every predictor's error on a recorded workload
  (the paper's Fig. 5) and their recovery from drift
  (:mod:`aiosched.experiments.predictors`).
- ``experiment recovery``: attainment after a slowdown on sim, per predictor
  with admission: whether admission locks the scheduler out
  (:mod:`aiosched.experiments.recovery`).
- ``experiment deadlines``: the scheduler with one predictor against
  another on the same arrivals (:mod:`aiosched.experiments.deadlines`).
- ``experiment colocation``: p99 latency against 1..k co-located tasks of one
  model, sequential against concurrent (the paper's Fig. 3;
  :mod:`aiosched.experiments.colocation`).

The logic lives in the library; this module parses options and renders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._choices import DEVICE_BACKENDS, PREDICTORS
from ._parse import (
    DURATION_HELP,
    backend_option,
    bad,
    check_lanes,
    check_requests,
    check_writable,
    fail,
    finite,
    milliseconds,
    name_list,
    optional_ms,
    size_list,
)

if TYPE_CHECKING:
    from rich.table import Table


def register(app: typer.Typer) -> None:
    experiment = typer.Typer(help="Experiments behind the README's figures.", no_args_is_help=True)
    app.add_typer(experiment, name="experiment")

    @experiment.command()
    def predictors(
        backend: Annotated[str, typer.Option("--backend", help=f"{DEVICE_BACKENDS}.")] = "sim",
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results here.")
        ] = None,
        models: Annotated[
            str | None, typer.Option("--models", help="Comma-separated model names.")
        ] = None,
        lanes: Annotated[
            int | None, typer.Option("--lanes", min=1, help="Concurrent lanes.")
        ] = None,
        rate: Annotated[
            float | None, typer.Option("--rate", min=0.001, help="Total requests/s.")
        ] = None,
        deadline: Annotated[
            str | None,
            typer.Option("--deadline", help=f"Every request's deadline: {DURATION_HELP}."),
        ] = None,
        duration: Annotated[
            float | None,
            typer.Option("--duration", min=0.1, help="Seconds of traffic in the accuracy trace."),
        ] = None,
        drift: Annotated[
            bool, typer.Option("--drift/--no-drift", help="Run the drift scenario.")
        ] = True,
        drift_duration: Annotated[
            float | None,
            typer.Option(
                "--drift-duration", min=0.1, help="Seconds of traffic in the drift trace."
            ),
        ] = None,
        seed: Annotated[
            int, typer.Option("--seed", min=0, help="Seed of the arrivals and the sim backend.")
        ] = 0,
    ) -> None:
        """Predictor error (MAPE, p95 APE) on a 75/25 split, and recovery from drift."""
        _lanes_cap(lanes)
        deadline_s = _seconds(optional_ms(deadline, "--deadline"))
        from rich.console import Console

        from ..errors import InvalidConfig
        from ..experiments.predictors import PredictorsConfig, run
        from ..experiments.setup import check_models

        backend = backend_option(backend)
        names = name_list(models, "--models") if models is not None else None
        try:
            if names is not None:
                check_models(backend, names)
            config = PredictorsConfig.for_backend(
                backend,
                models=names,
                lanes=lanes,
                rate=rate,
                deadline=deadline_s,
                duration=duration,
                drift=drift,
                drift_duration=drift_duration,
                seed=seed,
            )
            config.validate()
        except InvalidConfig as exc:
            bad(exc)
        for value, hint in (
            (rate, "--rate"),
            (duration, "--duration"),
            (drift_duration, "--drift-duration"),
        ):
            finite(value, hint)
        check_requests(config.rate, config.duration)
        if config.drift:
            check_requests(config.rate, config.drift_duration)
        check_lanes(backend, config.lanes)
        if json_path is not None:
            check_writable(json_path)
        console = Console()
        with console.status("starting") as status:
            report = run(config, on_stage=lambda s: status.update(s))
        data = report.to_dict()
        console.print(accuracy_table(data))
        if data["drift"]:
            console.print(drift_table(data))
        console.print(f"{data['trace']['executions']} executions; {data['wall_s']:.1f} s wall")
        _write(json_path, data, console)

    @experiment.command()
    def deadlines(
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results here.")
        ] = None,
        predictor: Annotated[
            list[str] | None,
            typer.Option(
                "--predictor",
                help=f"A predictor: {PREDICTORS}; repeat the option for more.",
            ),
        ] = None,
        models: Annotated[
            str | None, typer.Option("--models", help="Comma-separated sim models.")
        ] = None,
        lanes: Annotated[int | None, typer.Option("--lanes", min=1)] = None,
        rate: Annotated[
            float | None, typer.Option("--rate", min=0.001, help="Total requests/s.")
        ] = None,
        deadline: Annotated[
            str | None,
            typer.Option("--deadline", help=f"Every request's deadline: {DURATION_HELP}."),
        ] = None,
        duration: Annotated[
            float | None, typer.Option("--duration", min=0.1, help="Seconds.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    ) -> None:
        """Met-deadline fraction of the scheduler with each predictor, same arrivals (sim)."""
        _lanes_cap(lanes)
        deadline_s = _seconds(optional_ms(deadline, "--deadline"))
        from rich.console import Console

        from ..errors import InvalidConfig
        from ..experiments.deadlines import DeadlinesConfig, compare

        try:
            config = DeadlinesConfig().with_overrides(
                predictors=tuple(predictor) if predictor else None,
                models=name_list(models, "--models") if models is not None else None,
                lanes=lanes,
                rate=rate,
                deadline=deadline_s,
                duration=duration,
                seed=seed,
            )
            config.validate()
        except InvalidConfig as exc:
            bad(exc)
        for value, hint in ((rate, "--rate"), (duration, "--duration")):
            finite(value, hint)
        check_requests(config.rate, config.duration)
        if json_path is not None:
            check_writable(json_path)
        console = Console()
        with console.status("running the workload once per predictor"):
            data = compare(config)
        console.print(deadlines_table(data))
        _write(json_path, data, console)

    @experiment.command()
    def colocation(
        backend: Annotated[str, typer.Option("--backend", help=f"{DEVICE_BACKENDS}.")] = "sim",
        model: Annotated[
            str | None,
            typer.Option(
                "--model",
                help="The model (default: resnet50 on sim and cuda, mobilenet_v3_small on cpu).",
            ),
        ] = None,
        tasks: Annotated[
            str | None,
            typer.Option(
                "--tasks",
                help="Co-located tasks: a maximum (8 means 1..8) or 1,2,4,8 (default 8; on cpu "
                "one a core).",
            ),
        ] = None,
        batch_size: Annotated[
            int, typer.Option("--batch-size", min=1, help="Batch size of every task.")
        ] = 1,
        duration: Annotated[
            float | None,
            typer.Option(
                "--duration",
                min=0.001,
                help="Seconds of traffic per point (default 10 on sim, 2 on cpu and cuda).",
            ),
        ] = None,
        batches: Annotated[
            int | None,
            typer.Option("--batches", min=1, help="Stop a point after this many batches a task."),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results here.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the sim backend.")] = 0,
    ) -> None:
        """p50/p99 latency and throughput of 1..k closed-loop tasks, sequential vs concurrent."""
        from rich.console import Console

        from ..errors import InvalidConfig
        from ..experiments.colocation import ColocationConfig, run

        backend = backend_option(backend)
        if tasks is None:
            # Concurrent tasks each take a lane: on cpu, a lane a core is the most there is.
            from ..backends.cpu import usable_cores

            tasks = str(usable_cores()) if backend == "cpu" else "8"
        counts = task_counts(tasks)
        check_lanes(backend, max(counts), "--tasks")
        if json_path is not None:
            check_writable(json_path, "--json")
        try:
            config = ColocationConfig(
                backend=backend,
                model=model,
                tasks=counts,
                batch_size=batch_size,
                duration=duration,
                batches=batches,
                seed=seed,
            )
            config.validate()
        except InvalidConfig as exc:
            bad(exc)
        console = Console()
        with console.status("starting") as status:
            data = run(config, on_stage=lambda s: status.update(s))
        console.print(colocation_table(data))
        console.print(
            f"{sum(r['batches'] for r in data['points'])} batches; {data['wall_s']:.1f} s wall"
        )
        _write(json_path, data, console)

    @experiment.command()
    def recovery(
        rate: Annotated[float, typer.Option("--rate", min=0.001, help="Requests/s.")] = 600.0,
        deadline: Annotated[
            str, typer.Option("--deadline", help=f"Every request's deadline: {DURATION_HELP}.")
        ] = "50",
        slowdown: Annotated[
            float, typer.Option("--slowdown", min=1.0, help="How many times slower.")
        ] = 20.0,
        slow_at: Annotated[float, typer.Option("--slow-at", min=0.0, help="Seconds.")] = 2.0,
        slow_for: Annotated[float, typer.Option("--slow-for", min=0.001, help="Seconds.")] = 1.0,
        duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds.")] = 10.0,
        predictors: Annotated[
            str | None,
            typer.Option("--predictors", help=f"Comma-separated: {PREDICTORS}; default: all."),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results here.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the arrivals.")] = 0,
    ) -> None:
        """Sim: attainment after a slowdown, per predictor with admission (does it lock out?)."""
        from rich.console import Console

        from ..errors import InvalidConfig
        from ..experiments.recovery import PREDICTORS, RecoveryConfig, run
        from ..predict import make_predictor

        deadline_ms = milliseconds(deadline, "--deadline")
        for value, hint in (
            (slowdown, "--slowdown"),
            (slow_at, "--slow-at"),
            (slow_for, "--slow-for"),
            (duration, "--duration"),
        ):
            finite(value, hint)
        check_requests(rate, duration)
        if json_path is not None:
            check_writable(json_path, "--json")
        names = PREDICTORS if predictors is None else name_list(predictors, "--predictors")
        config = RecoveryConfig(
            rate=rate,
            deadline=deadline_ms / 1e3,
            slowdown=slowdown,
            slow_at=slow_at,
            slow_for=slow_for,
            duration=duration,
            predictors=tuple(names),
            seed=seed,
        )
        try:
            config.validate()
            for name in names:
                make_predictor(name)
        except InvalidConfig as exc:
            bad(exc)
        console = Console()
        with console.status("running"):
            data = run(config)
        console.print(recovery_table(data))
        _write(json_path, data, console)


def task_counts(value: str) -> tuple[int, ...]:
    """``"8"`` -> ``(1, ..., 8)``; ``"1,2,4"`` -> ``(1, 2, 4)``."""
    if "," not in value:
        try:
            top = int(value)
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is not a task count or a list of them", param_hint="--tasks"
            ) from None
        if top < 1:
            raise typer.BadParameter("task counts must be integers >= 1", param_hint="--tasks")
        return tuple(range(1, top + 1))
    try:
        return size_list(value, "--tasks")
    except typer.BadParameter:
        raise typer.BadParameter(
            f"{value!r} is not a list of task counts >= 1", param_hint="--tasks"
        ) from None


def _write(path: Path | None, data: dict[str, Any], console: Any) -> None:
    if path is not None:
        try:
            path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
        except OSError as exc:  # checked before the run; this is what changed since
            raise fail(f"cannot write {path}: {exc}") from None
        console.print(f"results written to {path}")


def _finite(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _count(value: int | None) -> str:
    return "never" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 100:.1f} %"


def accuracy_table(data: dict[str, Any]) -> Table:
    from rich.table import Table

    config = data["config"]
    table = Table(
        title=(
            f"Prediction error on the last 25 % of the trace ({config['backend']}, "
            f"{config['lanes']} lanes, {len(config['models'])} models)"
        )
    )
    columns = ("predictor", "MAPE", "p95 APE", "MAPE, no profile", "p95, no profile", "n")
    for column in columns:
        # fold, never "…": a number too wide for 80 columns breaks, it is not cut
        table.add_column(
            column, justify="left" if column == "predictor" else "right", overflow="fold"
        )
    bare = data.get("predictors_without_profile") or {}
    for name, row in data["predictors"].items():
        other = bare.get(name, {})
        table.add_row(
            name,
            _pct(row["mape"]),
            _pct(row["p95_ape"]),
            _pct(other.get("mape")),
            _pct(other.get("p95_ape")),
            str(row["count"]),
        )
    return table


def drift_table(data: dict[str, Any]) -> Table:
    from rich.table import Table

    rec = data["recovery"]
    table = Table(
        title=(
            "Drift: error before and after, and executions until the mean APE of the last "
            f"{rec['window']} is back under {rec['threshold'] * 100:.0f} %"
        )
    )
    relative = rec["relative_to_before"]
    columns = ("predictor", "MAPE before", "MAPE after", "recovery", f"to {relative:g}x before")
    for column in columns:
        # fold, never "…": a number too wide for 80 columns breaks, it is not cut
        table.add_column(
            column, justify="left" if column == "predictor" else "right", overflow="fold"
        )
    for name, row in data["drift"].items():
        table.add_row(
            name,
            _pct(row["mape_before"]),
            _pct(row["mape_after"]),
            _count(row["recovery_executions"]),
            _count(row["recovery_to_before_executions"]),
        )
    return table


def deadlines_table(data: dict[str, Any]) -> Table:
    from rich.table import Table

    config = data["config"]
    table = Table(
        title=(
            f"Deadlines met, same arrivals (sim, {config['lanes']} lanes, "
            f"{config['rate']:g} req/s, deadline {config['deadline'] * 1e3:g} ms)"
        )
    )
    for column in ("predictor", "met", "rejected", "late", "submitted", "predictor MAPE"):
        # fold, never "…": a number too wide for 80 columns breaks, it is not cut
        table.add_column(
            column, justify="left" if column == "predictor" else "right", overflow="fold"
        )
    for name, row in data["results"].items():
        table.add_row(
            name,
            _pct(row["met"]),
            str(row["rejected"]),
            str(row["missed_deadline"]),
            str(row["submitted"]),
            _pct(row["predictor_mape"]),
        )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 1e3:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def colocation_table(data: dict[str, Any]) -> Table:
    from rich.table import Table

    config = data["config"]
    solo = data["solo"]["mean_s"]
    table = Table(
        title=(
            f"k co-located tasks of {config['model']} at batch {config['batch_size']} "
            f"({config['backend']}, {config['duration']:g} s a point): "
            f"solo mean {_ms(solo)} ms"
        )
    )
    # samples/s is batches/s at batch 1: the column only when it says something.
    samples = config["batch_size"] > 1
    columns = ["k", "mode", "p50 ms", "p99 ms", "p99/solo", "batches/s"]
    columns += ["samples/s", "n"] if samples else ["n"]
    for column in columns:
        if column == "mode":
            table.add_column(column, min_width=len("sequential"), overflow="fold")
        else:
            table.add_column(column, justify="right", overflow="fold")
    previous = None
    for row in data["points"]:
        if previous is not None and row["tasks"] != previous:
            table.add_section()
        previous = row["tasks"]
        cells = [
            str(row["tasks"]),
            row["mode"],
            _ms(row["p50_s"]),
            _ms(row["p99_s"]),
            _num(row["p99_over_solo"], 2),
            _num(row["batches_per_s"]),
        ]
        cells += (
            [_num(row["samples_per_s"]), str(row["batches"])] if samples else [str(row["batches"])]
        )
        table.add_row(*cells)
    return table


def recovery_table(data: dict[str, Any]) -> Table:
    from rich import box
    from rich.table import Table

    c = data["config"]
    table = Table(
        title=(
            f"{c['model']} at {c['rate']:g}/s, {c['deadline'] * 1e3:g} ms deadline, "
            f"{c['slowdown']:g}x slower from {c['slow_at']:g} s for {c['slow_for']:g} s "
            f"(sim, {c['lanes']} lanes)"
        ),
        caption=(
            "after: from the slowdown's end; back after: seconds until deadlines are met "
            "again; batch: mean / largest; co-loc: executions beside another"
        ),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("predictor", overflow="fold")
    # Two-line headers: the figures keep their width at 80 columns, and the names fold.
    for column in (
        "admit",
        "met\nafter",
        "back\nafter s",
        "met\noverall",
        "batch\nafter",
        "co-loc\nafter",
    ):
        table.add_column(column, justify="right", no_wrap=True, overflow="fold")
    for run in data["runs"]:
        rec = run["recovered_after_s"]
        mean, largest, colocated = (
            run.get("mean_batch_after"),
            run.get("largest_batch_after"),
            run.get("colocated_after"),
        )
        table.add_row(
            run["predictor"],
            "yes" if run["admission"] else "no",
            f"{run['met_after_slowdown'] * 100:.1f} %",
            "never" if rec is None else f"{rec:.2f}",
            f"{run['met'] * 100:.1f} %",
            "-" if mean is None else f"{mean:.2f} / {largest}",
            "-" if colocated is None else f"{colocated * 100:.0f} %",
        )
    return table


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1e3


def _lanes_cap(lanes: int | None) -> None:
    """``--lanes`` above the backends' cap: one line and exit 2 (the cap lives with torch)."""
    from ..backends.base import MAX_LANES

    if lanes is not None and lanes > MAX_LANES:
        bad(f"{lanes} is more than the {MAX_LANES} lanes a backend takes", "--lanes")
