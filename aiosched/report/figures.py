"""The figures of ``aiosched report``, drawn with matplotlib (the extra ``plot``).

Each function returns a :class:`matplotlib.figure.Figure` built without
pyplot (no global state, no display needed). :func:`require_matplotlib`
raises :class:`~aiosched.report.inputs.ReportInputError` naming the extra when
matplotlib is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .inputs import CompareInput, ReportInputError, RunInput, TimelineInput, cdf_points
from .series import contender_curves, prediction_error

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "goodput_vs_load",
    "lane_timeline",
    "latency_cdf",
    "predicted_vs_measured",
    "require_matplotlib",
]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def require_matplotlib() -> None:
    """Import matplotlib or say, in one line, which extra brings it."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise ReportInputError(
            "aiosched report needs matplotlib: pip install 'aiosched[plot]'"
        ) from None


def _figure(width: float = 7.0, height: float = 4.2) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def latency_cdf(run: RunInput) -> Figure:
    """Latency CDF of each model and of all requests, each model's deadline marked.

    The report holds percentiles, not every latency: the curve joins p50, p90,
    p95, p99, p99.9 and the maximum (the points drawn), and says so.
    """
    fig = _figure()
    ax = fig.add_subplot()
    deadlines = run.deadlines_ms()
    sections = [("all requests", run.report)]
    per_model = run.report.get("per_model", {})
    if len(per_model) > 1:
        sections += sorted(per_model.items())
    elif len(per_model) == 1:
        sections = [(next(iter(per_model)), run.report)]
    for i, (name, section) in enumerate(sections):
        points = cdf_points(section)
        if not points:
            continue
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        total = name == "all requests"
        ax.plot(
            xs,
            ys,
            marker="o",
            markersize=3.5,
            linewidth=2.2 if total else 1.3,
            color="black" if total else _COLORS[(i - 1) % len(_COLORS)],
            label=name,
        )
    right = max([0.0, *(x for _, s in sections for x, _ in cdf_points(s))])
    for j, (value, names) in enumerate(sorted(_by_value(deadlines).items())):
        right = max(right, value)
        ax.axvline(value, color="#d62728", linestyle="--", linewidth=1.0)
        label = f"deadline {value:g} ms" + (f" ({', '.join(names)})" if len(deadlines) > 1 else "")
        ax.annotate(
            label,
            (value, 0.04 + 0.07 * j),
            xytext=(-4, 0),
            textcoords="offset points",
            color="#d62728",
            fontsize=8,
            ha="right",
        )
    requests = run.report["requests"]
    sent = requests["sent"]
    met = f"{requests['met_deadline'] / sent * 100:.2f} % of {sent:,} met" if sent else "none sent"
    ax.set_title(
        f"Latency CDF, {run.name} ({met})\n"
        "points: p50, p90, p95, p99, p99.9 and max from the report; between them, not measured",
        fontsize=9,
    )
    ax.set_xlabel("latency from the intended send time (ms)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, right * 1.05 if right else 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    return fig


def _by_value(deadlines: dict[str, float]) -> dict[float, list[str]]:
    out: dict[float, list[str]] = {}
    for name, value in deadlines.items():
        out.setdefault(value, []).append(name)
    return out


def goodput_vs_load(cmp: CompareInput) -> Figure:
    """Goodput and attainment against offered load, one line per contender."""
    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2)
    curves = contender_curves(cmp.doc)
    top = 0.0
    for i, curve in enumerate(curves):
        color = _COLORS[i % len(_COLORS)]
        xs = [p.offered_rps for p in curve.points]
        top = max([top, *xs, *(p.goodput_rps for p in curve.points)])
        left.plot(
            xs, [p.goodput_rps for p in curve.points], marker="o", color=color, label=curve.label
        )
        att = [
            (p.offered_rps, p.attainment * 100) for p in curve.points if p.attainment is not None
        ]
        right.plot(
            [x for x, _ in att], [y for _, y in att], marker="o", color=color, label=curve.label
        )
    left.plot([0, top], [0, top], color="#999999", linestyle=":", linewidth=1, label="offered")
    peaks = cmp.doc.get("peak_rps")
    if isinstance(peaks, dict):
        for name, rps in peaks.items():
            if isinstance(rps, int | float) and rps > 0:
                for ax in (left, right):
                    ax.axvline(rps, color="#999999", linestyle="--", linewidth=0.8)
                left.annotate(
                    f"peak of {name}",
                    (rps, 0),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                    color="#555555",
                    rotation=90,
                )
    left.set_title("goodput (met their deadline)", fontsize=10)
    left.set_xlabel("offered load (requests/s)")
    left.set_ylabel("requests/s")
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    right.set_title("deadline attainment (met / sent)", fontsize=10)
    right.set_xlabel("offered load (requests/s)")
    right.set_ylabel("%")
    right.set_ylim(0, 102)
    right.set_xlim(left=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Goodput and attainment against load, {cmp.name}", fontsize=11)
    return fig


def predicted_vs_measured(timeline: TimelineInput) -> Figure:
    """Each execution's predicted latency against its measured one, by model."""
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    by_model: dict[str, list[tuple[float, float]]] = {}
    for r in timeline.rows:
        if r.predicted_ms is not None:
            by_model.setdefault(r.model, []).append((r.latency_ms, r.predicted_ms))
    top = 0.0
    for i, (model, pairs) in enumerate(sorted(by_model.items())):
        top = max([top, *(x for x, _ in pairs), *(y for _, y in pairs)])
        ax.scatter(
            [x for x, _ in pairs],
            [y for _, y in pairs],
            s=6,
            alpha=0.5,
            color=_COLORS[i % len(_COLORS)],
            label=model,
            linewidths=0,
        )
    ax.plot([0, top], [0, top], color="black", linewidth=0.8, label="predicted = measured")
    mape, n = prediction_error(timeline.rows)
    error = (
        f"MAPE {mape * 100:.1f} % over {n:,} executions" if mape is not None else "no predictions"
    )
    ax.set_title(f"Predicted against measured, {timeline.name}\n{error}", fontsize=10)
    ax.set_xlabel("measured batch latency (ms)")
    ax.set_ylabel("predicted batch latency (ms)")
    ax.set_xlim(0, top * 1.03 if top else 1)
    ax.set_ylim(0, top * 1.03 if top else 1)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, markerscale=2)
    return fig


def lane_timeline(timeline: TimelineInput, window: tuple[float, float]) -> Figure:
    """Which batches ran beside which (the paper's Fig. 4): a bar per execution per lane.

    Each bar spans an execution on its lane, coloured by model and labelled
    with its batch size; failed executions are hatched.
    """
    start, end = window
    rows = [r for r in timeline.rows if r.end_s > start and r.start_s < end]
    lanes = sorted({r.lane for r in timeline.rows})
    models = sorted({r.model for r in timeline.rows})
    color = {m: _COLORS[i % len(_COLORS)] for i, m in enumerate(models)}
    fig = _figure(10.0, 1.2 + 0.7 * len(lanes))
    ax = fig.add_subplot()
    span_ms = (end - start) * 1000.0
    for r in rows:
        x0 = (max(r.start_s, start) - start) * 1000.0
        x1 = (min(r.end_s, end) - start) * 1000.0
        y = lanes.index(r.lane)
        ax.broken_barh(
            [(x0, x1 - x0)],
            (y - 0.38, 0.76),
            facecolors=color[r.model],
            edgecolor="black",
            linewidth=0.4,
            hatch=None if r.ok else "//",
        )
        if x1 - x0 > span_ms * 0.025:
            ax.text((x0 + x1) / 2, y, str(r.batch_size), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(lanes)), [f"lane {lane}" for lane in lanes])
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlim(0, span_ms)
    ax.invert_yaxis()
    ax.set_xlabel(f"ms from {start:.3f} s into the run (bars: batches, labelled with their size)")
    ax.set_title(
        f"Lane timeline, {timeline.name}: {len(rows)} executions in {span_ms:.1f} ms", fontsize=10
    )
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(facecolor=color[m], edgecolor="black", label=m) for m in models],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    ax.grid(axis="x", alpha=0.3)
    return fig
