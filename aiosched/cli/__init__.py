"""The ``aiosched`` command line: one module per command, imported when that command runs.

``aiosched --help``, ``aiosched --version`` and ``aiosched loadtest --help``
import no torch (:mod:`aiosched.cli._lazy`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from ._lazy import LazyCommands

__all__ = ["app", "main"]

app = typer.Typer(
    name="aiosched",
    cls=LazyCommands,  # a bad value is one line and exit code 2, in every command
    help="Inference scheduling with predictable latency: load tests, profiles, experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"aiosched {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print aiosched's version and exit.",
        ),
    ] = False,
) -> None:
    """Inference scheduling with predictable latency: load tests, profiles, experiments."""


def main() -> None:
    app(prog_name="aiosched")
