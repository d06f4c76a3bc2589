"""Workloads (a mix of models with rate shares and deadlines) and their schedules.

A :class:`Schedule` is every send of a run, generated before the first one:
its offset from the start, its model and its deadline. The arrival times and
the model of each arrival come from one ``numpy.random.default_rng(seed)``,
so the same seed gives the same sequence to every policy compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aiosched.loadgen.arrivals import ArrivalProcess, parse_arrival
from aiosched.loadgen.errors import TraceError, WorkloadError
from aiosched.loadgen.trace import Trace

__all__ = [
    "DEFAULT_DEADLINE_MS",
    "ModelLoad",
    "Schedule",
    "Workload",
    "parse_deadlines",
    "parse_models",
]

DEFAULT_DEADLINE_MS = 100.0
"""The deadline of a model that ``--deadline`` does not mention."""


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """One model of a workload: its share of the rate and its deadline (seconds)."""

    name: str
    share: float = 1.0
    deadline_s: float = DEFAULT_DEADLINE_MS / 1000.0

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise WorkloadError(f"model name must be non-empty without spaces, got {self.name!r}")
        if not _positive(self.share):
            raise WorkloadError(f"{self.name}: share must be a positive number, got {self.share!r}")
        if not _positive(self.deadline_s):
            raise WorkloadError(
                f"{self.name}: deadline must be a positive number of seconds, "
                f"got {self.deadline_s!r}"
            )


@dataclass(frozen=True, eq=False)
class Schedule:
    """Every send of a run, in send order (parallel arrays)."""

    offsets: NDArray[np.float64]
    """Intended send time of each request, seconds from the start, non-decreasing."""
    model_index: NDArray[np.intp]
    """Index into :attr:`models` of each request."""
    deadlines_s: NDArray[np.float64]
    """Each request's deadline, seconds after its intended send time."""
    models: tuple[str, ...]
    duration_s: float
    """The sending window: every offset is at most this."""
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """How the schedule was made (arrival, rate, seed, ...), for the report."""

    def __post_init__(self) -> None:
        n = len(self.offsets)
        if len(self.model_index) != n or len(self.deadlines_s) != n:
            raise WorkloadError("schedule arrays must have the same length")
        if n and (np.any(np.diff(self.offsets) < 0) or self.offsets[0] < 0):
            raise WorkloadError("schedule offsets must be non-negative and non-decreasing")

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def offered_rps(self) -> float:
        """Planned sends per second over the sending window."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0

    def counts(self) -> dict[str, int]:
        """Planned sends per model."""
        per = np.bincount(self.model_index, minlength=len(self.models))
        return {name: int(c) for name, c in zip(self.models, per, strict=True)}


@dataclass(frozen=True)
class Workload:
    """A mix of models; each gets ``share / sum(shares)`` of the rate."""

    models: tuple[ModelLoad, ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise WorkloadError("a workload needs at least one model")
        names = [m.name for m in self.models]
        for name in names:
            if names.count(name) > 1:
                raise WorkloadError(f"model {name!r} is listed twice")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @classmethod
    def parse(
        cls,
        models: str,
        deadline: str | None = None,
        *,
        default_deadline_ms: float = DEFAULT_DEADLINE_MS,
    ) -> Workload:
        """From ``--models`` (``"a:3,b:1"``) and ``--deadline`` (``"50"`` or ``"a=50,b=100"``)."""
        shares = parse_models(models)
        deadlines = parse_deadlines(deadline, tuple(shares), default_ms=default_deadline_ms)
        return cls(
            tuple(
                ModelLoad(name, share, deadlines[name] / 1000.0) for name, share in shares.items()
            )
        )

    @classmethod
    def for_trace(
        cls,
        trace: Trace,
        deadline: str | None = None,
        *,
        default_deadline_ms: float = DEFAULT_DEADLINE_MS,
    ) -> Workload:
        """The models a trace names (equal shares), with ``--deadline`` for entries without one."""
        names = trace.model_names
        deadlines = parse_deadlines(deadline, names, default_ms=default_deadline_ms)
        return cls(tuple(ModelLoad(name, 1.0, deadlines[name] / 1000.0) for name in names))

    def schedule(
        self,
        arrival: ArrivalProcess | str,
        rate: float,
        duration: float,
        seed: int = 0,
    ) -> Schedule:
        """All sends of ``duration`` seconds at ``rate`` requests/s, from ``seed``."""
        process = parse_arrival(arrival) if isinstance(arrival, str) else arrival
        if not _positive(rate):
            raise WorkloadError(f"rate must be a positive number of requests/s, got {rate!r}")
        if not (math.isfinite(duration) and duration > 0):
            raise WorkloadError(f"duration must be a positive number of seconds, got {duration!r}")
        rng = np.random.default_rng(seed)
        offsets = process.times(rate, duration, rng)
        shares = np.asarray([m.share for m in self.models], dtype=np.float64)
        if len(self.models) == 1:
            index = np.zeros(len(offsets), dtype=np.intp)
        else:
            index = rng.choice(len(self.models), size=len(offsets), p=shares / shares.sum())
            index = index.astype(np.intp)
        deadlines = np.asarray([m.deadline_s for m in self.models], dtype=np.float64)[index]
        config = {
            "arrival": process.spec,
            "rate": rate,
            "duration_s": duration,
            "seed": seed,
            **self._config(),
        }
        return Schedule(
            offsets, index, deadlines, self.names, float(duration), MappingProxyType(config)
        )

    def replay(self, trace: Trace, *, duration: float | None = None) -> Schedule:
        """The sends of ``trace`` (those before ``duration``, when given).

        The schedule's window (its ``duration_s``, over which the offered rate
        is counted) is ``duration`` when that cuts the trace short, else the
        trace's span, up to its last send.

        Each entry's deadline is the trace's, or else its model's. A model that
        is not in this workload raises :class:`TraceError` at its ``file:line``.
        """
        position = {name: i for i, name in enumerate(self.names)}
        index = np.empty(len(trace), dtype=np.intp)
        for i, model in enumerate(trace.models):
            j = position.get(model)
            if j is None:
                known = ", ".join(self.names)
                raise TraceError(
                    f"{trace.where(i)}: unknown model {model!r} (the workload has {known})"
                )
            index[i] = j
        offsets = trace.offsets
        model_deadline = np.asarray([m.deadline_s for m in self.models], dtype=np.float64)[index]
        deadlines = np.where(np.isnan(trace.deadlines_s), model_deadline, trace.deadlines_s)
        if duration is not None:
            if not (math.isfinite(duration) and duration > 0):
                raise WorkloadError(
                    f"duration must be a positive number of seconds, got {duration!r}"
                )
            keep = offsets < duration
            cut = not bool(keep.all())
            offsets, index, deadlines = offsets[keep], index[keep], deadlines[keep]
            # The window is the trace's own span when it ends before ``duration``: its offered
            # rate is the trace's (a 6.6 s trace at 302/s is not 66.7/s over 30 s).
            span = float(offsets[-1]) if len(offsets) else 0.0
            window = float(duration) if cut else span
        else:
            window = float(offsets[-1]) if len(offsets) else 0.0
        config = {
            "arrival": "trace",
            "trace": trace.source,
            "rate": len(offsets) / window if window > 0 else None,
            "duration_s": window,
            "seed": None,
            **self._config(),
        }
        return Schedule(
            np.array(offsets),
            index,
            np.asarray(deadlines, dtype=np.float64),
            self.names,
            window,
            MappingProxyType(config),
        )

    def _config(self) -> dict[str, Any]:
        return {
            "models": {
                m.name: {"share": m.share, "deadline_ms": m.deadline_s * 1000.0}
                for m in self.models
            }
        }


def parse_models(spec: str) -> dict[str, float]:
    """``"a,b"`` or ``"resnet18:3,mobilenet_v3_small:1"`` -> ``{name: share}`` in order."""
    out: dict[str, float] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            raise WorkloadError(f"empty model name in --models {spec!r}")
        name, colon, raw = item.partition(":")
        name = name.strip()
        if not name:
            raise WorkloadError(f"empty model name in --models {spec!r}")
        share = 1.0
        if colon:
            try:
                share = float(raw)
            except ValueError:
                raise WorkloadError(f"{name}: share {raw.strip()!r} is not a number") from None
            if not _positive(share):
                raise WorkloadError(f"{name}: share must be a positive number, got {raw.strip()!r}")
        if name in out:
            raise WorkloadError(f"model {name!r} is listed twice in --models {spec!r}")
        out[name] = share
    return out


def parse_deadlines(
    spec: str | None, names: tuple[str, ...], *, default_ms: float = DEFAULT_DEADLINE_MS
) -> dict[str, float]:
    """``--deadline`` in milliseconds -> ``{name: ms}`` for every model in ``names``.

    ``"50"`` applies to every model; ``"a=50,b=100"`` sets models one by one;
    ``"100,a=50"`` mixes both (the bare value is the default). Models not
    mentioned get ``default_ms``.
    """
    default = default_ms
    per: dict[str, float] = {}
    seen_default = False
    for item in (p.strip() for p in (spec or "").split(",")):
        if not item:
            if spec is not None and spec.strip():
                raise WorkloadError(f"empty item in --deadline {spec!r}")
            continue
        name, eq, raw = item.rpartition("=") if "=" in item else ("", "", item)
        name = name.strip()
        try:
            ms = float(raw.strip().removesuffix("ms"))
        except ValueError:
            raise WorkloadError(
                f"deadline {raw.strip()!r} is not a number of milliseconds"
            ) from None
        if not _positive(ms):
            raise WorkloadError(
                f"deadline must be a positive number of milliseconds, got {raw.strip()!r}"
            )
        if not eq:
            if seen_default:
                raise WorkloadError(f"--deadline {spec!r} gives more than one default value")
            seen_default = True
            default = ms
            continue
        if name not in names:
            raise WorkloadError(
                f"--deadline names model {name!r}, which is not in --models ({', '.join(names)})"
            )
        if name in per:
            raise WorkloadError(f"--deadline sets model {name!r} twice")
        per[name] = ms
    return {name: per.get(name, default) for name in names}
