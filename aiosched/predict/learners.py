"""Linear learners behind the predictors: offline least squares, online SGD and RLS.

All three fit ``y ~ theta . x`` over a feature dimension that may grow while
they learn (a new co-runner model adds a block of features): :meth:`grow`
pads the new weights with zeros, and RLS gives them the prior variance
``delta`` so they are learnt as fast as the first ones were.

They run once per finished execution, off the prediction path, so numpy is
fine here; each update is a handful of small array operations. ``weights``
is a plain list for the predictors' pure-Python hot paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidConfig
from .features import SparseVector

__all__ = ["RLS", "SGD", "Vector", "dense", "fit_least_squares"]

Vector = NDArray[np.float64]

_CAP_EVERY = 8


def dense(x: SparseVector, dim: int) -> Vector:
    """A sparse feature vector as a dense array of length ``dim``."""
    out = np.zeros(dim)
    for i, v in x.items():
        out[i] = v
    return out


def fit_least_squares(x: Vector, y: Vector, ridge: float = 1e-6) -> Vector:
    """Weights minimising ``|x w - y|^2 + ridge |w|^2`` (the ridge keeps unseen features at 0)."""
    rows, dim = x.shape
    if rows == 0 or dim == 0:
        return np.zeros(dim)
    a = np.vstack([x, math.sqrt(ridge) * np.eye(dim)])
    b = np.concatenate([y, np.zeros(dim)])
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.asarray(w, dtype=np.float64)


class RLS:
    """Recursive least squares with exponential forgetting, optionally per weight.

    ``forgetting`` (lambda, in (0, 1]) discounts an observation ``k`` updates
    old by ``lambda ** k``: a memory of about ``1 / (1 - lambda)`` updates, so
    it tracks drift. :meth:`set_forgetting` gives some weights their own
    factor (RLS with multiple forgetting factors: the covariance is inflated
    by ``1 / sqrt(lambda_i lambda_j)`` before each update), so a part of the
    model that the data rarely pins down can keep a longer memory than the
    rest. Directions the data stops exciting would see their covariance grow
    without bound under forgetting ("wind-up") and then overreact; each
    weight's variance is capped at ``delta``, the prior's own level, to
    prevent that. (Capping the trace instead lets the wound-up directions use
    up the budget and silently turns forgetting off for the excited ones.)
    """

    def __init__(self, dim: int = 0, forgetting: float = 0.99, delta: float = 100.0) -> None:
        if not 0.0 < forgetting <= 1.0:
            raise InvalidConfig("forgetting must be in (0, 1]")
        if not (delta > 0 and math.isfinite(delta)):
            raise InvalidConfig("delta must be a positive number")
        self.forgetting = forgetting
        self.delta = delta
        self.theta: Vector = np.zeros(dim)
        self.cov: Vector = np.eye(dim) * delta
        self._lam: Vector = np.full(dim, forgetting)
        self._inflate: Vector | float = 1.0 / forgetting
        self.weights: list[float] = [0.0] * dim
        self.updates = 0

    @property
    def dim(self) -> int:
        return len(self.theta)

    def set_forgetting(self, start: int, stop: int, forgetting: float) -> None:
        """Use ``forgetting`` for weights ``start:stop`` (new weights get the default)."""
        if not 0.0 < forgetting <= 1.0:
            raise InvalidConfig("forgetting must be in (0, 1]")
        if stop > self.dim:
            self.grow(stop)
        self._lam[start:stop] = forgetting
        self._refresh_inflation()

    def _refresh_inflation(self) -> None:
        lam = self._lam
        if len(lam) and np.all(lam == lam[0]):
            self._inflate = 1.0 / float(lam[0])
        else:
            root = 1.0 / np.sqrt(lam)
            self._inflate = np.outer(root, root)

    def grow(self, dim: int) -> None:
        old = self.dim
        if dim <= old:
            return
        theta = np.zeros(dim)
        theta[:old] = self.theta
        cov = np.eye(dim) * self.delta
        cov[:old, :old] = self.cov
        lam = np.full(dim, self.forgetting)
        lam[:old] = self._lam
        self.theta, self.cov, self._lam = theta, cov, lam
        self._refresh_inflation()
        self.weights = theta.tolist()

    def drop(self, indices: Sequence[int]) -> None:
        """Forget weights ``indices`` entirely: the fit of the others is their marginal."""
        keep = np.ones(self.dim, dtype=bool)
        keep[list(indices)] = False
        self.theta = self.theta[keep]
        self.cov = np.ascontiguousarray(self.cov[np.ix_(keep, keep)])
        self._lam = self._lam[keep]
        self._refresh_inflation()
        self.weights = self.theta.tolist()

    def reset(self, start: int, stop: int) -> None:
        """Restart weights ``start:stop`` at the prior: zero, variance ``delta``, uncorrelated.

        What was learnt about them is forgotten (the others keep their marginal), so
        the slots can stand for something new; their forgetting becomes the default.
        """
        self.theta[start:stop] = 0.0
        cov = self.cov
        cov[start:stop, :] = 0.0
        cov[:, start:stop] = 0.0
        for i in range(start, stop):
            cov[i, i] = self.delta
        if np.any(self._lam[start:stop] != self.forgetting):
            self._lam[start:stop] = self.forgetting
            self._refresh_inflation()
        self.weights[start:stop] = [0.0] * (stop - start)

    def update(self, x: Vector, y: float) -> float:
        """One observation; returns the a-priori error ``y - theta . x``."""
        if len(x) > self.dim:
            self.grow(len(x))
        cov = self.cov
        cov *= self._inflate  # forget: old information counts for less
        px = cov @ x
        root = math.sqrt(1.0 / (1.0 + float(x @ px)))
        theta = self.theta
        error = y - float(theta @ x)
        # u u^T with u = px sqrt(scale) is symmetric to the last bit (a product commutes
        # exactly); the textbook gain px^T form is not, and under forgetting an asymmetric
        # covariance soon stops being positive definite, and then the weights blow up.
        # (The gain step px scale error is u root error: one array operation less.)
        px *= root
        cov -= px[:, None] * px
        px *= root * error
        theta += px
        self.updates += 1
        if not self.updates % _CAP_EVERY:
            self._cap(cov)
        self.weights = theta.tolist()
        return error

    def _cap(self, cov: Vector) -> None:
        # Bound each weight's variance at the prior's, so a direction the data has not
        # excited for a while is as open as a new one, and no more. (Wind-up grows by
        # 1 / lambda per update: checking every few updates is enough.)
        variances = np.diagonal(cov)
        if float(variances.max()) > self.delta:
            shrink = np.sqrt(np.minimum(1.0, self.delta / np.maximum(variances, 1e-300)))
            cov *= shrink[:, None] * shrink


class SGD:
    """Online least squares by stochastic gradient descent, normalised (NLMS).

    Each update moves the weights along ``x`` by ``learning_rate`` times the
    error over ``|x|^2``: the step is scale-free, so the same rate works for
    features of any magnitude, and stable for rates in (0, 2).
    """

    def __init__(self, dim: int = 0, learning_rate: float = 0.05, epsilon: float = 1e-3) -> None:
        if not 0.0 < learning_rate < 2.0:
            raise InvalidConfig("learning_rate must be in (0, 2)")
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.theta: Vector = np.zeros(dim)
        self.weights: list[float] = [0.0] * dim
        self.updates = 0

    @property
    def dim(self) -> int:
        return len(self.theta)

    def grow(self, dim: int) -> None:
        if dim > self.dim:
            theta = np.zeros(dim)
            theta[: self.dim] = self.theta
            self.theta = theta
            self.weights = theta.tolist()

    def update(self, x: Vector, y: float) -> float:
        if len(x) > self.dim:
            self.grow(len(x))
        error = y - float(self.theta @ x)
        self.theta += (self.learning_rate * error / (self.epsilon + float(x @ x))) * x
        self.weights = self.theta.tolist()
        self.updates += 1
        return error
