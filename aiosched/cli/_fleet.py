"""``aiosched loadtest --devices``: the options of a fleet, and its table in the summary.

``--devices N`` is N devices of ``--backend`` (sim: N simulated devices,
each with its own seed; cpu: N devices that share the host's cores; cuda:
``cuda:0`` to ``cuda:N-1``), ``--devices cuda:0,cuda:2`` GPUs by name. The
run itself is the harness's (:mod:`aiosched.loadgen.fleet_load`); this
module turns the options into device names, refusing bad ones with one line,
and draws the report's ``fleet`` section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.table import Table

from ._parse import bad, milliseconds
from ._render import number_columns

__all__ = ["MAX_DEVICES", "device_names", "rebalance_seconds", "render_devices"]

MAX_DEVICES = 64
"""The most devices ``--devices N`` makes: each is a scheduler with its own lanes."""

_GPU = re.compile(r"^cuda:(\d+)$")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_names(value: str, backend: str) -> tuple[str, tuple[str, ...]]:
    """``--devices`` -> (the backend, the fleet's device names); bad values exit 2.

    ``backend`` is ``--backend`` as given (``auto`` resolves as without a fleet,
    and to cuda for a list of GPUs).
    """
    text = value.strip()
    try:
        count: int | None = int(text)
    except ValueError:
        count = None
    if count is not None:
        if not 1 <= count <= MAX_DEVICES:
            bad(f"give a number of devices from 1 to {MAX_DEVICES}, got {count}", "--devices")
        from ..loadgen.harness import resolve_backend

        resolved = resolve_backend(backend)
        if resolved != "cuda":
            return resolved, (resolved,) * count
        names = tuple(f"cuda:{i}" for i in range(count))
    else:
        names = tuple(n.strip() for n in text.split(","))
        wrong = [n for n in names if not _GPU.match(n)]
        if wrong:
            bad(
                f"{wrong[0]!r} is not a device: give a number of devices, or GPUs by name "
                "(cuda:0,cuda:2)",
                "--devices",
            )
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            bad(f"{twice} is given twice: each device runs once", "--devices")
        if backend not in ("auto", "cuda"):
            bad(f"cuda devices do not run on --backend {backend}", "--devices")
    seen = _gpus()
    missing = [n for n in names if int(n.partition(":")[2]) >= seen]
    if missing:
        bad(f"torch sees {seen} CUDA GPU(s); there is no {missing[0]}", "--devices")
    return "cuda", names


def rebalance_seconds(value: str | None) -> float | None:
    """``--rebalance-every``: ms (a unit allowed) -> seconds; ``off`` -> 0; unset -> ``None``."""
    if value is None:
        return None
    if value.strip().lower() == "off":
        return 0.0
    from ..fleet.config import MIN_REBALANCE_S  # not at import: --help loads no torch

    seconds = milliseconds(value, "--rebalance-every") / 1e3
    if seconds < MIN_REBALANCE_S:
        bad(
            f"--rebalance-every must be at least {MIN_REBALANCE_S * 1e3:g} ms (or off), got {value}"
        )
    return seconds


def render_devices(report: Mapping[str, Any]) -> Table:
    """The report's ``fleet`` section: one row per device, and the rebalance's moves.

    Every figure covers the measured run; the models are those placed on the
    device at the end. 80 columns wide: a long list of models folds.
    """
    fleet = report["fleet"]
    table = Table(
        title="per device (the whole run)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("device", no_wrap=True)
    number_columns(table, "took", "done", "met", "rejected", "failed", "goodput/s", "busy")
    table.add_column("models at the end", overflow="fold")
    every = len(fleet["placement"])
    for d in fleet["devices"]:
        busy = d["lanes_busy"]
        placed = d["models"]
        models = f"all {every}" if every > 1 and len(placed) == every else ", ".join(placed)
        table.add_row(
            d["label"] if d["live"] else f"{d['label']} (lost)",
            str(d["submitted"]),
            str(d["completed"]),
            str(d["met_deadline"]),
            str(d["rejected"]),
            str(d["failed"]),
            "-" if d["goodput_rps"] is None else f"{d['goodput_rps']:.1f}",
            "-" if busy is None else f"{busy:.2f}/{d['lanes']}",
            models or "-",
        )
    replicas = ", ".join(f"{m} {len(ds)}" for m, ds in fleet["placement"].items())
    table.caption = (
        f"took: requests routed to the device, done: completed there; busy: mean lanes "
        "running a batch. "
        f"Rebalance during the run: {fleet['grown']} replicas grown, {fleet['shrunk']} shrunk; "
        f"replicas at the end: {replicas}"
    )
    return table
