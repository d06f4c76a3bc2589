"""The executions of a run as a file: ``aiosched loadtest --timeline FILE``.

One row per batch run: its id, model, lane, batch size, start and end
(seconds from the first execution's start), measured and predicted latency
(ms), whether it succeeded, and the ids of the executions that ran beside it
at any moment (``beside``). ``aiosched report`` draws the lane timeline (the
paper's Fig. 4) and predicted against measured latency from it.

A path ending in ``.csv`` is written as CSV (``beside`` as ids joined by
``;``), any other as JSON lines. Reading checks every row and raises
:class:`TimelineError` naming the file and line. This module imports only the
standard library (``aiosched report`` reads timelines without torch).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import LoadgenError

if TYPE_CHECKING:
    from ..timeline import Execution

__all__ = [
    "TIMELINE_FIELDS",
    "TimelineError",
    "TimelineRow",
    "read_timeline",
    "rows_from_devices",
    "rows_from_executions",
    "write_timeline",
]

TIMELINE_FIELDS: tuple[str, ...] = (
    "id",
    "model",
    "lane",
    "batch_size",
    "start_s",
    "end_s",
    "latency_ms",
    "predicted_ms",
    "ok",
    "beside",
)


class TimelineError(LoadgenError):
    """A timeline file is malformed; the message reads ``file:line: what is wrong``."""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One execution: times in seconds from the run's first execution, latencies in ms."""

    id: int
    model: str
    lane: int
    batch_size: int
    start_s: float
    end_s: float
    latency_ms: float
    predicted_ms: float | None
    ok: bool
    beside: tuple[int, ...]


def _round(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def _as_row(e: Execution, t0: float, id: int, lane: int, beside: Iterable[int]) -> TimelineRow:
    return TimelineRow(
        id=id,
        model=e.model,
        lane=lane,
        batch_size=e.batch_size,
        start_s=_round(e.start - t0),
        end_s=_round(e.end - t0),
        latency_ms=_round(e.latency * 1000.0, 4),
        predicted_ms=_round(e.predicted * 1000.0, 4) if math.isfinite(e.predicted) else None,
        ok=e.ok,
        beside=tuple(sorted(beside)),
    )


def rows_from_executions(executions: Iterable[Execution]) -> list[TimelineRow]:
    """The run's executions (warm-up runs left out) as rows, in start order."""
    runs = sorted((e for e in executions if not e.warmup), key=lambda e: (e.start, e.id))
    if not runs:
        return []
    t0 = runs[0].start
    ids = {e.id for e in runs}
    return [_as_row(e, t0, e.id, e.lane, (p.id for p in e.overlaps if p.id in ids)) for e in runs]


def rows_from_devices(
    devices: Sequence[Iterable[Execution]], lanes: Sequence[int]
) -> list[TimelineRow]:
    """A fleet's executions (warm-up runs left out) as one timeline, in start order.

    Device ``d``'s lane ``k`` is lane ``sum(lanes[:d]) + k``, so that one file
    tells every device's lanes apart (and ``aiosched report`` draws each). Each
    device numbers its executions itself: the ids are numbered again from 1 in
    start order, and ``beside`` names those that ran beside on the same device.
    """
    offsets = [sum(lanes[:d]) for d in range(len(lanes))]
    runs = sorted(
        ((e.start, d, e.id, e) for d, execs in enumerate(devices) for e in execs if not e.warmup),
        key=lambda run: run[:3],
    )
    if not runs:
        return []
    t0 = runs[0][0]
    ids = {(d, i): n for n, (_, d, i, _) in enumerate(runs, 1)}
    return [
        _as_row(
            e,
            t0,
            ids[(d, i)],
            offsets[d] + e.lane,
            (ids[(d, p.id)] for p in e.overlaps if (d, p.id) in ids),
        )
        for _, d, i, e in runs
    ]


def write_timeline(rows: Sequence[TimelineRow], path: str | os.PathLike[str]) -> None:
    """Write ``rows``: CSV when ``path`` ends in ``.csv``, JSON lines otherwise."""
    if os.fspath(path).lower().endswith(".csv"):
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(TIMELINE_FIELDS)
            for r in rows:
                writer.writerow(
                    [
                        r.id,
                        r.model,
                        r.lane,
                        r.batch_size,
                        r.start_s,
                        r.end_s,
                        r.latency_ms,
                        "" if r.predicted_ms is None else r.predicted_ms,
                        int(r.ok),
                        ";".join(str(i) for i in r.beside),
                    ]
                )
        return
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            row = asdict(r)
            row["beside"] = list(r.beside)
            f.write(json.dumps(row, allow_nan=False) + "\n")


def _row(raw: dict[str, Any], where: str) -> TimelineRow:
    missing = [k for k in TIMELINE_FIELDS if k not in raw]
    if missing:
        raise TimelineError(f"{where}: missing {', '.join(missing)}")
    try:
        predicted = raw["predicted_ms"]
        beside = raw["beside"]
        if isinstance(beside, str):
            beside = [b for b in beside.split(";") if b.strip()]
        ok = raw["ok"]
        if isinstance(ok, str):
            if ok not in ("0", "1", "true", "false", "True", "False"):
                raise ValueError(f"ok must be 0 or 1, got {ok!r}")
            ok = ok in ("1", "true", "True")
        row = TimelineRow(
            id=int(raw["id"]),
            model=str(raw["model"]),
            lane=int(raw["lane"]),
            batch_size=int(raw["batch_size"]),
            start_s=float(raw["start_s"]),
            end_s=float(raw["end_s"]),
            latency_ms=float(raw["latency_ms"]),
            predicted_ms=None if predicted in (None, "") else float(predicted),
            ok=bool(ok),
            beside=tuple(int(b) for b in beside),
        )
    except (TypeError, ValueError) as exc:
        raise TimelineError(f"{where}: {exc}") from None
    numbers = [row.start_s, row.end_s, row.latency_ms]
    if row.predicted_ms is not None:
        numbers.append(row.predicted_ms)
    if not all(math.isfinite(x) for x in numbers):
        raise TimelineError(f"{where}: times must be finite numbers")
    if row.end_s < row.start_s or row.batch_size < 1 or row.lane < 0:
        raise TimelineError(f"{where}: end before start, batch size < 1 or lane < 0")
    return row


def read_timeline(path: str | os.PathLike[str]) -> list[TimelineRow]:
    """The rows of a file :func:`write_timeline` wrote; :class:`TimelineError` if malformed."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if name.lower().endswith(".csv"):
                reader = csv.DictReader(f)
                if reader.fieldnames is None or tuple(reader.fieldnames) != TIMELINE_FIELDS:
                    raise TimelineError(f"{name}:1: the header must be {','.join(TIMELINE_FIELDS)}")
                rows = [_row(dict(raw), f"{name}:{i}") for i, raw in enumerate(reader, 2)]
            else:
                rows = []
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        raw = json.loads(line)
                    except ValueError:
                        raise TimelineError(f"{name}:{i}: not a JSON object") from None
                    if not isinstance(raw, dict):
                        raise TimelineError(f"{name}:{i}: not a JSON object")
                    rows.append(_row(raw, f"{name}:{i}"))
    except UnicodeDecodeError:
        raise TimelineError(f"{name}: not a text file") from None
    if not rows:
        raise TimelineError(f"{name}: no executions")
    return rows
