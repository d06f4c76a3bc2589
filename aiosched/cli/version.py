"""``aiosched version``: the package, torch and event-loop versions."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print aiosched's version and what it runs on."""
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        import torch

        import aiosched

        try:
            loop = f"uvloop {dist_version('uvloop')}"
        except PackageNotFoundError:
            loop = "asyncio"
        cuda = torch.cuda.is_available()
        typer.echo(
            f"aiosched {aiosched.__version__}, torch {torch.__version__}, {loop}, cuda={cuda}"
        )
