"""Shared helpers: sim schedulers in virtual time, tiny sim models."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

import aiosched
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.timeline import Running


def flat_model(latency: float = 0.010, per_item: float = 0.0, **kw: object) -> SimModel:
    """A noise-free sim model: ``latency`` seconds at batch 1 (plus ``per_item`` per extra item)."""
    params: dict[str, object] = {"noise": 0.0, "exponent": 1.0}
    params.update(kw)
    return SimModel(base=latency - per_item, per_item=per_item, **params)  # type: ignore[arg-type]


def sim(lanes: int = 2, seed: int = 0, **models: SimModel) -> SimBackend:
    return SimBackend(lanes=lanes, models=models or {"m": flat_model()}, seed=seed)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """No test may leave a lane thread behind."""
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("aiosched-")]
    assert not leaked, f"threads outlived their scheduler: {leaked}"


class ToyPredictor(aiosched.Predictor):
    """Knows the truth of a toy device: any co-runner multiplies a batch's latency by
    ``factor``; ``solo`` gives each model's latency alone (10 ms for any other)."""

    name = "toy"

    def __init__(self, factor: float = 2.0, solo: dict[str, float] | None = None) -> None:
        super().__init__()
        self.factor = factor
        self.solo = solo or {}

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        return self.solo.get(model, 0.010) * (self.factor if running else 1.0)

    def _learn(self, execution: aiosched.Execution) -> None:
        pass

    def knows(self, model: str) -> bool:
        return True

    def params(self) -> dict[str, object]:
        return {"factor": self.factor, "solo": self.solo}
