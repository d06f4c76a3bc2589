"""HDR histograms of durations, recorded in microseconds (the ``hdrhistogram`` package).

A thin wrapper: recording clamps into the trackable range (1 hour) and keeps
the exact maximum beside the histogram; percentiles are computed with numpy
over the counts array (about 0.2 ms, instead of a pure-Python scan), so a
live view can ask for them several times a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hdrh.histogram import HdrHistogram
from numpy.typing import NDArray

__all__ = ["HIGHEST_US", "Histogram", "percentiles_of_counts"]

HIGHEST_US = 3_600_000_000
"""Longest trackable duration: one hour, in microseconds (longer ones are clamped)."""
SIGNIFICANT_FIGURES = 3


class Histogram:
    """Durations in seconds, stored as microseconds with 3 significant figures."""

    __slots__ = ("_counts", "count", "hdr", "max_s", "sum_s")

    def __init__(self) -> None:
        self.hdr = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)
        self._counts = np.ctypeslib.as_array(self.hdr.counts)
        self.count = 0
        self.max_s = 0.0
        self.sum_s = 0.0

    def record(self, seconds: float) -> None:
        """Record one duration; negative ones count as 0."""
        us = int(seconds * 1e6 + 0.5)
        self.hdr.record_value(us if 0 <= us <= HIGHEST_US else (0 if us < 0 else HIGHEST_US))
        self.count += 1
        self.sum_s += seconds if seconds > 0 else 0.0
        if seconds > self.max_s:
            self.max_s = seconds

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s recordings to this one."""
        if other.count:
            self.hdr.add(other.hdr)
            self.count += other.count
            self.sum_s += other.sum_s
            self.max_s = max(self.max_s, other.max_s)

    @property
    def counts(self) -> NDArray[np.uint64]:
        """The live counts array (a view, not a copy): index ``i`` holds values near
        :func:`percentiles_of_counts`'s value of ``i``."""
        return self._counts

    @property
    def mean_s(self) -> float | None:
        """The exact mean of the recorded durations (negative ones as 0); ``None`` when empty."""
        return self.sum_s / self.count if self.count else None

    def copy(self) -> Histogram:
        out = Histogram()
        out.merge(self)
        return out

    def percentiles_s(self, percentiles: Sequence[float]) -> list[float | None]:
        """Seconds at each percentile (0..100); ``None`` for each when empty.

        As HdrHistogram reports it: the highest value equivalent (within 0.1 %)
        to the recorded ones, capped at the exact maximum.
        """
        return percentiles_of_counts(self._counts, percentiles, cap_s=self.max_s)


_TEMPLATE = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)


def percentiles_of_counts(
    counts: NDArray[np.uint64], percentiles: Sequence[float], *, cap_s: float | None = None
) -> list[float | None]:
    """Percentiles (seconds) of a :class:`Histogram` counts array, or of a difference of two.

    ``None`` for each percentile when the counts are all zero.
    """
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1]) if len(cumulative) else 0
    if total <= 0:
        return [None] * len(percentiles)
    out: list[float | None] = []
    for q in percentiles:
        target = max(1, int(min(q, 100.0) * total / 100.0 + 0.5))
        index = int(np.searchsorted(cumulative, target))
        us = _TEMPLATE.get_highest_equivalent_value(_TEMPLATE.get_value_from_index(index))
        seconds = us / 1e6
        out.append(seconds if cap_s is None else min(seconds, cap_s))
    return out
