"""Latency predictors. ``make_predictor`` resolves a name to a fresh instance.

- ``solo``: per model and batch size, a high percentile of recent latencies (ignores co-location).
- ``static``, ``ewma``, ``sgd``, ``rls``: the paper's coarse-grained linear regressions
  (:mod:`.baselines`).
- ``overlap``: fine-grained, trained on realized overlaps, online (:mod:`.overlap`).
- ``oracle``: the sim backend's ground truth, simulated forward (:mod:`.oracle`; sim only).

``quantile=q`` in any of their specs wraps the predictor in a
:class:`QuantilePredictor` (:mod:`.quantile`), which predicts that quantile
of the latency instead of its expectation: ``"overlap:quantile=0.9"`` (the
scheduler's default) is ``QuantilePredictor(OverlapPredictor(), 0.9)``.

:class:`Profile` (:mod:`.profile`) seeds any of them with measured solo latencies.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import InvalidConfig
from .base import ErrorSummary, Predictor, Recipe
from .baselines import CoarsePredictor, EwmaPredictor, RlsPredictor, SgdPredictor, StaticPredictor
from .oracle import OraclePredictor
from .overlap import OverlapPredictor
from .profile import Profile, ProfilePoint
from .quantile import QuantilePredictor
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
    "QuantilePredictor",
    "Recipe",
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

    Values are numbers, ``true``/``false`` or ``none``. ``quantile`` (and
    ``quantile_step``, the margin's step) wrap the predictor in a
    :class:`QuantilePredictor`: ``"overlap:quantile=0.9,device_rate=0"`` is
    ``QuantilePredictor(OverlapPredictor(device_rate=0), 0.9)``. A predictor
    that takes a ``quantile`` itself (``solo``) gets it instead, and
    ``quantile=none`` leaves the predictor as it is.
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
    wrap: dict[str, Any] = {}
    if not _takes(factory, "quantile"):
        quantile = kwargs.pop("quantile", None)
        if "quantile_step" in kwargs:
            if quantile is None:
                raise InvalidConfig(f"predictor {name!r}: quantile_step needs a quantile")
            wrap["step"] = kwargs.pop("quantile_step")
        if quantile is not None:
            wrap["quantile"] = quantile
    try:
        predictor = factory(**kwargs)
        return QuantilePredictor(predictor, **wrap) if wrap else predictor
    except (TypeError, ValueError) as exc:
        raise InvalidConfig(f"bad options for predictor {name!r}: {exc}") from None


def _takes(factory: Callable[..., Predictor], argument: str) -> bool:
    """Whether ``factory`` has a parameter named ``argument`` (its own ``quantile``, say)."""
    try:
        return argument in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return False


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
