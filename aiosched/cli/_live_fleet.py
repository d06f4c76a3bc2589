"""The live view of ``aiosched loadtest --devices``: the fleet's devices and replicas.

The same rates as one scheduler's view (:mod:`aiosched.cli._live`), then a
row per device (now: queue, running, lanes busy, the load routed to it, the
models placed) and a row per model (its replicas now, and its requests since
the start), drawn from a :class:`~aiosched.FleetSnapshot`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..loadgen import Progress
from ..loadgen.result import RequestCounts
from ._live import progress_bar, rates_table, window_figures
from ._render import number_columns

if TYPE_CHECKING:  # aiosched.fleet imports torch
    from ..fleet import FleetSnapshot

__all__ = ["fleet_live_view", "fleet_plain_line"]


def _busy(snap: FleetSnapshot) -> tuple[int, int]:
    lanes = [lane for d in snap.devices for lane in d.lanes]
    return sum(lane.busy for lane in lanes), len(lanes)


def _replicas(snap: FleetSnapshot) -> str:
    return ",".join(f"{m}={len(ds)}" for m, ds in snap.placement.items())


def fleet_plain_line(p: Progress, snap: FleetSnapshot, offered_rps: float) -> str:
    """One plain line (pipes, ``--no-live``): the rates, then the fleet now."""
    busy, lanes = _busy(snap)
    return (
        f"{window_figures(p, offered_rps)} | now: queue {snap.queue_depth} lanes {busy}/{lanes} "
        f"on {len(snap.labels)} devices | replicas {_replicas(snap)} | "
        f"rebalance so far: grown {snap.grown}, shrunk {snap.shrunk}"
    )


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.1f}"


def fleet_live_view(p: Progress, snap: FleetSnapshot, offered_rps: float) -> RenderableType:
    """The live view of a fleet: rates, devices, models with their replicas, progress."""
    busy, lanes = _busy(snap)
    now = Text(
        f"now: {len(snap.labels)} devices, {busy}/{lanes} lanes busy, {snap.queue_depth} "
        f"queued; rebalance so far: {snap.grown} replicas grown, {snap.shrunk} shrunk"
    )

    devices = Table(box=None, pad_edge=False, header_style="bold")
    devices.add_column("device", no_wrap=True)
    number_columns(devices, "queue", "running", "lanes busy", "load")
    devices.add_column("models", overflow="fold")
    for i, (label, d) in enumerate(zip(snap.labels, snap.devices, strict=True)):
        placed = [m for m, ds in snap.placement.items() if i in ds]
        every = len(snap.placement) > 1 and len(placed) == len(snap.placement)
        devices.add_row(
            label if snap.live[i] else f"{label} (lost)",
            str(d.queue_depth),
            str(d.in_flight),
            f"{sum(lane.busy for lane in d.lanes)}/{len(d.lanes)}",
            f"{snap.load[i]:.2f}",
            f"all {len(placed)}" if every else ", ".join(placed) or "-",
        )
    devices.caption = "now; load: seconds of work routed per second (last rebalance period)"

    models = Table(box=None, pad_edge=False, header_style="bold")
    models.add_column("model", overflow="fold")
    number_columns(models, "replicas", "queue", "running", "done", "met", "rejected", "p99 ms")
    for m in snap.models.values():
        run = p.per_model.get(m.name, RequestCounts())
        models.add_row(
            m.name,
            str(len(snap.placement.get(m.name, ()))),
            str(m.queue_depth),
            str(m.in_flight),
            str(run.completed),
            str(run.met_deadline),
            str(run.rejected),
            _ms(m.latency.p99),
        )
    models.caption = (
        "replicas, queue, running: now; done, met, rejected: since start; "
        "p99: the fleet's, warm-up and search included"
    )
    rates = rates_table(p, offered_rps)
    return Group(rates, Text(""), now, Text(""), devices, Text(""), models, progress_bar(p))
