"""Option parsing and errors shared by the commands.

Every bad value, whoever finds it (typer converting an option, or a
command's own checks raising :class:`typer.BadParameter`), ends the same
way: one line ``error: ...`` on stderr and exit code 2, never a traceback
and never typer's usage box (:class:`OneLineErrors`, the root group). Checks
that can fail cheaply run before the work does: a ``--json`` that cannot be
written, a run too large to generate, more lanes than the backend takes.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from ..errors import InvalidConfig

__all__ = [
    "MAX_REQUESTS",
    "OneLineErrors",
    "backend_option",
    "check_lanes",
    "check_requests",
    "check_writable",
    "bad",
    "deadline_spec",
    "DURATION_HELP",
    "fail",
    "finite",
    "milliseconds",
    "name_list",
    "optional_ms",
    "size_list",
]

#: The most requests one run may send: every send time is generated up front
#: (``--rate 1e9`` for 30 s would be 30 billion of them).
MAX_REQUESTS = 10_000_000


class OneLineErrors(TyperGroup):
    """The root command: a usage error is one line and exit code 2, not a usage box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            # Not standalone: click hands back what it would have printed and exited with.
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except _CLICK_ERROR as exc:
            error: Any = exc
            if type(exc).__name__ == "NoArgsIsHelpError":
                # The help is the message, and rich has printed it already: no error line.
                if error.format_message():
                    error.show()
            else:
                _error_line(error.format_message())
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


# typer vendors click (or depends on it, in older versions): its ClickException, the base
# of every usage error, is found where typer.BadParameter comes from.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def _error_line(message: str) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; ``raise fail(...)`` exits with ``code``."""
    _error_line(str(message))
    return typer.Exit(code)


def bad(message: object, hint: str | None = None) -> NoReturn:
    """A bad option value: one line and exit code 2 (:class:`OneLineErrors` prints it)."""
    raise typer.BadParameter(str(message), param_hint=hint)


def backend_option(value: str) -> str:
    from ..experiments.setup import BACKENDS

    if value not in BACKENDS:
        bad(f"{value!r} is not a backend; choose one of {', '.join(BACKENDS)}", "--backend")
    if value == "cuda":
        import torch

        if not torch.cuda.is_available():
            bad("torch sees no CUDA GPU here", "--backend")
    return value


#: How every option that takes a deadline or a latency says its unit in ``--help``.
DURATION_HELP = "ms; a unit may be given: 50ms, 0.05s, 50000us"

# The units a deadline or latency may carry, in milliseconds; a bare number is milliseconds.
_UNITS = {"ms": 1.0, "s": 1e3, "us": 1e-3}
_DURATION = re.compile(r"^\s*([-+]?[0-9.]+(?:e[-+]?[0-9]+)?|[a-z]+)\s*([a-z]*)\s*$")


def milliseconds(value: str | float, hint: str) -> float:
    """A deadline or latency option -> milliseconds: ``"50"``, ``"50ms"``, ``"0.05s"``, ``"50us"``.

    Every command reads deadlines and latencies through this one parser, so one
    number means the same in all of them: a bare number is milliseconds. The
    value must be finite and > 0.
    """
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _DURATION.match(value.lower())
        if match is None or match.group(2) not in ("", *_UNITS):
            bad(f"{value!r} is not a duration: give ms (50), or 50ms, 0.05s, 50000us", hint)
        unit = match.group(2)
        try:
            number = float(match.group(1))
        except ValueError:
            bad(f"{value!r} is not a number of milliseconds (or 50ms, 0.05s, 50000us)", hint)
    ms = number * _UNITS[unit or "ms"]
    if not (math.isfinite(ms) and ms > 0):
        bad(f"must be a finite duration > 0, got {value!r}", hint)
    return ms


def optional_ms(value: str | None, hint: str) -> float | None:
    """:func:`milliseconds`, where ``None`` (the option left out) stays ``None``."""
    return None if value is None else milliseconds(value, hint)


def deadline_spec(value: str | None, hint: str = "--deadline") -> str | None:
    """``--deadline`` of loadtest and compare in ms: ``"0.1s,a=50ms"`` -> ``"100.0,a=50.0"``.

    The spec is one default and/or ``model=value`` items; the library reads
    milliseconds (:func:`aiosched.loadgen.workload.parse_deadlines`) and checks
    the model names, repeats and empty items itself.
    """
    if value is None:
        return None
    items = []
    for item in value.split(","):
        name, eq, raw = item.rpartition("=") if "=" in item else ("", "", item)
        if not raw.strip():
            items.append(item)  # an empty item: the library's message names it
            continue
        items.append(f"{name.strip()}{eq}{milliseconds(raw, hint)!r}")
    return ",".join(items)


def name_list(value: str, hint: str) -> tuple[str, ...]:
    """``"a,b, c"`` -> ``("a", "b", "c")``; at least one name, none twice."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        bad("give at least one name", hint)
    if len(set(names)) != len(names):
        bad("a name is given twice", hint)
    return names


def size_list(value: str, hint: str = "--batch-sizes") -> tuple[int, ...]:
    """``"1,2,4,8"`` -> ``(1, 2, 4, 8)``: distinct integers >= 1, sorted."""
    try:
        sizes = sorted({int(s) for s in value.split(",") if s.strip()})
    except ValueError:
        bad(f"{value!r} is not a list of integers", hint)
    if not sizes or sizes[0] < 1:
        bad("batch sizes must be integers >= 1", hint)
    return tuple(sizes)


def finite(value: float | None, hint: str) -> None:
    """Refuse ``inf`` and ``nan`` (typer parses both as floats), where ``None`` means unset."""
    if value is not None and not math.isfinite(value):
        bad(f"must be a finite number, got {value}", hint)


def check_requests(rate: float | None, duration: float | None, hint: str = "--rate") -> None:
    """Refuse a run of more than :data:`MAX_REQUESTS` sends (rate x duration)."""
    finite(rate, hint)
    if rate is None or duration is None:
        return
    total = rate * duration
    if total > MAX_REQUESTS:
        bad(
            f"{rate:g} requests/s for {duration:g} s is {total:.3g} requests; a run sends at "
            f"most {MAX_REQUESTS:,} (every send time is generated up front)",
            hint,
        )


def check_lanes(backend: str, lanes: int | None, hint: str = "--lanes") -> None:
    """Refuse, before any run, a lane count the backend would refuse (cores, the cap)."""
    if lanes is None:
        return
    from ..backends import make_backend

    try:
        make_backend(backend, lanes)  # builds nothing that runs: lanes start in start()
    except InvalidConfig as exc:
        bad(exc, hint)


def check_writable(path: Path, hint: str = "--json") -> None:
    """Fail now (exit 2), not after the run, if ``path`` cannot be written; leaves no file."""
    if path.is_dir():
        bad(f"{str(path)!r} is a directory", hint)
    existed = path.exists()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        bad(f"cannot write {str(path)!r}: {exc.strerror or exc}", hint)
    if not existed:
        with contextlib.suppress(OSError):
            os.unlink(path)
