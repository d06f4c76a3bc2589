"""Per-second outcomes of a run: what ``aiosched loadtest --csv FILE`` writes.

The driver records every send by its *intended* time and every outcome by
the time it happened, both in seconds from the start of the run, into bins
of ``bin_s`` seconds (one by default). A row per bin::

    t_s, offered, completed, met, missed, rejected, failed, cancelled, p50_ms, p99_ms

``offered`` counts the sends intended in that second (the load the target
was offered then); the outcome columns count the requests that resolved in
it; ``p50_ms`` and ``p99_ms`` are the latency (from the intended send time)
of the requests that completed in it, empty where none did. The rows cover
the run without gaps, from 0 to the last bin with anything in it.
"""

from __future__ import annotations

import csv
import math
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["CSV_COLUMNS", "Outcome", "SeriesRow", "TimeSeries"]

Outcome = Literal["met", "missed", "rejected", "failed", "cancelled"]

CSV_COLUMNS: tuple[str, ...] = (
    "t_s",
    "offered",
    "completed",
    "met",
    "missed",
    "rejected",
    "failed",
    "cancelled",
    "p50_ms",
    "p99_ms",
)

_OUTCOMES: tuple[Outcome, ...] = ("met", "missed", "rejected", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One bin of a :class:`TimeSeries`."""

    t_s: float
    offered: int
    met: int
    missed: int
    rejected: int
    failed: int
    cancelled: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def completed(self) -> int:
        return self.met + self.missed

    def as_csv(self) -> list[str]:
        def ms(x: float | None) -> str:
            return "" if x is None else f"{x:.3f}"

        return [
            f"{self.t_s:g}",
            str(self.offered),
            str(self.completed),
            str(self.met),
            str(self.missed),
            str(self.rejected),
            str(self.failed),
            str(self.cancelled),
            ms(self.p50_ms),
            ms(self.p99_ms),
        ]


class TimeSeries:
    """Counts and latencies of a run in bins of ``bin_s`` seconds (see the module docstring)."""

    __slots__ = ("_counts", "_done", "_latency", "_offered", "_pct", "bin_s")

    def __init__(self, bin_s: float = 1.0) -> None:
        if not (math.isfinite(bin_s) and bin_s > 0):
            raise ValueError(f"bin_s must be > 0 seconds, got {bin_s!r}")
        self.bin_s = float(bin_s)
        self._offered: list[int] = []
        self._counts: dict[Outcome, list[int]] = {o: [] for o in _OUTCOMES}
        self._latency: list[array[float]] = []
        # Completions arrive in time order, so a bin before the current one gets no more
        # latencies: it is reduced to its percentiles and its samples freed, or a long run
        # would hold every request's latency (8 MiB per million requests).
        self._pct: list[tuple[float | None, float | None]] = []
        self._done = 0  # bins [0, _done) are reduced

    def _bin(self, at_s: float) -> int:
        k = int(at_s / self.bin_s) if at_s > 0 else 0
        while len(self._offered) <= k:
            self._offered.append(0)
            for counts in self._counts.values():
                counts.append(0)
            self._latency.append(array("d"))
        return k

    def offered(self, at_s: float) -> None:
        """A send intended ``at_s`` seconds after the start."""
        self._offered[self._bin(at_s)] += 1

    def resolved(self, at_s: float, outcome: Outcome, latency_s: float | None = None) -> None:
        """A request resolved ``at_s`` s after the start; completed ones give their latency."""
        k = self._bin(at_s)
        self._counts[outcome][k] += 1
        if latency_s is not None:
            if k < self._done:  # out of order after all: keep the sample, count it late
                k = self._done
            self._latency[k].append(latency_s)
        if k > self._done:
            self._reduce(k)

    def _reduce(self, upto: int) -> None:
        for i in range(self._done, upto):
            self._pct.append(_percentiles(self._latency[i]))
            self._latency[i] = array("d")
        self._done = upto

    def __len__(self) -> int:
        return len(self._offered)

    def rows(self) -> Iterator[SeriesRow]:
        for k in range(len(self._offered)):
            p50_ms, p99_ms = self._pct[k] if k < self._done else _percentiles(self._latency[k])
            yield SeriesRow(
                t_s=round(k * self.bin_s, 9),
                offered=self._offered[k],
                met=self._counts["met"][k],
                missed=self._counts["missed"][k],
                rejected=self._counts["rejected"][k],
                failed=self._counts["failed"][k],
                cancelled=self._counts["cancelled"][k],
                p50_ms=p50_ms,
                p99_ms=p99_ms,
            )

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the rows, with a header of :data:`CSV_COLUMNS`."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for row in self.rows():
                writer.writerow(row.as_csv())


def _percentiles(lat: array[float]) -> tuple[float | None, float | None]:
    """p50 and p99 in milliseconds, ``None`` for a bin with no completions."""
    if not lat:
        return None, None
    p50, p99 = np.percentile(np.frombuffer(lat, dtype=np.float64), (50.0, 99.0))
    return float(p50) * 1000.0, float(p99) * 1000.0
