"""The ``solo`` predictor: per model and batch size, a high percentile of recent latencies.

Like Clockwork, it ignores co-location: it keeps the last ``window``
latencies of each (model, batch size) and predicts their ``quantile``. With
``solo_only`` it learns only from executions nothing ran beside (a solo
profile); by default it learns from every execution, so its tail absorbs the
interference it has seen. Sizes it has not seen are interpolated from the
neighbouring sizes it has.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor
from .solotable import interpolate

__all__ = ["SoloPredictor"]

# A latency under this fraction of its size's level is not noise: the device sped up.
_SPED_UP = 0.5


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
        self._levels: dict[str, dict[int, float]] = {}
        self._sizes: dict[str, list[int]] = {}
        self._cache: dict[tuple[str, int], float] = {}

    def params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "quantile": self.quantile,
            "solo_only": self.solo_only,
            "default": self.default,
        }

    def knows(self, model: str) -> bool:
        return model in self._levels

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
        levels = self._levels.get(model)
        before = levels.get(batch_size) if levels else None
        if before is not None and len(samples) >= 3 and latency < _SPED_UP * before:
            self._rescale(model, latency / before)
        samples.append(latency)
        ordered = sorted(samples)
        rank = self.quantile * (len(ordered) - 1)
        lo = math.floor(rank)
        hi = min(lo + 1, len(ordered) - 1)
        level = ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
        levels = self._levels.setdefault(model, {})
        if batch_size not in levels:
            self._sizes[model] = sorted([*levels, batch_size])
        levels[batch_size] = level
        for cached in [k for k in self._cache if k[0] == model]:
            del self._cache[cached]

    def _rescale(self, model: str, ratio: float) -> None:
        """The device got much faster (a slowdown ended): every size of ``model`` is taken to
        have sped up alike, until its own runs say otherwise. Otherwise sizes no longer
        chosen, because they were predicted too slow, would stay predicted too slow."""
        for (name, b), samples in self._samples.items():
            if name == model and samples:
                level = self._levels[model][b]
                samples.clear()
                samples.append(level * ratio)
                self._levels[model][b] = level * ratio

    def _learn(self, execution: Execution) -> None:
        if not execution.ok or (self.solo_only and not execution.solo):
            return
        self.observe(execution.model, execution.batch_size, execution.latency)

    def _interpolate(self, model: str, b: int) -> float:
        levels = self._levels.get(model)
        if not levels:
            return self.default * math.sqrt(max(1, b))
        return interpolate(levels, self._sizes[model], b)
