"""Rich tables of a load test report and of a peak search, for the command line.

The library's reports are plain JSON-able dicts (:mod:`aiosched.loadgen.report`,
:meth:`aiosched.loadgen.peak.PeakResult.to_dict`); how a terminal shows them is
the command line's business.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["number_columns", "render_steps", "render_summary", "terminal_console"]


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def terminal_console() -> Console:
    """The console of loadtest and compare: the terminal's width, or ``COLUMNS``, or 120.

    In a pipe rich assumes 80 columns; logs get 120 unless ``COLUMNS`` says otherwise.
    """
    explicit = sys.stdout.isatty() or bool(os.environ.get("COLUMNS"))
    return Console(width=None if explicit else 120)


def number_columns(table: Table, *names: str) -> None:
    """Right-aligned number columns that rich never shortens to "…" (their headers wrap)."""
    for name in names:
        table.add_column(name, justify="right", no_wrap=True, overflow="fold")


def render_summary(report: Mapping[str, Any], *, title: str = "aiosched loadtest") -> Table:
    """A load test report: requests and latency per model (two tables, 80 columns wide).

    Every figure covers the whole measured run; the caption holds the rates.
    """
    outer = Table.grid()
    outer.add_column()
    outer.title = f"{title}: the whole run"
    counts = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    counts.add_column("model", overflow="fold")
    number_columns(counts, "sent", "met", "missed", "rejected", "failed", "cancel", "goodput/s")
    latency = Table(
        title="latency, ms from the intended send time",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    latency.add_column("model", overflow="fold")
    number_columns(latency, "mean", "p50", "p95", "p99", "max", "deadline")
    deadlines = {
        name: m.get("deadline_ms") for name, m in report["config"].get("models", {}).items()
    }

    def row(name: str, s: Mapping[str, Any], style: str | None = None) -> None:
        r, lat = s["requests"], s["latency_ms"]
        counts.add_row(
            name,
            str(r["sent"]),
            str(r["met_deadline"]),
            str(r["missed_deadline"]),
            str(r["rejected"]),
            str(r["failed"]),
            str(r["cancelled"]),
            _fmt(s["goodput_rps"]),
            style=style,
        )
        latency.add_row(
            name,
            *(_fmt(lat[k], ".1f") for k in ("mean", "p50", "p95", "p99", "max")),
            _fmt(deadlines.get(name), "g"),
            style=style,
        )

    per_model: Mapping[str, Any] = report["per_model"]
    for name, section in per_model.items():
        row(name, section)
    if len(per_model) != 1:
        row("total", report, style="bold")
    r = report["requests"]
    resolved = r["completed"] + r["rejected"] + r["failed"]
    miss = 100.0 * (resolved - r["met_deadline"]) / resolved if resolved else None
    lag = report["send_lag_ms"]
    lines = [
        f"{_fmt(report['duration_s'])} s: offered {_fmt(report['offered_rps'])}/s, "
        f"achieved {_fmt(report['achieved_rps'])}/s, goodput {_fmt(report['goodput_rps'])}/s",
        f"deadline miss {_fmt(miss)} %; send lag p50 {_fmt(lag['p50'], '.3f')} ms, "
        f"p99 {_fmt(lag['p99'], '.3f')} ms, max {_fmt(lag['max'], '.3f')} ms",
    ]
    b, p = report["batches"], report["predictor"]
    if b.get("count") is not None:
        lines.append(
            f"batches {b['count']}, mean size {_fmt(b['mean_size'], '.2f')}, "
            f"max concurrency {_fmt(b['max_concurrency'], 'd')}"
        )
    if p.get("name") is not None:
        mape, p95 = _fmt(p["mape"], ".3f"), _fmt(p["p95_ape"], ".3f")
        lines.append(f"predictor {p['name']}: MAPE {mape}, p95 APE {p95}")
    if report["config"].get("stopped_early"):
        lines.append("stopped early")
    outer.add_row(counts)
    outer.add_row(latency)
    outer.caption = "\n".join(lines)
    return outer


def render_steps(peak: Mapping[str, Any], *, title: str = "peak search") -> Table:
    """A rich table of a search's steps, from :meth:`PeakResult.to_dict` (as reports hold it)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("step", "phase", "rate/s", "sent", "attainment %", "worst p99 ms", "SLO"):
        if name == "phase":
            table.add_column(name)
        else:
            table.add_column(name, justify="right", no_wrap=True, overflow="fold")
    for i, step in enumerate(peak["steps"], 1):
        attainment = step["attainment"]
        p99s = [v for v in step["p99_ms"].values() if v is not None]
        table.add_row(
            str(i),
            step["phase"],
            f"{step['rate_rps']:.1f}",
            str(step["sent"]),
            "-" if attainment is None else f"{attainment * 100:.2f}",
            f"{max(p99s):.1f}" if p99s else "-",
            "ok" if step["passed"] else "fail",
            style=None if step["passed"] else "red",
        )
    if peak["found"]:
        upper = peak["upper_rps"]
        bound = f", first fail above {upper:.1f}/s" if upper is not None else ", no step failed"
        table.caption = (
            f"peak {peak['peak_rps']:.1f}/s{bound} "
            f"(SLO: {peak['slo_attainment'] * 100:g} % met, p99 within each deadline)"
        )
    else:
        table.caption = "no rate tried met the SLO"
    return table
