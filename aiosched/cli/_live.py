"""What ``aiosched loadtest`` shows while it runs: a rich live view, or plain lines in a pipe.

Both are drawn from two cheap copies taken on the loop: the load generator's
:class:`~aiosched.loadgen.Progress` and the scheduler's
:class:`~aiosched.SchedulerSnapshot`. Rich renders on its own thread, so the
measured loop only pays for taking the copies.

Every figure says what it covers: ``last N s`` (the window since the previous
update), ``since start`` (the measured run so far), ``now`` (queues, lanes),
or the scheduler's own counters (batches, p99 by model, predictor error),
which also count the warm-up and any peak search before the run.
"""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..loadgen import Progress
from ..loadgen.result import RequestCounts
from ..telemetry.snapshot import SchedulerSnapshot
from ._render import number_columns

__all__ = ["live_view", "plain_line", "progress_bar", "rates_table", "window_figures"]


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.1f}"


def _pct(fraction: float) -> str:
    return "-" if not math.isfinite(fraction) else f"{fraction * 100:.1f}%"


def _mean_batch(sizes: dict[int, int]) -> float:
    n = sum(sizes.values())
    return sum(b * c for b, c in sizes.items()) / n if n else math.nan


def _miss_pct(c: RequestCounts) -> float:
    """Missed deadlines (late, rejected, failed) per resolved request, %."""
    resolved = c.completed + c.rejected + c.failed
    return 100.0 * (resolved - c.met_deadline) / resolved if resolved else 0.0


def _per_s(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def window_figures(p: Progress, offered_rps: float) -> str:
    """The start of a plain line: the window's rates and latency, then the run's so far."""
    c = p.counts
    return (
        f"[{p.elapsed_s:6.1f}/{p.window_s:.0f}s] offered {offered_rps:.1f}/s | "
        f"last {p.interval_s:.1f} s: "
        f"sent {p.sent_rps:.1f}/s done {p.achieved_rps:.1f}/s good {p.goodput_rps:.1f}/s "
        f"miss {p.miss_pct:.1f}% p50 {_ms(p.latency_p50_s)} p99 {_ms(p.latency_p99_s)} ms | "
        f"since start: good {_per_s(c.met_deadline, p.elapsed_s):.1f}/s "
        f"miss {_miss_pct(c):.1f}%"
    )


def plain_line(p: Progress, snap: SchedulerSnapshot, offered_rps: float) -> str:
    """One line of the periodic plain output (pipes, ``--no-live``): the window, then the run."""
    busy = sum(lane.busy for lane in snap.lanes)
    return (
        f"{window_figures(p, offered_rps)} | now: queue {snap.queue_depth} "
        f"lanes {busy}/{len(snap.lanes)} | pred-err {_pct(snap.predictor_mape)}"
    )


def rates_table(p: Progress, offered_rps: float) -> Table:
    """The live view's first table: rates and latency, last window and since the start."""
    c, t = p.counts, p.elapsed_s
    rates = Table(
        title=f"offered {offered_rps:.1f} requests/s",
        title_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    rates.add_column("")
    # The last update comes when the run has drained, a moment after the one before.
    window = f"drain {p.interval_s:.2f} s" if p.done else f"last {p.interval_s:.1f} s"
    number_columns(rates, window, "since start")
    rates.add_row("sent/s", f"{p.sent_rps:.1f}", f"{_per_s(c.sent, t):.1f}")
    rates.add_row("achieved/s", f"{p.achieved_rps:.1f}", f"{_per_s(c.completed, t):.1f}")
    rates.add_row("goodput/s", f"{p.goodput_rps:.1f}", f"{_per_s(c.met_deadline, t):.1f}")
    rates.add_row("deadline miss", f"{p.miss_pct:.1f}%", f"{_miss_pct(c):.1f}%")
    rates.add_row("latency p50 ms", _ms(p.latency_p50_s), "")
    rates.add_row("latency p99 ms", _ms(p.latency_p99_s), "")
    return rates


def progress_bar(p: Progress) -> Table:
    """How far the run is: a bar, the seconds, the requests sent of those planned."""
    bar = Table.grid(padding=(0, 1))
    bar.add_column()
    bar.add_column()
    bar.add_row(
        ProgressBar(total=1.0, completed=p.fraction, width=30),
        f"{p.elapsed_s:.1f} / {p.window_s:.0f} s   sent {p.counts.sent} of {p.planned}",
    )
    return bar


def live_view(p: Progress, snap: SchedulerSnapshot, offered_rps: float) -> RenderableType:
    """The live view: rates, latency, per-model queues and batches, lanes, predictor error."""
    rates = rates_table(p, offered_rps)
    busy = sum(lane.busy for lane in snap.lanes)
    now = Text(
        f"now: {busy}/{len(snap.lanes)} lanes busy, {snap.queue_depth} queued; "
        f"predictor {snap.predictor}: MAPE {_pct(snap.predictor_mape)}, "
        f"p95 {_pct(snap.predictor_p95_ape)} (last 1000 executions)"
    )

    models = Table(box=None, pad_edge=False, header_style="bold")
    models.add_column("model", overflow="fold")
    number_columns(models, "queue", "running", "done", "met", "rejected", "batch", "p99 ms")
    for m in snap.models.values():
        run = p.per_model.get(m.name, RequestCounts())
        models.add_row(
            m.name,
            str(m.queue_depth),
            str(m.in_flight),
            str(run.completed),
            str(run.met_deadline),
            str(run.rejected),
            f"{_mean_batch(dict(m.batch_sizes)):.1f}",
            _ms(m.latency.p99),
        )
    models.caption = (
        "queue, running: now; done, met, rejected: since start; "
        "batch (mean size), p99: the scheduler's, warm-up and search included"
    )

    lanes = Text("lanes  ")
    for lane in snap.lanes:
        label = f"{lane.model}x{lane.batch_size}" if lane.busy else "idle"
        style = "bold green" if lane.busy else ("dim" if lane.alive else "red")
        lanes.append(f"[{lane.lane}: {label}] ", style=style)

    return Group(rates, Text(""), now, Text(""), models, Text(""), lanes, progress_bar(p))
