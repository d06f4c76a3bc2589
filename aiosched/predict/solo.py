"""The ``solo`` predictor: per model and batch size, a high percentile of recent latencies.

Like Clockwork, it ignores co-location: it keeps the last ``window``
latencies of each (model, batch size) and predicts their ``quantile``. With
``solo_only`` it learns only from executions nothing ran beside (a solo
profile); by default it learns from every execution, so its tail absorbs the
interference it has seen. Sizes it has not seen are interpolated from the
neighbouring sizes it has.

Admission and batch sizes act on these levels, and a level that is too high
locks its size out: the policy stops choosing the size, so it never runs to
show that the device recovered. Two rules keep a path for evidence.

- A run that shows the device sped up against its size's level
  (:func:`~aiosched.predict.interpolate.sped_up`) drops from that size's window
  every latency it shows the same against: they describe a device that is
  gone. It keeps the rest, and it leaves the other sizes alone. Rescaling
  every size by one size's ratio (as
  :class:`~aiosched.predict.solotable.SoloTable` does, whose sizes all ran
  alone through a slowdown) goes wrong here: a window mixes runs alone with
  runs beside others and may hold a slow outlier or two, so a run alone can
  be half its level on an unchanged device, and sizes that never saw the
  slowdown would be taken below their true latency.
- A size's level is held to the shape batching gives by every size run
  more recently than it (:class:`_Curve`): no slower than a larger one,
  and no slower per item than a smaller one. So a size that saw a slowdown
  and was not run since is bounded by what the sizes run since have
  measured, while a size just run is never lowered by older evidence.
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from collections.abc import Sequence

from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor
from .interpolate import interpolate, sped_up

__all__ = ["SoloPredictor"]


class SoloPredictor(Predictor):
    name = "solo"

    def __init__(
        self,
        window: int = 20,
        quantile: float = 0.9,
        solo_only: bool = False,
        default: float = 0.01,
    ) -> None:
        super().__init__()
        if window < 1:
            raise InvalidConfig("window must be >= 1")
        if not 0.0 <= quantile <= 1.0:
            raise InvalidConfig("quantile must be in [0, 1]")
        if not (default > 0 and math.isfinite(default)):
            raise InvalidConfig("default must be a positive number of seconds")
        self.window = window
        self.quantile = quantile
        self.solo_only = solo_only
        self.default = default
        self._samples: dict[tuple[str, int], deque[float]] = {}
        self._curves: dict[str, _Curve] = {}
        self._cache: dict[tuple[str, int], float] = {}

    def knows(self, model: str) -> bool:
        return model in self._curves

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        try:
            return self._cache[(model, batch_size)]
        except KeyError:
            value = self._interpolate(model, batch_size)
            self._cache[(model, batch_size)] = value
            return value

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        """Add one measured latency (from a profile or a warm-up run)."""
        if not (latency > 0 and math.isfinite(latency)):
            return
        key = (model, batch_size)
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque(maxlen=self.window)
        curve = self._curves.get(model)
        if curve is None:
            curve = self._curves[model] = _Curve()
        before = curve.levels.get(batch_size)
        if before is not None and sped_up(latency, before, len(samples)):
            kept = [s for s in samples if not sped_up(latency, s, len(samples))]
            samples.clear()
            samples.extend(kept)
        samples.append(latency)
        ordered = sorted(samples)
        rank = self.quantile * (len(ordered) - 1)
        lo = math.floor(rank)
        hi = min(lo + 1, len(ordered) - 1)
        curve.update(batch_size, ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo), latency)
        for cached in [k for k in self._cache if k[0] == model]:
            del self._cache[cached]

    def forget(self, model: str) -> None:
        self._curves.pop(model, None)
        for table in (self._samples, self._cache):
            for key in [k for k in table if k[0] == model]:
                del table[key]

    def _learn(self, execution: Execution) -> None:
        if not execution.ok or (self.solo_only and not execution.solo):
            return
        self.observe(execution.model, execution.batch_size, execution.latency)

    def _interpolate(self, model: str, b: int) -> float:
        curve = self._curves.get(model)
        if curve is None:
            return self.default * math.sqrt(max(1, b))
        return interpolate(curve.bounded, curve.sizes, b)


class _Curve:
    """One model's levels by batch size, and ``bounded``: each held by every size run after
    it to no more than a larger one's (more items do not take less time) and no more per
    item than a smaller one's (batching pays, the reason to batch at all).

    A newer size bounds with the larger of its level and its last latency: its level lags
    its window, and when the device has just slowed down, the lagging level of a size run
    once since must not undo what the sizes that have seen more of it have learned. A bound
    through a chain of newer sizes is never tighter than the direct one from its start, so
    the pairs suffice; and they are kept up to date in one pass over the sizes per update
    (the size updated is the newest, so it is a new bound on every other), rescanning only
    a size whose tightest bound came from the updated one and has just loosened.
    """

    __slots__ = ("_bound", "_now", "_runs", "_seen", "_source", "bounded", "levels", "sizes")

    def __init__(self) -> None:
        self.levels: dict[int, float] = {}  # the window's quantile, per size
        self.sizes: list[int] = []  # sorted(levels)
        self.bounded: dict[int, float] = {}
        self._runs = 0
        self._seen: dict[int, int] = {}  # per size, the count of updates at its last
        self._now: dict[int, float] = {}  # per size, what it bounds others with
        self._bound: dict[int, float] = {}  # per size, the tightest bound from newer sizes
        self._source: dict[int, int] = {}  # per size, the size that bound came from (0: none)

    def update(self, b: int, level: float, last: float) -> None:
        if b not in self.levels:
            insort(self.sizes, b)
        self.levels[b] = level
        self._runs += 1
        self._seen[b] = self._runs
        loosened = max(level, last) > self._now.get(b, math.inf)
        value = self._now[b] = max(level, last)
        self._bound[b] = math.inf  # the newest: nothing bounds it
        self._source[b] = 0
        for a in self.sizes:
            if a == b:
                continue
            if loosened and self._source[a] == b:
                self._rescan(a)
                continue
            limit = value if b > a else value * a / b
            if limit < self._bound[a]:
                self._bound[a] = limit
                self._source[a] = b
        self.bounded = {a: min(self.levels[a], self._bound[a]) for a in self.sizes}

    def _rescan(self, a: int) -> None:
        bound, source, at = math.inf, 0, self._seen[a]
        for c in self.sizes:
            if self._seen[c] > at:
                limit = self._now[c] if c > a else self._now[c] * a / c
                if limit < bound:
                    bound, source = limit, c
        self._bound[a] = bound
        self._source[a] = source
