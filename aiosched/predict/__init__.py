"""Latency predictors. ``make_predictor`` resolves a name to a fresh instance."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidConfig
from .base import ErrorSummary, Predictor
from .solo import SoloPredictor

__all__ = ["PREDICTORS", "ErrorSummary", "Predictor", "SoloPredictor", "make_predictor"]

PREDICTORS: dict[str, Callable[[], Predictor]] = {
    "solo": SoloPredictor,
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
