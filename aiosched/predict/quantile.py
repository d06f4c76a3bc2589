"""A quantile of the latency instead of its expectation, around any predictor.

A scheduler that sizes batches against deadlines wants a latency that a
batch stays under most of the time, not the mean: a mean is missed half the
time. :class:`QuantilePredictor` takes the inner predictor's prediction as
the expectation and multiplies it by ``exp(margin)``, one margin per model,
learnt online so that a fraction ``quantile`` of the executions take at most
what was predicted.

The margin is the ``quantile`` of ``log(actual / expected)``, tracked by
pinball-loss SGD, which needs no window: after each execution a step of
``step * quantile`` up when it took longer than predicted (the expectation
times the margin of its dispatch: the prediction the scheduler acted on), a
step of ``step * (1 - quantile)`` down otherwise. At equilibrium a fraction
``quantile`` of the executions are under it. Working in logs makes one margin
fit every batch size and co-location of a model alike. A model's margin
starts to move once the inner predictor knows the model: while it guesses,
its errors say nothing about its spread.

``make_predictor("overlap:quantile=0.9")`` builds
``QuantilePredictor(OverlapPredictor(), 0.9)`` (the scheduler's default);
``quantile=`` works with every predictor's spec the same way, except where the
predictor takes a ``quantile`` of its own (``solo``, whose window percentile
already is one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor, Recipe

if TYPE_CHECKING:
    from .profile import Profile

__all__ = ["QuantilePredictor"]


class QuantilePredictor(Predictor):
    """``inner``'s prediction times a per-model margin learnt towards the ``quantile``.

    ``inner`` is used as it is (trained or not) and is available as
    ``.inner``; a :class:`~aiosched.predict.base.Recipe` builds a fresh one
    (what ``params()`` reports, so that a clone starts untrained). ``step``
    is the margin's learning rate, in log units per execution. The name is
    the inner predictor's: the wrapper changes what it predicts, not how.
    """

    def __init__(
        self, inner: Predictor | Recipe, quantile: float = 0.9, step: float = 0.01
    ) -> None:
        super().__init__()
        if not 0.0 < quantile < 1.0:
            raise InvalidConfig("quantile must be in (0, 1)")
        if not 0.0 < step <= 0.1:
            raise InvalidConfig("quantile step must be in (0, 0.1]")
        self.inner = inner.build() if isinstance(inner, Recipe) else inner
        if not isinstance(self.inner, Predictor):
            raise InvalidConfig(f"inner must be a Predictor, got {type(inner).__name__}")
        self.name = self.inner.name
        self.quantile = quantile
        self.step = step
        self._margins: dict[str, float] = {}  # log of the factor from expected to the quantile
        self._factors: dict[str, float] = {}  # exp(margin), kept so predict skips the exp

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        expected = self.inner.predict(model, batch_size, running, now)
        factor = self._factors.get(model)
        return expected if factor is None else expected * factor

    def _learn(self, execution: Execution) -> None:
        model = execution.model
        predicted = execution.predicted
        if (
            execution.ok
            and not execution.warmup
            and predicted > 0  # false for NaN too
            and self.inner.knows(model)
        ):
            over = execution.latency > predicted
            margin = self._margins.get(model, 0.0)
            margin += self.step * (self.quantile - (0.0 if over else 1.0))
            self._margins[model] = margin
            self._factors[model] = math.exp(margin)
        self.inner.learn(execution)

    def forget(self, model: str) -> None:
        self._margins.pop(model, None)
        self._factors.pop(model, None)
        self.inner.forget(model)

    def margin(self, model: str) -> float:
        """The model's margin: the log of the factor applied to the inner prediction."""
        return self._margins.get(model, 0.0)

    def knows(self, model: str) -> bool:
        return self.inner.knows(model)

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        self.inner.observe(model, batch_size, latency)

    def seed(self, profile: Profile) -> None:
        self.inner.seed(profile)

    def attach(self, backend: Any) -> None:
        self.inner.attach(backend)

    def params(self) -> dict[str, Any]:
        return {"inner": Recipe.of(self.inner), "quantile": self.quantile, "step": self.step}
