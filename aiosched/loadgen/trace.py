"""Trace replay: send times, models and deadlines read from a CSV or JSONL file.

CSV has a header naming the columns ``offset_s,model[,deadline_ms]`` (in any
order); JSONL has one object per line with the same keys (``deadline_ms`` may
be absent or ``null``). Blank lines are skipped. ``offset_s`` is seconds from
the start of the run; ``deadline_ms`` overrides the model's deadline from the
workload for that one request.

The whole file is parsed before any load is sent. Anything malformed raises
:class:`~aiosched.loadgen.errors.TraceError` with the message
``file:line: what is wrong``. Offsets must be finite, non-negative and
non-decreasing: a trace is a recording, so an out-of-order line is reported
as an error rather than silently reordered. Whether each model is one the
workload serves is checked by :meth:`aiosched.loadgen.workload.Workload.replay`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from aiosched.loadgen.errors import TraceError

__all__ = ["COLUMNS", "Trace", "load_trace", "parse_trace"]

COLUMNS: tuple[str, ...] = ("offset_s", "model", "deadline_ms")
_REQUIRED = ("offset_s", "model")

TraceFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True, eq=False)
class Trace:
    """A parsed trace: one entry per request, in send order."""

    source: str
    offsets: NDArray[np.float64]
    """Seconds from the start, non-decreasing."""
    models: tuple[str, ...]
    """The model of each entry."""
    deadlines_s: NDArray[np.float64]
    """Each entry's deadline in seconds; ``nan`` where the trace gives none."""
    lines: tuple[int, ...]
    """The line of the file each entry came from (1-based), for error messages."""

    def __len__(self) -> int:
        return len(self.models)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The distinct models, in order of first appearance."""
        return tuple(dict.fromkeys(self.models))

    def where(self, i: int) -> str:
        """``file:line`` of entry ``i``."""
        return f"{self.source}:{self.lines[i]}"


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.offsets: list[float] = []
        self.models: list[str] = []
        self.deadlines: list[float] = []
        self.lines: list[int] = []

    def fail(self, line: int, what: str) -> TraceError:
        return TraceError(f"{self.source}:{line}: {what}")

    def add(self, line: int, offset: Any, model: Any, deadline_ms: Any) -> None:
        off = self._number(line, "offset_s", offset)
        if not math.isfinite(off) or off < 0:
            raise self.fail(line, f"offset_s must be a finite number >= 0, got {offset!r}")
        if self.offsets and off < self.offsets[-1]:
            raise self.fail(
                line,
                f"offset_s {off:g} is before the previous entry's {self.offsets[-1]:g} "
                f"(line {self.lines[-1]}); offsets must be non-decreasing",
            )
        if not isinstance(model, str) or not model.strip():
            raise self.fail(line, f"model must be a non-empty string, got {model!r}")
        deadline = math.nan
        if deadline_ms is not None and deadline_ms != "":
            ms = self._number(line, "deadline_ms", deadline_ms)
            if not math.isfinite(ms) or ms <= 0:
                raise self.fail(line, f"deadline_ms must be a positive number, got {deadline_ms!r}")
            deadline = ms / 1000.0
        self.offsets.append(off)
        self.models.append(model.strip())
        self.deadlines.append(deadline)
        self.lines.append(line)

    def _number(self, line: int, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(line, f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise self.fail(line, f"{key} must be a number, got {value!r}") from None

    def build(self) -> Trace:
        if not self.offsets:
            raise TraceError(f"{self.source}:1: the trace has no requests")
        return Trace(
            source=self.source,
            offsets=np.asarray(self.offsets, dtype=np.float64),
            models=tuple(self.models),
            deadlines_s=np.asarray(self.deadlines, dtype=np.float64),
            lines=tuple(self.lines),
        )


def _parse_csv(lines: Iterable[str], b: _Builder) -> None:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            for col in header:
                if col not in COLUMNS:
                    raise b.fail(
                        line,
                        f"unknown column {col!r} in the header (expected {', '.join(COLUMNS)})",
                    )
            for col in _REQUIRED:
                if col not in header:
                    raise b.fail(line, f"the header has no {col!r} column")
            if len(set(header)) != len(header):
                raise b.fail(line, "a column is named twice in the header")
            continue
        if len(row) != len(header):
            raise b.fail(
                line, f"expected {len(header)} fields ({','.join(header)}), got {len(row)}"
            )
        fields = dict(zip(header, (cell.strip() for cell in row), strict=True))
        b.add(line, fields["offset_s"], fields["model"], fields.get("deadline_ms"))
    if header is None:
        raise b.fail(1, f"empty trace: expected a header line {','.join(COLUMNS)}")


def _parse_jsonl(lines: Iterable[str], b: _Builder) -> None:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise b.fail(line, f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise b.fail(line, f"expected a JSON object, got {type(obj).__name__}")
        for key in obj:
            if key not in COLUMNS:
                raise b.fail(line, f"unknown key {key!r} (expected {', '.join(COLUMNS)})")
        for key in _REQUIRED:
            if key not in obj:
                raise b.fail(line, f"missing {key!r}")
        b.add(line, obj["offset_s"], obj["model"], obj.get("deadline_ms"))


def _sniff(first: str) -> TraceFormat:
    return "jsonl" if first.lstrip().startswith("{") else "csv"


def parse_trace(
    lines: Iterable[str], *, source: str = "<trace>", format: TraceFormat | None = None
) -> Trace:
    """Parse trace text (an iterable of lines); ``format`` is sniffed when ``None``."""
    it: Iterator[str] = iter(lines)
    if format is None:
        head: list[str] = []
        for text in it:
            head.append(text)
            if text.strip():
                break
        format = _sniff(head[-1]) if head else "csv"
        it = _chain(head, it)
    b = _Builder(source)
    if format == "csv":
        _parse_csv(it, b)
    elif format == "jsonl":
        _parse_jsonl(it, b)
    else:
        raise TraceError(f"{source}: unknown trace format {format!r} (expected csv or jsonl)")
    return b.build()


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest


def load_trace(path: str | os.PathLike[str], *, format: TraceFormat | None = None) -> Trace:
    """Read and validate a whole trace file.

    The format comes from the suffix (``.csv``; ``.jsonl``/``.ndjson``/``.json``)
    or, failing that, from the first non-blank line (``{`` means JSONL).
    """
    p = Path(path)
    source = str(path)
    if format is None:
        suffix = p.suffix.lower()
        if suffix == ".csv":
            format = "csv"
        elif suffix in (".jsonl", ".ndjson", ".json"):
            format = "jsonl"
    try:
        with p.open(encoding="utf-8", newline="") as f:
            return parse_trace(f, source=source, format=format)
    except UnicodeDecodeError as e:
        raise TraceError(f"{source}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise TraceError(f"{source}: cannot read the trace: {e.strerror or e}") from None
