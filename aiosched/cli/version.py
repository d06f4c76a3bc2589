"""``aiosched version``: the package, torch and event-loop versions.

Versions are read from the installed distributions, so the command imports
no torch (seconds); ``--verbose`` imports it to say whether it sees a CUDA GPU.
"""

from __future__ import annotations

from typing import Annotated

import typer


def _installed(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


def register(app: typer.Typer) -> None:
    @app.command()
    def version(
        verbose: Annotated[
            bool,
            typer.Option(
                "--verbose", "-v", help="Also import torch and say whether it sees a CUDA GPU."
            ),
        ] = False,
    ) -> None:
        """Print aiosched's version and what it runs on."""
        from .._version import __version__

        uvloop = _installed("uvloop")
        loop = "asyncio" if uvloop is None else f"uvloop {uvloop}"
        torch_version = _installed("torch") or "not installed"
        if not verbose:
            typer.echo(f"aiosched {__version__}, torch {torch_version}, {loop}")
            return
        import torch

        cuda = torch.cuda.is_available()
        device = f" ({torch.cuda.get_device_name(0)})" if cuda else ""
        typer.echo(
            f"aiosched {__version__}, torch {torch.__version__}, {loop}, cuda={cuda}{device}"
        )
