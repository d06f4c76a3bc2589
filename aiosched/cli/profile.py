"""``aiosched profile``: each model's solo latency and throughput by batch size (Fig. 2).

Runs every model at every batch size alone on one lane of the backend
(warm-up runs first, unrecorded), shows a progress bar while it runs and a
table at the end, and can save the profile as JSON for
:meth:`aiosched.predict.Predictor.seed`. Heavy imports (torch, the
backends) wait until the command runs, so the rest of the CLI starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._choices import DEVICE_BACKENDS
from ._parse import backend_option, bad, check_writable, fail, name_list, size_list

if TYPE_CHECKING:
    from rich.table import Table

    from ..predict.profile import Profile


def register(app: typer.Typer) -> None:
    @app.command()
    def profile(
        backend: Annotated[str, typer.Option("--backend", help=f"{DEVICE_BACKENDS}.")] = "sim",
        models: Annotated[
            str | None,
            typer.Option(
                "--models", help="Comma-separated model names (default: the backend's set)."
            ),
        ] = None,
        batch_sizes: Annotated[
            str, typer.Option("--batch-sizes", help="Comma-separated sizes.")
        ] = "1,2,4,8",
        repeats: Annotated[
            int, typer.Option("--repeats", min=1, help="Recorded runs per size.")
        ] = 10,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Unrecorded runs first.")] = 2,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the profile here.")
        ] = None,
    ) -> None:
        """Measure solo latency and throughput per model and batch size."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from ..errors import AioschedError, InvalidConfig
        from ..experiments.setup import CPU_MODELS, CUDA_MODELS, SIM_MODELS, check_models
        from ..spec import MAX_BATCH_SIZE

        backend = backend_option(backend)
        default = {"sim": SIM_MODELS, "cpu": CPU_MODELS}.get(backend, CUDA_MODELS)
        names = name_list(models, "--models") if models is not None else default
        sizes = size_list(batch_sizes)
        if sizes[-1] > MAX_BATCH_SIZE:
            bad(f"batch sizes must be <= {MAX_BATCH_SIZE}, got {sizes[-1]}", "--batch-sizes")
        try:
            check_models(backend, names)
        except InvalidConfig as exc:
            bad(exc, "--models")
        if json_path is not None:
            check_writable(json_path)  # now, not after the run
        console = Console()
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        )
        task = progress.add_task("profiling", total=len(names) * len(sizes) * (repeats + warmup))

        def on_run(model: str, b: int) -> None:
            progress.update(task, advance=1, description=f"{model} x{b}")

        try:
            with progress:
                result = measure_profile(backend, names, sizes, repeats, warmup, on_run)
        except AioschedError as exc:
            raise fail(f"profile failed: {exc}", 1) from None
        console.print(render(result))
        if json_path is not None:
            try:
                result.save(json_path)
            except OSError as exc:
                raise fail(f"cannot write {json_path}: {exc}") from None
            console.print(f"profile written to {json_path}")


def measure_profile(
    backend: str,
    names: tuple[str, ...],
    sizes: tuple[int, ...],
    repeats: int,
    warmup: int,
    on_run: Callable[[str, int], None] | None = None,
) -> Profile:
    """Profile ``names`` on a fresh one-lane ``backend`` (virtual time on sim)."""
    from .. import simtime
    from .._runtime import run
    from ..experiments.setup import experiment_backend, load_models
    from ..predict.profile import measure

    entries = load_models(backend, names)
    specs = [e.spec(max(sizes)) for e in entries]
    device = experiment_backend(backend, 1)
    coro = measure(device, specs, sizes, repeats=repeats, warmup=warmup, on_run=on_run)
    if backend == "sim":
        return simtime.run(coro)
    return run(coro, use_uvloop=False)


def render(profile: Profile) -> Table:
    """The profile as a rich table: latency and throughput against batch size."""
    from rich.table import Table

    table = Table(title=f"Solo profile ({profile.backend}): latency and throughput by batch size")
    for column in ("model", "batch", "median ms", "p99 ms", "samples/s", "runs"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for name, points in profile.models.items():
        for i, (b, p) in enumerate(sorted(points.items())):
            table.add_row(
                name if i == 0 else "",
                str(b),
                f"{p.median * 1e3:.2f}",
                f"{p.p99 * 1e3:.2f}",
                f"{p.throughput:.1f}",
                str(p.samples),
            )
        table.add_section()
    return table
