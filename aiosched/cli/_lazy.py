"""The root command group, which imports a command's module only when that command runs.

Every command module imports the scheduler, and through it torch (seconds
to import), at the latest when the command runs; ``aiosched --help`` and
``aiosched --version`` import none of them. The root help lists the
commands from :data:`COMMANDS`, a one-line summary each, without importing
them; a test checks each summary against the command's own docstring.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand

from ._parse import OneLineErrors

__all__ = ["COMMANDS", "LazyCommands"]

#: Command name -> (module under ``aiosched.cli`` defining ``register(app)``, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": (
        "compare",
        "Run several (policy, predictor) contenders on identical arrivals at several rates.",
    ),
    "experiment": ("experiment", "Experiments behind the README's figures."),
    "loadtest": (
        "loadtest",
        "Drive an open-loop workload through the scheduler and report latency and goodput.",
    ),
    "mlperf": (
        "mlperf",
        "Run MLPerf LoadGen against the embedded scheduler and print LoadGen's summary.",
    ),
    "profile": ("profile", "Measure solo latency and throughput per model and batch size."),
    "report": (
        "report",
        "Draw figures and an HTML page from loadtest, compare and timeline files.",
    ),
    "version": ("version", "Print aiosched's version and what it runs on."),
}


class LazyCommands(OneLineErrors):
    """:class:`OneLineErrors` whose commands are imported on first use (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | COMMANDS.keys())

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        loaded = super().get_command(ctx, cmd_name)
        if loaded is not None or cmd_name not in COMMANDS:
            return loaded
        summary = COMMANDS[cmd_name][1]
        if self._listing:  # the root help: a name and a line, nothing imported
            return TyperCommand(cmd_name, help=summary, short_help=summary)
        return self.load(cmd_name)

    def load(self, cmd_name: str) -> Any:
        """Import the command's module and add its command to this group."""
        module_name, _ = COMMANDS[cmd_name]
        module = importlib.import_module(f"{__package__}.{module_name}")
        holder = typer.Typer()
        module.register(holder)
        command = typer.main.get_group(holder).get_command(None, cmd_name)  # type: ignore[arg-type]
        if command is None:
            raise RuntimeError(f"aiosched.cli.{module_name} defines no command {cmd_name!r}")
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
