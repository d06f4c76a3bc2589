"""The predictor interface: ``predict`` a batch's latency beside what is in flight; ``learn``.

Predictors are small objects with their state inside (as river's
regressors): ``predict`` runs on the dispatcher's hot path and must be cheap
(dictionary look-ups, a few float operations); ``learn`` runs once per
finished batch. Each keeps its own running error, measured on the
predictions the scheduler acted on.
"""

from __future__ import annotations

import abc
import functools
import inspect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from ..timeline import Execution, Running

if TYPE_CHECKING:
    from .profile import Profile

__all__ = ["ErrorSummary", "Predictor", "Recipe"]


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    """|predicted - actual| / actual over recent executions, as fractions."""

    count: int
    mape: float
    p95_ape: float


class _ErrorWindow:
    __slots__ = ("_apes",)

    def __init__(self, size: int = 1000) -> None:
        self._apes: deque[float] = deque(maxlen=size)

    def add(self, predicted: float, actual: float) -> None:
        if actual > 0 and math.isfinite(predicted):
            self._apes.append(abs(predicted - actual) / actual)

    def summary(self) -> ErrorSummary:
        n = len(self._apes)
        if not n:
            return ErrorSummary(0, math.nan, math.nan)
        ordered = sorted(self._apes)
        return ErrorSummary(n, sum(ordered) / n, ordered[min(n - 1, math.ceil(0.95 * n) - 1)])


class Predictor(abc.ABC):
    """Predicts an execution's latency in seconds from its model, batch size and co-location."""

    name: str = "predictor"

    def __init__(self) -> None:
        self._errors = _ErrorWindow()

    @abc.abstractmethod
    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        """Seconds a batch of ``batch_size`` would take if started at ``now`` beside ``running``.

        Always finite and positive, even before any learning.
        """

    def learn(self, execution: Execution) -> None:
        """Update from one finished execution (never mutates it)."""
        if not execution.warmup:
            self._errors.add(execution.predicted, execution.latency)
        self._learn(execution)

    @abc.abstractmethod
    def _learn(self, execution: Execution) -> None: ...

    def forget(self, model: str) -> None:  # noqa: B027
        """Drop what was learnt about ``model``, as the batch predicted and as a co-runner.

        The scheduler calls it when ``model`` is unregistered: a later model under the
        same name may be another one, and must start from the default guess (and count
        as a co-runner never seen). What concerns the device as a whole stays. No-op
        by default, for a predictor that keeps nothing per model.
        """

    def observe(self, model: str, batch_size: int, latency: float) -> None:  # noqa: B027
        """Take one measured solo latency (a profile entry, a solo run); ignored by default."""

    def seed(self, profile: Profile) -> None:
        """Seed the predictor with a profile's solo latencies (through :meth:`observe`).

        Each measured (model, batch size) is observed once, at its median;
        sizes the profile lacks are left to the predictor's own interpolation.
        """
        for model, batch_size, latency in profile.solo_points():
            self.observe(model, batch_size, latency)

    def attach(self, backend: Any) -> None:  # noqa: B027
        """Called once by the scheduler with its backend before anything runs; no-op by default.

        A predictor that reads the device (the sim backend's ``oracle``) takes what it needs here.
        """

    @abc.abstractmethod
    def knows(self, model: str) -> bool:
        """Whether predictions for ``model`` come from data (not a default guess)."""

    def params(self) -> dict[str, Any]:
        """Constructor arguments: ``type(p)(**p.params())`` is a fresh predictor like ``p``.

        Read from the constructor's signature: each named argument is taken from the
        attribute of the same name, so a predictor that keeps its settings as
        ``self.<argument>`` (as every built-in one does) need not write this. One that
        keeps them otherwise overrides it.
        """
        out: dict[str, Any] = {}
        for name in _constructor_arguments(type(self)):
            try:
                out[name] = getattr(self, name)
            except AttributeError:
                raise TypeError(
                    f"{type(self).__name__}.params(): the constructor argument {name!r} is not "
                    f"kept as self.{name}; keep it so, or override params()"
                ) from None
        return out

    def clone(self) -> Self:
        """A fresh, untrained predictor with the same settings."""
        return type(self)(**self.params())

    def error(self) -> ErrorSummary:
        return self._errors.summary()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Recipe:
    """A predictor's type and settings, for the ``params()`` of a predictor built around another.

    ``params()`` must describe a *fresh* predictor and compare equal across
    clones; a live inner predictor would do neither (it carries what it has
    learnt, and predictors compare by identity). A wrapper's constructor takes
    a ``Recipe`` where it takes a predictor, and :meth:`build` makes the fresh one.
    """

    kind: type[Predictor]
    params: dict[str, Any]

    @classmethod
    def of(cls, predictor: Predictor) -> Recipe:
        return cls(type(predictor), predictor.params())

    def build(self) -> Predictor:
        """A fresh, untrained predictor of ``kind`` with these settings."""
        return self.kind(**self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.kind.__name__}({args})"


@functools.cache
def _constructor_arguments(cls: type[Predictor]) -> tuple[str, ...]:
    """The names ``cls(...)`` takes (``*args`` and ``**kwargs`` aside), cached per class."""
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.name != "self" and p.kind not in skip)
