"""Latency predictors. ``make_predictor`` resolves a name to a fresh instance.

- ``solo``: per model and batch size, a high percentile of recent latencies (ignores co-location).
- ``static``, ``ewma``, ``sgd``, ``rls``: the paper's coarse-grained linear regressions
  (:mod:`.baselines`).
- ``overlap``: fine-grained, trained on realized overlaps, online (:mod:`.overlap`).
- ``oracle``: the sim backend's ground truth, simulated forward (:mod:`.oracle`; sim only).

:class:`Profile` (:mod:`.profile`) seeds any of them with measured solo latencies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidConfig
from .base import ErrorSummary, Predictor
from .baselines import CoarsePredictor, EwmaPredictor, RlsPredictor, SgdPredictor, StaticPredictor
from .oracle import OraclePredictor
from .overlap import OverlapPredictor
from .profile import Profile, ProfilePoint
from .solo import SoloPredictor

__all__ = [
    "PREDICTORS",
    "CoarsePredictor",
    "ErrorSummary",
    "EwmaPredictor",
    "OraclePredictor",
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
    "oracle": OraclePredictor,
}


def make_predictor(spec: str | Predictor) -> Predictor:
    """A predictor object, or a fresh one from ``"name"`` or ``"name:key=value,..."``.

    ``"overlap:quantile=0.9"`` is ``OverlapPredictor(quantile=0.9)``; values
    are numbers, ``true``/``false`` or ``none``.
    """
    if isinstance(spec, Predictor):
        return spec
    if not isinstance(spec, str):
        raise InvalidConfig(f"predictor must be a name or a Predictor, got {spec!r}")
    name, _, args = spec.partition(":")
    factory = PREDICTORS.get(name.strip())
    if factory is None:
        raise InvalidConfig(
            f"unknown predictor {name!r}; choose one of {', '.join(sorted(PREDICTORS))} "
            "or pass a Predictor object"
        )
    kwargs: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise InvalidConfig(f"predictor option {item!r} is not key=value")
        kwargs[key.strip()] = _value(raw.strip())
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidConfig(f"bad options for predictor {name!r}: {exc}") from None


def _value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
