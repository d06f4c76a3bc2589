"""The JSON report of a run (the command line renders it: :mod:`aiosched.cli._render`).

:func:`build_report` turns a :class:`~aiosched.loadgen.result.LoadResult`
into a JSON-able dict with exactly the keys :data:`REPORT_KEYS`::

    config, duration_s, offered_rps, achieved_rps, goodput_rps,
    requests {sent, completed, met_deadline, missed_deadline, rejected, failed, cancelled},
    latency_ms {p50, p90, p95, p99, p999, max, mean}, send_lag_ms {p50, p99, max},
    per_model {name: {every key above but config and per_model}},
    batches {count, mean_size, max_concurrency}, predictor {name, mape, p95_ape}

Rates: ``offered_rps`` is sends per second of the sending window;
``achieved_rps`` (completed) and ``goodput_rps`` (met their deadline) are per
second of ``duration_s``, the whole run from the first intended send to the
last response. Latency is from the intended send time; ``mean`` is exact, the
percentiles are HdrHistogram's (3 significant figures). A value with no data
(a percentile of nothing, statistics the caller did not supply) is ``null``.
``batches`` and ``predictor`` come from the scheduler's statistics, which the
caller passes in (:class:`BatchStats`, :class:`PredictorStats`).

``config`` always records ``aiosched_version`` and ``timestamp`` (the start of
the run, UTC, ISO 8601; ``null`` if it never started), besides what the
caller passes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from aiosched._version import __version__
from aiosched.loadgen.histogram import Histogram
from aiosched.loadgen.result import LoadResult, ModelResult

__all__ = [
    "BATCH_KEYS",
    "LATENCY_KEYS",
    "MODEL_KEYS",
    "PREDICTOR_KEYS",
    "REPORT_KEYS",
    "REQUEST_KEYS",
    "SEND_LAG_KEYS",
    "BatchStats",
    "PredictorStats",
    "build_report",
    "write_report",
]

REPORT_KEYS: tuple[str, ...] = (
    "config",
    "duration_s",
    "offered_rps",
    "achieved_rps",
    "goodput_rps",
    "requests",
    "latency_ms",
    "send_lag_ms",
    "per_model",
    "batches",
    "predictor",
)
MODEL_KEYS: tuple[str, ...] = tuple(k for k in REPORT_KEYS if k not in ("config", "per_model"))
REQUEST_KEYS: tuple[str, ...] = (
    "sent",
    "completed",
    "met_deadline",
    "missed_deadline",
    "rejected",
    "failed",
    "cancelled",
)
LATENCY_KEYS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
SEND_LAG_KEYS: tuple[str, ...] = ("p50", "p99", "max")
BATCH_KEYS: tuple[str, ...] = ("count", "mean_size", "max_concurrency")
PREDICTOR_KEYS: tuple[str, ...] = ("name", "mape", "p95_ape")

_LATENCY_PCTS = (50.0, 90.0, 95.0, 99.0, 99.9)
_LAG_PCTS = (50.0, 99.0)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Batches the scheduler ran: how many, their mean size, the most run at once."""

    count: int
    mean_size: float | None
    max_concurrency: int | None = None

    @classmethod
    def from_sizes(cls, sizes: Mapping[int, int], max_concurrency: int | None = None) -> BatchStats:
        """From a ``{batch size: number of batches}`` histogram."""
        count = sum(sizes.values())
        mean = sum(size * n for size, n in sizes.items()) / count if count else None
        return cls(count, mean, max_concurrency)


@dataclass(frozen=True, slots=True)
class PredictorStats:
    """The predictor's name and its errors, as the scheduler's statistics give them."""

    name: str
    mape: float | None = None
    p95_ape: float | None = None


def _num(x: float | None, digits: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _ms(h: Histogram, percentiles: tuple[float, ...], keys: tuple[str, ...]) -> dict[str, Any]:
    values = h.percentiles_s(percentiles)
    out = {
        k: _num(v * 1000.0 if v is not None else None) for k, v in zip(keys, values, strict=False)
    }
    out["max"] = _num(h.max_s * 1000.0) if h.count else None
    if "mean" in keys:
        mean = h.mean_s
        out["mean"] = _num(mean * 1000.0) if mean is not None else None
    return out


def _batches(b: BatchStats | None) -> dict[str, Any]:
    if b is None:
        return dict.fromkeys(BATCH_KEYS)
    return {"count": b.count, "mean_size": _num(b.mean_size), "max_concurrency": b.max_concurrency}


def _predictor(p: PredictorStats | None) -> dict[str, Any]:
    if p is None:
        return dict.fromkeys(PREDICTOR_KEYS)
    return {"name": p.name, "mape": _num(p.mape, 6), "p95_ape": _num(p.p95_ape, 6)}


def _section(
    m: ModelResult,
    result: LoadResult,
    batches: BatchStats | None,
    predictor: PredictorStats | None,
) -> dict[str, Any]:
    c = m.counts
    window, duration = result.send_window_s, result.duration_s
    return {
        "duration_s": _num(duration, 6),
        "offered_rps": _num(c.sent / window if window > 0 else None),
        "achieved_rps": _num(c.completed / duration if duration > 0 else None),
        "goodput_rps": _num(c.met_deadline / duration if duration > 0 else None),
        "requests": c.as_dict(),
        "latency_ms": _ms(m.latency, _LATENCY_PCTS, LATENCY_KEYS),
        "send_lag_ms": _ms(m.send_lag, _LAG_PCTS, SEND_LAG_KEYS),
        "batches": _batches(batches),
        "predictor": _predictor(predictor),
    }


def _timestamp(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def build_report(
    result: LoadResult,
    *,
    config: Mapping[str, Any] | None = None,
    batches: BatchStats | None = None,
    predictor: PredictorStats | None = None,
    per_model_batches: Mapping[str, BatchStats] | None = None,
    per_model_predictor: Mapping[str, PredictorStats] | None = None,
) -> dict[str, Any]:
    """The report of ``result`` (keys :data:`REPORT_KEYS`), ready for ``json.dumps``.

    ``config`` is merged over the schedule's own (arrival, rate, seed,
    models); ``stopped_early`` and ``send_window_s`` are added to it.
    """
    merged: dict[str, Any] = dict(result.config)
    merged.update(config or {})
    merged["aiosched_version"] = __version__
    merged["timestamp"] = _timestamp(result.started_at)
    merged["stopped_early"] = result.stopped_early
    merged["send_window_s"] = _num(result.send_window_s, 6)
    pmb = per_model_batches or {}
    pmp = per_model_predictor or {}
    total = _section(result.total(), result, batches, predictor)
    per_model = {
        name: _section(m, result, pmb.get(name), pmp.get(name)) for name, m in result.models.items()
    }
    report: dict[str, Any] = {"config": _jsonable(merged)}
    report.update({k: total[k] for k in REPORT_KEYS[1:] if k in total})
    report["per_model"] = per_model
    ordered = {k: report[k] for k in REPORT_KEYS}
    return ordered


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``report`` as indented JSON (strict: no NaN)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False)
        f.write("\n")
