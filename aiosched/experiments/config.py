"""The predictor experiment's settings, shared by what records its traces and what scores them.

Its own module so that :mod:`.recording` (which needs the workload a config
describes) and :mod:`.predictors` (which records, then scores) both import it
and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidConfig
from .setup import CPU_MODELS, CUDA_MODELS, SIM_MODELS
from .workload import Phase

__all__ = ["PredictorsConfig"]


@dataclass(frozen=True)
class PredictorsConfig:
    """One experiment's settings; :meth:`for_backend` gives the defaults of each backend.

    ``rate`` is the total arrival rate (requests/s, split evenly over
    ``models``), ``deadline`` every request's budget in seconds, ``duration``
    the seconds of traffic in the accuracy trace; the drift trace runs
    ``drift_duration`` seconds, the drift at ``drift_at`` of them, after which
    ``drift_speed`` is the device speed (sim) and the first model's rate is
    multiplied by ``drift_mix`` (the others' scaled to keep the total).
    """

    backend: str = "sim"
    models: tuple[str, ...] = SIM_MODELS
    lanes: int = 2
    rate: float = 300.0
    deadline: float = 0.1
    duration: float = 30.0
    max_batch_size: int = 8
    split: float = 0.75
    seed: int = 0
    drift: bool = True
    drift_duration: float = 20.0
    drift_at: float = 0.5
    drift_speed: float = 0.8
    drift_mix: float = 4.0
    recorder: str = "solo"

    @classmethod
    def for_backend(cls, backend: str, **overrides: Any) -> PredictorsConfig:
        if backend == "cpu":
            base = cls(
                backend="cpu",
                models=CPU_MODELS,
                rate=24.0,
                deadline=1.0,
                duration=60.0,
                drift_duration=50.0,
            )
        elif backend == "cuda":
            base = cls(
                backend="cuda",
                models=CUDA_MODELS,
                rate=200.0,
                deadline=0.2,
                duration=60.0,
                drift_duration=50.0,
            )
        elif backend == "sim":
            base = cls()
        else:
            raise InvalidConfig(f"unknown backend {backend!r}; choose sim, cpu or cuda")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if self.lanes < 1 or self.max_batch_size < 1:
            raise InvalidConfig("lanes and max_batch_size must be >= 1")
        if not (self.rate > 0 and self.deadline > 0 and self.duration > 0):
            raise InvalidConfig("rate, deadline and duration must be > 0")
        if not 0 < self.split < 1 or not 0 < self.drift_at < 1:
            raise InvalidConfig("split and drift_at must be in (0, 1)")
        if not (self.drift_speed > 0 and self.drift_mix > 0 and self.drift_duration > 0):
            raise InvalidConfig("drift_speed, drift_mix and drift_duration must be > 0")

    def phases(self, drift: bool) -> list[Phase]:
        even = {m: self.rate / len(self.models) for m in self.models}
        if not drift:
            return [Phase(self.duration, even)]
        before = self.drift_duration * self.drift_at
        shifted = dict(even)
        first = self.models[0]
        shifted[first] = even[first] * self.drift_mix
        rest = [m for m in self.models if m != first]
        if rest:
            left = max(0.0, self.rate - shifted[first])
            shifted.update({m: left / len(rest) for m in rest})
        return [Phase(before, even), Phase(self.drift_duration - before, shifted)]
