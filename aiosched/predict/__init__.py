"""Latency predictors. ``make_predictor`` resolves a name to a fresh instance.

- ``solo``: per model and batch size, a high percentile of recent latencies (ignores co-location).
- ``static``, ``ewma``, ``sgd``, ``rls``: the paper's coarse-grained linear regressions
  (:mod:`.linear`).
- ``overlap``: fine-grained, trained on realized overlaps, online (:mod:`.overlap`).

:class:`Profile` (:mod:`.profile`) seeds any of them with measured solo latencies.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidConfig
from .base import ErrorSummary, Predictor
from .linear import CoarsePredictor, EwmaPredictor, RlsPredictor, SgdPredictor, StaticPredictor
from .overlap import OverlapPredictor
from .profile import Profile, ProfilePoint
from .solo import SoloPredictor

__all__ = [
    "PREDICTORS",
    "CoarsePredictor",
    "ErrorSummary",
    "EwmaPredictor",
    "OverlapPredictor",
    "Predictor",
    "Profile",
    "ProfilePoint",
    "RlsPredictor",
    "SgdPredictor",
    "SoloPredictor",
    "StaticPredictor",
    "make_predictor",
]

PREDICTORS: dict[str, Callable[[], Predictor]] = {
    "solo": SoloPredictor,
    "static": StaticPredictor,
    "ewma": EwmaPredictor,
    "sgd": SgdPredictor,
    "rls": RlsPredictor,
    "overlap": OverlapPredictor,
}


def make_predictor(spec: str | Predictor) -> Predictor:
    if isinstance(spec, Predictor):
        return spec
    try:
        return PREDICTORS[spec]()
    except (KeyError, TypeError):
        raise InvalidConfig(
            f"unknown predictor {spec!r}; choose one of {', '.join(sorted(PREDICTORS))} "
            "or pass a Predictor object"
        ) from None
