"""The paper's coarse-grained baselines: ``static``, ``ewma``, ``sgd`` and ``rls``.

All four are GPUlet-style linear regressions of the slowdown over a batch's
solo latency, per target model::

    latency = solo(model, b) * (1 + w_model . x)

where ``x`` is a bias plus the co-location features
(:class:`~aiosched.predict.features.FeatureSpace`) of the batches *in flight
at dispatch*, taken to overlap the whole execution: the coarse-grained view.
Solo latencies come from executions that ran alone (a
:class:`~aiosched.predict.solotable.SoloTable`, or a profile through
:meth:`~aiosched.predict.Predictor.seed`). They differ in where ``w`` comes
from and what ``x`` is:

- ``static``: ``w`` fitted offline by least squares on a recorded trace
  (:meth:`StaticPredictor.fit`), never updated afterwards.
- ``ewma``: as ``static``, but ``x`` is the co-location at dispatch smoothed
  with the recent past, ``alpha * x_now + (1 - alpha) * x_bar``, where
  ``x_bar`` is an EWMA (factor ``alpha``) of the co-location at each finished
  execution's dispatch; the smoothed signal is what the fit sees too.
- ``sgd``: ``w`` learnt online, one normalised SGD step per execution.
- ``rls``: ``w`` learnt online by recursive least squares with forgetting.
"""

from __future__ import annotations

import abc
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor
from .features import FeatureSpace, SparseVector
from .learners import RLS, SGD, dense, fit_least_squares
from .solotable import SoloTable

__all__ = ["CoarsePredictor", "EwmaPredictor", "RlsPredictor", "SgdPredictor", "StaticPredictor"]

# A regression can extrapolate to nonsense: no co-location makes a batch more than 4x
# faster than alone, or (here) more than 20x slower.
_MIN_FACTOR = 0.25
_MAX_FACTOR = 20.0


class CoarsePredictor(Predictor):
    """Shared machinery: solo table, coarse features, ``solo * (1 + w . x)``.

    Subclasses say where the weights come from (:meth:`_weights_of`) and how
    they learn. ``default`` is the guess in seconds at batch 1 for a model
    never seen; ``solo_rate`` the solo table's EWMA rate.
    """

    name = "coarse"

    def __init__(self, default: float = 0.01, solo_rate: float = 0.1) -> None:
        super().__init__()
        self.default = default
        self.solo_rate = solo_rate
        self._space = FeatureSpace(bias=True)
        self._solo = SoloTable(solo_rate, default)
        # Models whose solo level so far comes from overlapped runs (nothing ran alone yet).
        self._provisional: set[str] = set()
        self._signal_key: Sequence[Running] | None = None
        self._signal_value: SparseVector = {}

    def knows(self, model: str) -> bool:
        return self._solo.knows(model)

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        """Fold in one solo latency (a profile entry, a solo run measured elsewhere)."""
        if model in self._provisional:
            self._provisional.discard(model)
            self._solo.forget(model)
        self._solo.observe(model, batch_size, latency)

    def forget(self, model: str) -> None:
        """Drop ``model``'s solo curve and its weights as the target; as a co-runner, a
        model of that name gets a new block (the old one is left to what was learnt with
        it, and is never fed again)."""
        self._solo.forget(model)
        self._provisional.discard(model)
        self._space.forget(model)
        self._forget(model)
        self._signal_key = None

    @abc.abstractmethod
    def _forget(self, model: str) -> None:
        """Drop the weights of ``model`` as the target."""

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        solo = self._solo.get(model, batch_size)
        weights = self._weights_of(model)
        if weights is None:
            return solo
        x = self._features(running)
        n = len(weights)
        slowdown = 1.0 + sum(weights[i] * v for i, v in x.items() if i < n)
        return solo * min(_MAX_FACTOR, max(_MIN_FACTOR, slowdown))

    @abc.abstractmethod
    def _weights_of(self, model: str) -> list[float] | None:
        """The slowdown weights for ``model`` as the target, or ``None`` before any."""

    def _features(self, running: Sequence[Running]) -> SparseVector:
        """The co-location signal for a batch dispatched beside ``running``."""
        return self._signal(running)

    def _signal(self, running: Sequence[Running]) -> SparseVector:
        # The scheduler hands over the same tuple until something starts or ends.
        if running is not self._signal_key:
            self._signal_value = self._space.phi((r.model, r.batch_size) for r in running)
            self._signal_key = running
        return self._signal_value

    def _track_solo(self, execution: Execution) -> None:
        """Solo latencies from executions that ran alone; until one has, from any execution."""
        model = execution.model
        if execution.solo:
            self.observe(model, execution.batch_size, execution.latency)
        elif not self._solo.knows(model):
            self._provisional.add(model)
            self._solo.observe(model, execution.batch_size, execution.latency)

    def _target(self, execution: Execution) -> float:
        """The slowdown beyond solo this execution had: ``latency / solo - 1``."""
        return execution.latency / self._solo.get(execution.model, execution.batch_size) - 1.0


class StaticPredictor(CoarsePredictor):
    """Fitted offline on a recorded trace by least squares (:meth:`fit`); ``learn`` changes nothing.

    ``ridge`` is the least-squares regularisation; before :meth:`fit` (or a
    :meth:`~aiosched.predict.Predictor.seed`) it predicts ``default``.
    """

    name = "static"

    def __init__(self, default: float = 0.01, solo_rate: float = 0.1, ridge: float = 1e-3) -> None:
        super().__init__(default, solo_rate)
        if not ridge >= 0:
            raise InvalidConfig("ridge must be >= 0")
        self.ridge = ridge
        self._weights: dict[str, list[float]] = {}

    def _weights_of(self, model: str) -> list[float] | None:
        return self._weights.get(model)

    def _forget(self, model: str) -> None:
        self._weights.pop(model, None)

    def _learn(self, execution: Execution) -> None:
        """Only warm-up runs, as the solo profile an offline fit starts from; the weights are
        never updated (the base class still tracks the error)."""
        if execution.warmup and execution.ok and execution.latency > 0:
            self._track_solo(execution)

    def fit(self, executions: Iterable[Execution]) -> None:
        """Fit solo latencies and slowdown weights to a trace (in the order it was recorded).

        Solo latencies are the median of each (model, size)'s solo executions,
        over what a profile seeded; a model neither seeded nor ever alone
        falls back on the median of all its executions. The weights, per
        model, by least squares on every successful execution.
        """
        trace = [e for e in executions if e.ok and e.latency > 0]
        solo: dict[tuple[str, int], list[float]] = defaultdict(list)
        every: dict[tuple[str, int], list[float]] = defaultdict(list)
        for e in trace:
            every[(e.model, e.batch_size)].append(e.latency)
            if e.solo:
                solo[(e.model, e.batch_size)].append(e.latency)
        alone = {m for m, _ in solo}
        for (model, b), values in solo.items():
            self._solo.set(model, b, statistics.median(values))
        for (model, b), values in every.items():
            # Better than nothing for a model neither profiled nor ever alone in the trace.
            if model not in alone and not self._solo.knows(model):
                self._solo.set(model, b, statistics.median(values))
        rows: dict[str, list[SparseVector]] = defaultdict(list)
        targets: dict[str, list[float]] = defaultdict(list)
        for e, x in zip(trace, self._training_signals(trace), strict=True):
            rows[e.model].append(x)
            targets[e.model].append(self._target(e))
        dim = self._space.dim
        for model, xs in rows.items():
            matrix = np.vstack([dense(x, dim) for x in xs])
            w = fit_least_squares(matrix, np.asarray(targets[model]), self.ridge)
            self._weights[model] = w.tolist()

    def _training_signals(self, trace: Sequence[Execution]) -> list[SparseVector]:
        return [self._space.phi((r.model, r.batch_size) for r in e.at_dispatch) for e in trace]


class EwmaPredictor(StaticPredictor):
    """``static`` with the co-location signal smoothed by an EWMA of factor ``alpha``.

    ``alpha`` near 1 trusts the co-location at dispatch (``alpha = 1`` is
    ``static``); near 0 it predicts from the recent average co-location.
    """

    name = "ewma"

    def __init__(
        self, alpha: float = 0.5, default: float = 0.01, solo_rate: float = 0.1, ridge: float = 1e-3
    ) -> None:
        super().__init__(default, solo_rate, ridge)
        if not 0.0 < alpha <= 1.0:
            raise InvalidConfig("alpha must be in (0, 1]")
        self.alpha = alpha
        self._smooth: SparseVector = {}
        self._mixed_key: Sequence[Running] | None = None
        self._mixed: SparseVector = {}

    def _features(self, running: Sequence[Running]) -> SparseVector:
        if running is not self._mixed_key:
            self._mixed = self._mix(self._signal(running))
            self._mixed_key = running
        return self._mixed

    def _forget(self, model: str) -> None:
        super()._forget(model)
        self._mixed_key = None  # a running model's name may map to another block now

    def _mix(self, x: SparseVector) -> SparseVector:
        a = self.alpha
        out = {i: (1.0 - a) * v for i, v in self._smooth.items()}
        for i, v in x.items():
            out[i] = out.get(i, 0.0) + a * v
        return out

    def _advance(self, x: SparseVector) -> None:
        self._smooth = self._mix(x)

    def _learn(self, execution: Execution) -> None:
        """The weights stay as fitted; only the smoothed co-location signal moves (and warm-up
        runs seed the solo profile, as for ``static``)."""
        super()._learn(execution)
        self._advance(self._space.phi((r.model, r.batch_size) for r in execution.at_dispatch))
        self._mixed_key = None

    def _training_signals(self, trace: Sequence[Execution]) -> list[SparseVector]:
        # The signal each execution would have seen, with the EWMA advanced in trace order;
        # the live state is left where the trace leaves it.
        signals = []
        for e in trace:
            x = self._space.phi((r.model, r.batch_size) for r in e.at_dispatch)
            signals.append(self._mix(x))
            self._advance(x)
        self._mixed_key = None
        return signals


class _OnlineCoarse(CoarsePredictor):
    """An online coarse regression: per target model, one learner over the features."""

    def __init__(self, default: float = 0.01, solo_rate: float = 0.1) -> None:
        super().__init__(default, solo_rate)
        self._learners: dict[str, RLS | SGD] = {}

    @abc.abstractmethod
    def _new_learner(self) -> RLS | SGD: ...

    def _forget(self, model: str) -> None:
        self._learners.pop(model, None)

    def _weights_of(self, model: str) -> list[float] | None:
        learner = self._learners.get(model)
        return None if learner is None else learner.weights

    def _learn(self, execution: Execution) -> None:
        if not execution.ok or execution.latency <= 0:
            return
        self._track_solo(execution)
        x = self._space.phi((r.model, r.batch_size) for r in execution.at_dispatch)
        learner = self._learners.get(execution.model)
        if learner is None:
            learner = self._learners[execution.model] = self._new_learner()
        learner.update(dense(x, self._space.dim), self._target(execution))
        self._signal_key = None  # the feature space may have grown


class SgdPredictor(_OnlineCoarse):
    """Coarse regression learnt online by normalised SGD (``learning_rate`` per step)."""

    name = "sgd"

    def __init__(
        self, learning_rate: float = 0.05, default: float = 0.01, solo_rate: float = 0.1
    ) -> None:
        super().__init__(default, solo_rate)
        SGD(0, learning_rate)  # validates it now
        self.learning_rate = learning_rate

    def _new_learner(self) -> RLS | SGD:
        return SGD(self._space.dim, self.learning_rate)


class RlsPredictor(_OnlineCoarse):
    """Coarse regression learnt online by recursive least squares with ``forgetting``."""

    name = "rls"

    def __init__(
        self,
        forgetting: float = 0.98,
        delta: float = 10.0,
        default: float = 0.01,
        solo_rate: float = 0.1,
    ) -> None:
        super().__init__(default, solo_rate)
        RLS(0, forgetting, delta)  # validates them now
        self.forgetting = forgetting
        self.delta = delta

    def _new_learner(self) -> RLS | SGD:
        return RLS(self._space.dim, self.forgetting, self.delta)
