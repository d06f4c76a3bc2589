"""Solo latency per model and batch size: tracked online, interpolated across sizes.

The coarse regressions factor a latency into *solo latency x slowdown*;
:class:`SoloTable` holds the first factor. Each (model, batch size) keeps a
level that is the plain mean of its first ``1 / rate`` observations and an
exponentially weighted mean after that: quick to settle, then steady, and
still able to follow a drifting device. Sizes never observed are
interpolated from their neighbours (:func:`interpolate`, shared with
:class:`~aiosched.predict.profile.Profile`).

When a run shows the device sped up (:func:`sped_up`, the rule
:class:`~aiosched.predict.solo.SoloPredictor` uses too), every size is
rescaled alike: the table learns only from runs alone, so during a slowdown
every size it ran saw it, and a size left predicted too slow would never be
chosen again to show otherwise.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence

from ..errors import InvalidConfig

__all__ = ["SoloTable", "interpolate", "sped_up"]

_SPED_UP = 0.5  # a latency under this fraction of its reference is not noise
_SPED_UP_AFTER = 3  # observations a size needs before a fast run can overturn them


def sped_up(latency: float, reference: float, count: int) -> bool:
    """Whether ``latency`` shows that the device sped up (a slowdown ended): under half
    of ``reference``, what ``count >= 3`` earlier runs of the same size measured."""
    return count >= _SPED_UP_AFTER and latency < _SPED_UP * reference


def interpolate(levels: Mapping[int, float], sizes: Sequence[int], b: int) -> float:
    """``levels`` at batch size ``b``: linear between known sizes, extended by the last slope.

    ``sizes`` is ``sorted(levels)``, non-empty. Below the smallest known size
    the smallest one's level is used (an upper bound: fewer items are not
    slower); above the largest the last segment's slope (never negative)
    continues; a single known size scales linearly.
    """
    value = levels.get(b)
    if value is not None:
        return value
    i = bisect_left(sizes, b)
    if i == 0:
        return levels[sizes[0]]
    if i == len(sizes):
        last = sizes[-1]
        if len(sizes) == 1:
            return levels[last] * b / last
        prev = sizes[-2]
        slope = max(0.0, (levels[last] - levels[prev]) / (last - prev))
        return levels[last] + slope * (b - last)
    lo, hi = sizes[i - 1], sizes[i]
    return levels[lo] + (levels[hi] - levels[lo]) * (b - lo) / (hi - lo)


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
