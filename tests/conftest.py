"""Shared helpers: sim schedulers in virtual time, tiny sim models."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from aiosched.backends.sim import SimBackend, SimModel


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
