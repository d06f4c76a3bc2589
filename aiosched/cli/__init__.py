"""The ``aiosched`` command line: one module per command, each adding itself to :data:`app`."""

from __future__ import annotations

import importlib

import typer

from ._parse import OneLineErrors

__all__ = ["app", "main"]

app = typer.Typer(
    name="aiosched",
    cls=OneLineErrors,  # a bad value is one line and exit code 2, in every command
    help="Inference scheduling with predictable latency: load tests, profiles, experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Inference scheduling with predictable latency: load tests, profiles, experiments."""


# Each module defines ``register(app)``; a missing module is a packaging bug, not optional.
_COMMANDS = ("compare", "experiment", "loadtest", "profile", "version")


def _load_commands() -> None:
    for name in _COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(app)


_load_commands()


def main() -> None:
    app()
