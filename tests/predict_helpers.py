"""Shared helpers for the predictor tests: short sim traces recorded in virtual time."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from aiosched.experiments.predictors import PredictorsConfig, record, solo_profile
from aiosched.predict import Profile
from aiosched.timeline import Execution, Running

MODELS = ("resnet50", "yolov8n", "vgg19")


def config(
    lanes: int = 2, rate: float = 200.0, duration: float = 4.0, **kw: object
) -> PredictorsConfig:
    return PredictorsConfig(
        models=MODELS,
        lanes=lanes,
        rate=rate,
        duration=duration,
        drift=False,
        **kw,  # type: ignore[arg-type]
    )


@functools.cache
def trace(lanes: int = 2, rate: float = 200.0, duration: float = 4.0) -> tuple[Execution, ...]:
    """A recorded sim trace (cached: deterministic for given settings)."""
    executions, _ = record(config(lanes, rate, duration))
    return tuple(executions)


@functools.cache
def profile() -> Profile:
    return solo_profile(config())


def running(*items: tuple[str, int, float], now: float = 0.0) -> tuple[Running, ...]:
    """In-flight executions ``(model, batch size, seconds left)`` started at ``now``."""
    return tuple(
        Running(1000 + i, model, b, i, now, now + left) for i, (model, b, left) in enumerate(items)
    )


def served(executions: Sequence[Execution]) -> list[Execution]:
    return [e for e in executions if e.ok and not e.warmup]
