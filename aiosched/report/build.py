"""Everything ``aiosched report`` writes into its ``--out`` directory.

:func:`build_report_dir` draws the figures the inputs allow, one PNG each,
and writes ``index.html`` (:mod:`.page`) with a section per input file:

* a load test report: its summary and latency CDF (from its percentiles);
* a compare document: goodput and attainment against offered load, a line per
  contender, and a table per contender and rate;
* a timeline: predicted against measured batch latency, and the lane
  timeline over ``window`` (default: :func:`.series.default_window`).

Needs matplotlib (:func:`.figures.require_matplotlib`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import figures
from .inputs import CompareInput, Inputs, RunInput, TimelineInput
from .page import Section, render_page
from .series import contender_curves, default_window, prediction_error

__all__ = ["PAGE", "build_report_dir"]

PAGE = "index.html"


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole * 100:.2f} %" if whole else "-"


class _Writer:
    """Saves figures under ``out`` with unique, file-system-safe names."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[Path] = []

    def save(self, fig: Any, kind: str, name: str) -> Path:
        stem = f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        path = self.out / f"{stem}.png"
        n = 2
        while path in self.written:
            path = self.out / f"{stem}-{n}.png"
            n += 1
        fig.savefig(path, format="png")
        self.written.append(path)
        return path


def _run_section(run: RunInput, w: _Writer) -> Section:
    r = run.report
    cfg = r["config"]
    req = r["requests"]
    header = [
        "model",
        "sent",
        "met",
        "met %",
        "rejected",
        "goodput/s",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]
    rows = [header]
    models = r.get("per_model", {})
    for name, sec in [*sorted(models.items()), ("all", r)]:
        q, lat = sec["requests"], sec["latency_ms"]
        rows.append(
            [
                name,
                f"{q['sent']:,}",
                f"{q['met_deadline']:,}",
                _pct(q["met_deadline"], q["sent"]),
                f"{q.get('rejected', 0):,}",
                _fmt(sec.get("goodput_rps")),
                _fmt(lat.get("p50")),
                _fmt(lat.get("p99")),
                _fmt(lat.get("max")),
            ]
        )
    pred = r.get("predictor") or {}
    batches = r.get("batches") or {}
    notes = [
        f"backend {cfg.get('backend', '?')}, policy {cfg.get('policy', '?')}, predictor "
        f"{cfg.get('predictor', '?')}, {cfg.get('lanes', '?')} lanes; offered "
        f"{_fmt(r.get('offered_rps'))}/s for {_fmt(r.get('duration_s'))} s; "
        f"{req['sent']:,} sent, {_pct(req['met_deadline'], req['sent'])} met their deadline.",
        f"batches {batches.get('count', '-')}, mean size {_fmt(batches.get('mean_size'), '.2f')}"
        f"; predictor {pred.get('name', '-')}: MAPE "
        f"{_fmt(None if pred.get('mape') is None else pred['mape'] * 100)} %, p95 APE "
        f"{_fmt(None if pred.get('p95_ape') is None else pred['p95_ape'] * 100)} %.",
    ]
    png = w.save(figures.latency_cdf(run), "latency_cdf", run.name)
    caption = (
        "Latency CDF, each model's deadline dashed; the report holds percentiles only, "
        "so the curves join p50, p90, p95, p99, p99.9 and the maximum"
    )
    return Section(f"Load test: {run.path}", notes, [rows], [(png, caption)])


def _compare_section(cmp: CompareInput, w: _Writer) -> Section:
    curves = contender_curves(cmp.doc)
    rows = [["contender", "rate/s", "offered/s", "goodput/s", "met %", "runs"]]
    for curve in curves:
        for p in curve.points:
            rows.append(
                [
                    curve.label,
                    f"{p.rate_rps:.1f}",
                    f"{p.offered_rps:.1f}",
                    f"{p.goodput_rps:.1f}",
                    _fmt(None if p.attainment is None else p.attainment * 100, ".2f"),
                    str(p.runs),
                ]
            )
    notes = []
    peaks = cmp.doc.get("peak_rps")
    if isinstance(peaks, dict) and peaks:
        notes.append(
            "peak (SLO met): "
            + ", ".join(f"{k} {_fmt(v)}/s" for k, v in peaks.items() if v is not None)
        )
    png = w.save(figures.goodput_vs_load(cmp), "goodput", cmp.name)
    caption = (
        "Goodput (requests/s that met their deadline) and attainment against offered load; "
        "rounds at one rate pooled"
    )
    return Section(f"Comparison: {cmp.path}", notes, [rows], [(png, caption)])


def _timeline_section(tl: TimelineInput, w: _Writer, window: tuple[float, float] | None) -> Section:
    mape, n = prediction_error(tl.rows)
    span = window or default_window(tl.rows)
    lanes = sorted({r.lane for r in tl.rows})
    beside = sum(1 for r in tl.rows if r.beside)
    notes = [
        f"{len(tl.rows):,} executions on {len(lanes)} lanes, "
        f"{_pct(beside, len(tl.rows))} of them with another beside them at some moment; "
        + (f"MAPE {mape * 100:.1f} % over {n:,}." if mape is not None else "no predictions.")
    ]
    pred = w.save(figures.predicted_vs_measured(tl), "predicted", tl.name)
    lane = w.save(figures.lane_timeline(tl, span), "lanes", tl.name)
    return Section(
        f"Timeline: {tl.path}",
        notes,
        [],
        [
            (pred, "Predicted against measured latency of each batch (the line: exact)"),
            (
                lane,
                f"Lanes from {span[0]:.3f} s to {span[1]:.3f} s: which batches ran beside which",
            ),
        ],
    )


def build_report_dir(
    inputs: Inputs, out: Path, window: tuple[float, float] | None = None
) -> list[Path]:
    """Draw every figure the inputs allow into ``out`` and write the page; the files written."""
    figures.require_matplotlib()
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out)
    sections = [_run_section(r, w) for r in inputs.runs]
    sections += [_compare_section(c, w) for c in inputs.compares]
    sections += [_timeline_section(t, w, window) for t in inputs.timelines]
    notes = []
    if not inputs.timelines:
        notes.append(
            "No timeline given: predicted against measured latency and the lane timeline "
            "come from 'aiosched loadtest --timeline FILE'."
        )
    sources = [
        *(r.path for r in inputs.runs),
        *(c.path for c in inputs.compares),
        *(t.path for t in inputs.timelines),
    ]
    page = out / PAGE
    page.write_text(render_page(sections, sources, notes), encoding="utf-8")
    return [*w.written, page]
