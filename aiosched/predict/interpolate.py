"""Solo latencies across batch sizes: interpolation, and when a fast run means a faster device.

Shared by :class:`~aiosched.predict.profile.Profile`,
:class:`~aiosched.predict.solotable.SoloTable` and
:class:`~aiosched.predict.solo.SoloPredictor`, which each keep solo latencies
for some batch sizes and answer for any.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence

__all__ = ["interpolate", "sped_up"]

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
