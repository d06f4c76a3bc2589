"""Solo latency per model and batch size: tracked online, interpolated across sizes.

The coarse regressions factor a latency into *solo latency x slowdown*;
:class:`SoloTable` holds the first factor. Each (model, batch size) keeps a
level that is the plain mean of its first ``1 / rate`` observations and an
exponentially weighted mean after that: quick to settle, then steady, and
still able to follow a drifting device. Sizes never observed are
interpolated from their neighbours
(:func:`~aiosched.predict.interpolate.interpolate`).

When a run shows the device sped up
(:func:`~aiosched.predict.interpolate.sped_up`), every size is rescaled
alike: the table learns only from runs alone, so during a slowdown every
size it ran saw it, and a size left predicted too slow would never be chosen
again to show otherwise.
"""

from __future__ import annotations

import math
from bisect import insort

from ..errors import InvalidConfig
from .interpolate import interpolate, sped_up

__all__ = ["SoloTable"]


class SoloTable:
    """Per-model, per-size solo latency in seconds.

    ``rate`` is the EWMA weight of a new observation once a size has
    ``1 / rate`` of them; ``default`` (seconds at batch 1, growing as
    ``sqrt(b)``) answers for models never seen.
    """

    def __init__(self, rate: float = 0.1, default: float = 0.01) -> None:
        if not 0.0 < rate <= 1.0:
            raise InvalidConfig("rate must be in (0, 1]")
        if not (default > 0 and math.isfinite(default)):
            raise InvalidConfig("default must be a positive number of seconds")
        self.rate = rate
        self.default = default
        self._levels: dict[str, dict[int, float]] = {}
        self._counts: dict[str, dict[int, int]] = {}
        self._sizes: dict[str, list[int]] = {}
        self._cache: dict[str, dict[int, float]] = {}

    def knows(self, model: str) -> bool:
        return model in self._levels

    def get(self, model: str, b: int) -> float:
        """Predicted solo seconds of a batch of ``b`` (cached until the model's next update)."""
        cache = self._cache.get(model)
        if cache is None:
            cache = self._cache[model] = {}
        value = cache.get(b)
        if value is None:
            levels = self._levels.get(model)
            if levels is None:
                value = self.default * math.sqrt(max(1, b))
            else:
                value = interpolate(levels, self._sizes[model], b)
            cache[b] = value
        return value

    def set(self, model: str, b: int, latency: float) -> None:
        """Set a size's level outright (an offline fit), as if it had ``1 / rate`` observations."""
        if latency > 0 and math.isfinite(latency):
            self._put(model, b, latency, math.ceil(1 / self.rate))

    def observe(self, model: str, b: int, latency: float) -> None:
        """Fold one solo latency in."""
        if not (latency > 0 and math.isfinite(latency)):
            return
        levels = self._levels.get(model)
        if levels is None or b not in levels:
            self._put(model, b, latency, 1)
            return
        counts = self._counts[model]
        if sped_up(latency, levels[b], counts[b]):  # every size alike (see the module doc)
            ratio = latency / levels[b]
            for size in levels:
                levels[size] *= ratio
        counts[b] += 1
        levels[b] += max(self.rate, 1.0 / counts[b]) * (latency - levels[b])
        self._cache.pop(model, None)

    def forget(self, model: str) -> None:
        """Drop everything known about ``model``."""
        for table in (self._levels, self._counts, self._sizes, self._cache):
            table.pop(model, None)

    def _put(self, model: str, b: int, latency: float, count: int) -> None:
        levels = self._levels.setdefault(model, {})
        sizes = self._sizes.setdefault(model, [])
        if b not in levels:
            insort(sizes, b)
        levels[b] = latency
        self._counts.setdefault(model, {})[b] = count
        self._cache.pop(model, None)
