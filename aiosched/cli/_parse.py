"""Option parsing shared by the ``profile`` and ``experiment`` commands.

Bad values become :class:`typer.BadParameter`: a usage message and exit
code 2, never a traceback.
"""

from __future__ import annotations

import typer

from ..experiments.setup import BACKENDS

__all__ = ["backend_option", "name_list", "size_list"]


def backend_option(value: str) -> str:
    if value not in BACKENDS:
        raise typer.BadParameter(
            f"{value!r} is not a backend; choose one of {', '.join(BACKENDS)}",
            param_hint="--backend",
        )
    if value == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise typer.BadParameter("torch sees no CUDA GPU here", param_hint="--backend")
    return value


def name_list(value: str, hint: str) -> tuple[str, ...]:
    """``"a,b, c"`` -> ``("a", "b", "c")``; at least one name, none twice."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise typer.BadParameter("give at least one name", param_hint=hint)
    if len(set(names)) != len(names):
        raise typer.BadParameter("a name is given twice", param_hint=hint)
    return names


def size_list(value: str, hint: str = "--batch-sizes") -> tuple[int, ...]:
    """``"1,2,4,8"`` -> ``(1, 2, 4, 8)``: distinct integers >= 1, sorted."""
    try:
        sizes = sorted({int(s) for s in value.split(",") if s.strip()})
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a list of integers", param_hint=hint) from None
    if not sizes or sizes[0] < 1:
        raise typer.BadParameter("batch sizes must be integers >= 1", param_hint=hint)
    return tuple(sizes)
