"""``aiosched experiment``: the figures the README quotes.

- ``experiment predictors``: every predictor's error on a recorded workload
  (the paper's Fig. 5) and their recovery from drift
  (:mod:`aiosched.experiments.predictors`).
- ``experiment deadlines``: the scheduler with one predictor against
  another on the same arrivals (:mod:`aiosched.experiments.deadlines`).

The logic lives in the library; this module parses options and renders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._parse import backend_option, name_list

if TYPE_CHECKING:
    from rich.table import Table


def register(app: typer.Typer) -> None:
    experiment = typer.Typer(help="Experiments behind the README's figures.", no_args_is_help=True)
    app.add_typer(experiment, name="experiment")

    @experiment.command()
    def predictors(
        backend: Annotated[str, typer.Option("--backend", help="sim, cpu or cuda.")] = "sim",
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
            float | None, typer.Option("--deadline", min=1e-6, help="Seconds.")
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
            int, typer.Option("--seed", help="Seed of the arrivals and the sim backend.")
        ] = 0,
    ) -> None:
        """Predictor error (MAPE, p95 APE) on a 75/25 split, and recovery from drift."""
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
                deadline=deadline,
                duration=duration,
                drift=drift,
                drift_duration=drift_duration,
                seed=seed,
            )
            config.validate()
        except InvalidConfig as exc:
            raise typer.BadParameter(str(exc)) from None
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
                help="A predictor, optionally with options (overlap:quantile=0.9); repeat it.",
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
            float | None, typer.Option("--deadline", min=1e-6, help="Seconds.")
        ] = None,
        duration: Annotated[
            float | None, typer.Option("--duration", min=0.1, help="Seconds.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Met-deadline fraction of the scheduler with each predictor, same arrivals (sim)."""
        from rich.console import Console

        from ..errors import InvalidConfig
        from ..experiments.deadlines import DeadlinesConfig, compare

        try:
            config = DeadlinesConfig().with_overrides(
                predictors=tuple(predictor) if predictor else None,
                models=name_list(models, "--models") if models is not None else None,
                lanes=lanes,
                rate=rate,
                deadline=deadline,
                duration=duration,
                seed=seed,
            )
            config.validate()
        except InvalidConfig as exc:
            raise typer.BadParameter(str(exc)) from None
        console = Console()
        with console.status("running the workload once per predictor"):
            data = compare(config)
        console.print(deadlines_table(data))
        _write(json_path, data, console)


def _write(path: Path | None, data: dict[str, Any], console: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
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
        table.add_column(column, justify="left" if column == "predictor" else "right")
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
        table.add_column(column, justify="left" if column == "predictor" else "right")
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
        table.add_column(column, justify="left" if column == "predictor" else "right")
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
