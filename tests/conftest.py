"""Shared helpers: sim schedulers in virtual time, tiny sim models, the ``sim`` marker.

A coroutine test marked ``@pytest.mark.sim`` runs to completion in virtual time, on a
fresh :class:`aiosched.simtime.VirtualTimeLoop` (``simtime.run``), with the fixtures and
parameters it asks for; ``@pytest.mark.sim(start=...)`` starts the clock there. Tests
marked ``asyncio`` are pytest-asyncio's (strict mode) and an ``async def`` test with
neither mark fails, as pytest fails any coroutine test no plugin runs.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Sequence

import pytest

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.timeline import Running


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs a coroutine test marked ``sim`` in virtual time; leaves any other test alone."""
    marker = pyfuncitem.get_closest_marker("sim")
    if marker is None:
        return None
    if pyfuncitem.get_closest_marker("asyncio") is not None:
        pytest.fail("a test is either marked sim or asyncio, not both", pytrace=False)
    if marker.args or set(marker.kwargs) - {"start"}:
        pytest.fail(f"pytest.mark.sim takes only start=, not {marker}", pytrace=False)
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        pytest.fail(f"pytest.mark.sim is for async def tests, not {test!r}", pytrace=False)
    funcargs = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    simtime.run(test(**kwargs), start=float(marker.kwargs.get("start", 0.0)))
    return True


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
