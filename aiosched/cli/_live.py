"""What ``aiosched loadtest`` shows while it runs: a rich live view, or plain lines in a pipe.

Both are drawn from two cheap copies taken on the loop: the load generator's
:class:`~aiosched.loadgen.Progress` and the scheduler's
:class:`~aiosched.SchedulerSnapshot`. Rich renders on its own thread, so the
measured loop only pays for taking the copies.
"""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..loadgen import Progress
from ..telemetry.snapshot import SchedulerSnapshot

__all__ = ["live_view", "plain_line"]


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.1f}"


def _pct(fraction: float) -> str:
    return "-" if not math.isfinite(fraction) else f"{fraction * 100:.1f}%"


def _mean_batch(sizes: dict[int, int]) -> float:
    n = sum(sizes.values())
    return sum(b * c for b, c in sizes.items()) / n if n else math.nan


def plain_line(p: Progress, snap: SchedulerSnapshot, offered_rps: float) -> str:
    """One line of the periodic plain output (pipes, ``--no-live``, the sim backend)."""
    busy = sum(lane.busy for lane in snap.lanes)
    return (
        f"[{p.elapsed_s:6.1f}/{p.window_s:.0f}s] offered {offered_rps:7.1f}/s "
        f"sent {p.sent_rps:7.1f}/s done {p.achieved_rps:7.1f}/s good {p.goodput_rps:7.1f}/s "
        f"miss {p.miss_pct:5.1f}% p50 {_ms(p.latency_p50_s)} p99 {_ms(p.latency_p99_s)} ms "
        f"queue {snap.queue_depth} lanes {busy}/{len(snap.lanes)} "
        f"pred-err {_pct(snap.predictor_mape)}"
    )


def live_view(p: Progress, snap: SchedulerSnapshot, offered_rps: float) -> RenderableType:
    """The live view: rates, latency, per-model queues and batches, lanes, predictor error."""
    head = Table.grid(padding=(0, 2))
    for _ in range(4):
        head.add_column(justify="right")
    head.add_row(
        "offered",
        f"{offered_rps:.1f}/s",
        "achieved",
        f"{p.achieved_rps:.1f}/s",
    )
    head.add_row("goodput", f"{p.goodput_rps:.1f}/s", "deadline miss", f"{p.miss_pct:.1f}%")
    head.add_row(
        "latency p50",
        f"{_ms(p.latency_p50_s)} ms",
        "latency p99",
        f"{_ms(p.latency_p99_s)} ms",
    )
    busy = sum(lane.busy for lane in snap.lanes)
    head.add_row(
        "lanes busy",
        f"{busy}/{len(snap.lanes)}",
        f"predictor {snap.predictor}",
        f"MAPE {_pct(snap.predictor_mape)}  p95 {_pct(snap.predictor_p95_ape)}",
    )

    models = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("model", "queue", "in flight", "done", "met", "rejected", "mean batch", "p99 ms"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for m in snap.models.values():
        models.add_row(
            m.name,
            str(m.queue_depth),
            str(m.in_flight),
            str(m.completed),
            str(m.met_deadline),
            str(m.rejected),
            f"{_mean_batch(dict(m.batch_sizes)):.1f}",
            _ms(m.latency.p99),
        )

    lanes = Text("lanes  ")
    for lane in snap.lanes:
        label = f"{lane.model}x{lane.batch_size}" if lane.busy else "idle"
        style = "bold green" if lane.busy else ("dim" if lane.alive else "red")
        lanes.append(f"[{lane.lane}: {label}] ", style=style)

    bar = Table.grid(padding=(0, 1))
    bar.add_column()
    bar.add_column()
    bar.add_row(
        ProgressBar(total=1.0, completed=p.fraction, width=40),
        f"{p.elapsed_s:.1f} / {p.window_s:.0f} s   sent {p.counts.sent} of {p.planned}",
    )
    return Group(head, Text(""), models, Text(""), lanes, bar)
