"""The files ``aiosched report`` reads, recognised by their content and checked.

Three kinds:

* a load test report (``aiosched loadtest --json``): a JSON object with
  ``config``, ``requests`` and ``latency_ms``;
* a comparison (``aiosched compare --json``): a JSON object with ``runs``,
  each ``{"policy", "predictor", "rate_rps", "report"}``;
* a timeline (``aiosched loadtest --timeline``): JSON lines, or CSV for a
  ``.csv`` name (:mod:`aiosched.loadgen.timelinefile`).

Anything else, or a file of one kind that lacks what the figures need, raises
:class:`ReportInputError` with one line naming the file. Only the standard
library is imported here (the checks run without matplotlib).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidConfig
from ..loadgen.timelinefile import TimelineError, TimelineRow, read_timeline

__all__ = [
    "CDF_POINTS",
    "CompareInput",
    "Inputs",
    "ReportInputError",
    "RunInput",
    "TimelineInput",
    "cdf_points",
    "load_input",
    "load_inputs",
    "parse_window",
]

#: The latency percentiles of a report, as fractions of the requests at or under them.
CDF_POINTS: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p999", 0.999),
    ("max", 1.0),
)

_TIMELINE_SUFFIXES = (".jsonl", ".ndjson", ".csv")


class ReportInputError(InvalidConfig):
    """An input of ``aiosched report`` is missing or malformed (one line, naming the file)."""


@dataclass(frozen=True)
class RunInput:
    """One load test report."""

    path: Path
    report: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    def deadlines_ms(self) -> dict[str, float]:
        """Each model's deadline (ms), from the report's ``config.models``."""
        return _deadlines(self.report)


@dataclass(frozen=True)
class CompareInput:
    """One ``aiosched compare`` document."""

    path: Path
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class TimelineInput:
    """One timeline file."""

    path: Path
    rows: list[TimelineRow]

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Inputs:
    """What the command was given, by kind, in the order given."""

    runs: list[RunInput] = field(default_factory=list)
    compares: list[CompareInput] = field(default_factory=list)
    timelines: list[TimelineInput] = field(default_factory=list)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _deadlines(report: dict[str, Any]) -> dict[str, float]:
    models = report.get("config", {}).get("models")
    out: dict[str, float] = {}
    if isinstance(models, dict):
        for name, m in models.items():
            if isinstance(m, dict) and _number(m.get("deadline_ms")):
                out[str(name)] = float(m["deadline_ms"])
    return out


def cdf_points(section: dict[str, Any]) -> list[tuple[float, float]]:
    """``(latency ms, fraction)`` at each of :data:`CDF_POINTS` the section has a value for."""
    lat = section.get("latency_ms") or {}
    return [(float(lat[k]), q) for k, q in CDF_POINTS if _number(lat.get(k))]


def _check_report(report: Any, where: str) -> dict[str, Any]:
    """A load test report with what the figures read; ``where`` names it in errors."""
    if not isinstance(report, dict):
        raise ReportInputError(f"{where}: a report must be a JSON object")
    for key in ("config", "requests", "latency_ms"):
        if not isinstance(report.get(key), dict):
            raise ReportInputError(f"{where}: no {key!r} object (not an aiosched loadtest report)")
    requests = report["requests"]
    for key in ("sent", "met_deadline"):
        value = requests.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ReportInputError(f"{where}: requests.{key} must be an integer >= 0")
    for key, value in report["latency_ms"].items():
        if value is not None and not _number(value):
            raise ReportInputError(f"{where}: latency_ms.{key} must be a number or null")
    for key in ("offered_rps", "goodput_rps"):
        value = report.get(key)
        if value is not None and not _number(value):
            raise ReportInputError(f"{where}: {key} must be a number or null")
    per_model = report.get("per_model", {})
    if not isinstance(per_model, dict):
        raise ReportInputError(f"{where}: per_model must be an object")
    for name, section in per_model.items():
        if not isinstance(section, dict) or not isinstance(section.get("latency_ms"), dict):
            raise ReportInputError(f"{where}: per_model.{name} has no latency_ms object")
    return report


def _check_compare(doc: dict[str, Any], where: str) -> dict[str, Any]:
    runs = doc["runs"]
    if not isinstance(runs, list) or not runs:
        raise ReportInputError(f"{where}: 'runs' must be a non-empty list")
    for i, run in enumerate(runs):
        at = f"{where}: runs[{i}]"
        if not isinstance(run, dict):
            raise ReportInputError(f"{at} must be an object")
        if not isinstance(run.get("policy"), str):
            raise ReportInputError(f"{at}: no policy")
        if run.get("predictor") is not None and not isinstance(run["predictor"], str):
            raise ReportInputError(f"{at}: predictor must be a string")
        if not _number(run.get("rate_rps")) or run["rate_rps"] <= 0:
            raise ReportInputError(f"{at}: rate_rps must be a number > 0")
        _check_report(run.get("report"), f"{at}.report")
    return doc


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: not a text file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ReportInputError(f"{path}: not JSON ({exc})") from None


def load_input(path: str | os.PathLike[str]) -> RunInput | CompareInput | TimelineInput:
    """Read one file and tell its kind by its content (timelines by their name's suffix)."""
    p = Path(path)
    if not p.exists():
        raise ReportInputError(f"{p}: no such file")
    if p.is_dir():
        raise ReportInputError(f"{p}: is a directory")
    try:
        if p.suffix.lower() in _TIMELINE_SUFFIXES:
            try:
                return TimelineInput(p, read_timeline(p))
            except TimelineError as exc:
                raise ReportInputError(str(exc)) from None
        data = _load_json(p)
    except OSError as exc:
        raise ReportInputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if isinstance(data, dict) and "runs" in data:
        return CompareInput(p, _check_compare(data, str(p)))
    if isinstance(data, dict) and "latency_ms" in data:
        return RunInput(p, _check_report(data, str(p)))
    raise ReportInputError(
        f"{p}: neither an aiosched loadtest report (--json), a compare document (--json) "
        "nor a timeline (.jsonl or .csv)"
    )


def load_inputs(paths: list[str | os.PathLike[str]] | list[Path]) -> Inputs:
    """Read every file (:func:`load_input`), grouped by kind; at least one file."""
    if not paths:
        raise ReportInputError("give at least one file")
    out = Inputs()
    for path in paths:
        item = load_input(path)
        if isinstance(item, RunInput):
            out.runs.append(item)
        elif isinstance(item, CompareInput):
            out.compares.append(item)
        else:
            out.timelines.append(item)
    return out


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"2.0:2.1"`` -> ``(2.0, 2.1)`` seconds; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        start_s, end_s = (float(x) for x in text.split(":"))
    except ValueError:
        raise ReportInputError(f"--window must be START:END in seconds, got {text!r}") from None
    if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s):
        raise ReportInputError(f"--window needs 0 <= START < END, got {text!r}")
    return start_s, end_s
