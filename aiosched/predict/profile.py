"""Profiles: each model's solo latency and throughput by batch size (the paper's Fig. 2).

A :class:`Profile` holds, per model and measured batch size, the median and
99th-percentile latency of batches run alone on one lane, and the throughput
that implies. Sizes that were not measured are interpolated
(:func:`~aiosched.predict.interpolate.interpolate`). Profiles are saved as
JSON and seed any predictor (:meth:`aiosched.predict.Predictor.seed`), so a
scheduler starts from measurements instead of defaults.

:func:`measure` produces one by driving a :class:`~aiosched.backends.Backend`
directly: each model, each size, ``warmup`` unrecorded runs then
``repeats`` recorded ones, one at a time on lane 0, so nothing runs beside
them.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Backend, Completion
from ..errors import InvalidConfig, ModelError
from ..spec import ModelSpec
from .interpolate import interpolate

__all__ = ["FORMAT", "Profile", "ProfilePoint", "measure"]

FORMAT = "aiosched-profile/1"


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (``q`` in [0, 100])."""
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    """One model at one batch size: latencies in seconds, throughput in samples per second."""

    batch_size: int
    median: float
    p99: float
    samples: int

    @property
    def throughput(self) -> float:
        return self.batch_size / self.median

    @classmethod
    def from_latencies(cls, batch_size: int, latencies: Sequence[float]) -> ProfilePoint:
        if not latencies:
            raise InvalidConfig(f"no latencies for batch size {batch_size}")
        ordered = sorted(latencies)
        n = len(ordered)
        mid = n // 2
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return cls(batch_size, median, _percentile(ordered, 99), n)


@dataclass
class Profile:
    """Solo latency per model and batch size, measured on ``backend``."""

    backend: str
    models: dict[str, dict[int, ProfilePoint]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_latencies(
        cls,
        backend: str,
        latencies: Mapping[str, Mapping[int, Sequence[float]]],
        meta: Mapping[str, Any] | None = None,
    ) -> Profile:
        """Summarise raw latencies (seconds) per model and batch size."""
        models = {
            name: {b: ProfilePoint.from_latencies(b, values) for b, values in sorted(sizes.items())}
            for name, sizes in latencies.items()
        }
        return cls(backend, models, dict(meta or {}))

    def point(self, model: str, batch_size: int) -> ProfilePoint | None:
        """The measured point, or ``None`` if that size was not measured."""
        return self.models.get(model, {}).get(batch_size)

    def latency(self, model: str, batch_size: int, *, quantile: str = "median") -> float:
        """Seconds for a batch of ``batch_size`` alone (``quantile``: ``"median"`` or ``"p99"``).

        Sizes not measured are interpolated between the neighbouring ones and
        extended beyond the largest by its last slope.
        """
        if quantile not in ("median", "p99"):
            raise InvalidConfig(f"quantile must be 'median' or 'p99', got {quantile!r}")
        points = self.models.get(model)
        if not points:
            raise InvalidConfig(f"profile has no model {model!r}; it has {sorted(self.models)}")
        if batch_size < 1:
            raise InvalidConfig(f"batch_size must be >= 1, got {batch_size}")
        levels = {b: getattr(p, quantile) for b, p in points.items()}
        return float(interpolate(levels, sorted(levels), batch_size))

    def throughput(self, model: str, batch_size: int) -> float:
        """Samples per second at ``batch_size`` (from the median latency, interpolated)."""
        return batch_size / self.latency(model, batch_size)

    def solo_points(self) -> Iterator[tuple[str, int, float]]:
        """(model, batch size, median seconds) for every measured point."""
        for name, points in self.models.items():
            for b, p in sorted(points.items()):
                yield name, b, p.median

    # -- JSON -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "backend": self.backend,
            "meta": self.meta,
            "models": {
                name: [
                    {
                        "batch_size": p.batch_size,
                        "median_s": p.median,
                        "p99_s": p.p99,
                        "throughput": p.throughput,
                        "samples": p.samples,
                    }
                    for _, p in sorted(points.items())
                ]
                for name, points in self.models.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Parse :meth:`to_dict`'s shape; :class:`InvalidConfig` says what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidConfig(f"not an aiosched profile (expected format {FORMAT!r})")
        backend = data.get("backend")
        models = data.get("models")
        if not isinstance(backend, str) or not isinstance(models, dict):
            raise InvalidConfig("profile needs a 'backend' string and a 'models' object")
        out: dict[str, dict[int, ProfilePoint]] = {}
        for name, rows in models.items():
            if not isinstance(rows, list):
                raise InvalidConfig(f"profile model {name!r}: expected a list of points")
            points: dict[int, ProfilePoint] = {}
            for row in rows:
                try:
                    b = int(row["batch_size"])
                    point = ProfilePoint(
                        b, float(row["median_s"]), float(row["p99_s"]), int(row["samples"])
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise InvalidConfig(f"profile model {name!r}: bad point {row!r}") from exc
                if b < 1 or not (point.median > 0 and math.isfinite(point.median)):
                    raise InvalidConfig(f"profile model {name!r}: bad point {row!r}")
                points[b] = point
            out[str(name)] = points
        meta = data.get("meta") or {}
        return cls(backend, out, dict(meta) if isinstance(meta, dict) else {})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InvalidConfig(f"cannot read profile {str(path)!r}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidConfig(f"profile {str(path)!r} is not JSON: {exc}") from exc
        return cls.from_dict(data)


async def measure(
    backend: Backend,
    specs: Sequence[ModelSpec],
    batch_sizes: Sequence[int],
    *,
    repeats: int = 10,
    warmup: int = 2,
    on_run: Callable[[str, int], None] | None = None,
) -> Profile:
    """Run every model at every size alone on lane 0 of ``backend`` (started here, closed after).

    ``on_run(model, batch_size)`` is called after each run, warm-up ones
    included (for a progress bar).
    """
    if repeats < 1 or warmup < 0:
        raise InvalidConfig("repeats must be >= 1 and warmup >= 0")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise InvalidConfig("batch sizes must be integers >= 1")
    loop = asyncio.get_running_loop()
    clock = backend.default_clock(loop)
    await backend.start(clock)
    latencies: dict[str, dict[int, list[float]]] = {}
    try:
        for spec in specs:
            backend.load(spec)
        for spec in specs:
            x = backend.sample_input(spec)
            if x is None:
                raise InvalidConfig(f"{spec.name}: the backend cannot make a sample input")
            for b in batch_sizes:
                runs = latencies.setdefault(spec.name, {}).setdefault(b, [])
                for i in range(warmup + repeats):
                    done: asyncio.Future[Completion] = loop.create_future()
                    backend.submit(0, spec, [x] * b, done.set_result)
                    completion = await done
                    if completion.error is not None:
                        raise ModelError(
                            f"{spec.name} failed at batch size {b}: {completion.error!r}"
                        ) from completion.error
                    if i >= warmup:
                        runs.append(completion.end - completion.start)
                    if on_run is not None:
                        on_run(spec.name, b)
    finally:
        await backend.aclose()
    meta = {"lanes_used": 1, "repeats": repeats, "warmup": warmup, **backend.describe()}
    return Profile.from_latencies(backend.name, latencies, meta)
