"""Arrival processes: when requests are sent, generated up front from a seed.

An arrival process is a shape without a rate: :meth:`ArrivalProcess.times`
turns a mean rate, a duration and a seeded generator into the absolute send
offsets (seconds from the start, non-decreasing, all in ``[0, duration)``).
Generating everything before the first send means two runs, or two policies,
with one seed see the very same sequence (as MLPerf LoadGen does).

- :class:`Poisson`: exponential gaps (MLPerf's Server scenario).
- :class:`Constant`: evenly spaced (wrk2, perf_analyzer's constant mode).
- :class:`Gamma`: gamma gaps whose coefficient of variation ``cv`` sets the
  burstiness: ``cv=1`` is Poisson, ``cv<1`` smoother, ``cv>1`` burstier.
- :class:`Bursty`: a two-state Markov-modulated Poisson process: exponential
  "on" and "off" periods (means ``on_s`` and ``off_s``); the "off" state runs
  at ``off_ratio`` times the "on" rate (0: silent), scaled so that the mean
  rate is the one asked for.

:func:`parse_arrival` reads a command-line spec such as ``"poisson"``,
``"gamma:cv=2"`` or ``"bursty:on=1,off=1,ratio=0.1"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from aiosched.loadgen.errors import ArrivalSpecError

__all__ = [
    "ARRIVALS",
    "ArrivalProcess",
    "Bursty",
    "Constant",
    "Gamma",
    "Poisson",
    "parse_arrival",
]

ARRIVALS: tuple[str, ...] = ("poisson", "constant", "gamma", "bursty")
"""The names :func:`parse_arrival` knows (trace replay is :mod:`aiosched.loadgen.trace`)."""


@runtime_checkable
class ArrivalProcess(Protocol):
    """A rate-free arrival shape."""

    @property
    def spec(self) -> str:
        """The spec string :func:`parse_arrival` turns back into this process."""
        ...

    def times(self, rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
        """Send offsets in seconds, non-decreasing, in ``[0, duration)``, ``rate`` per second."""
        ...


def _check(rate: float, duration: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ArrivalSpecError(f"rate must be a positive number of requests/s, got {rate!r}")
    if not (math.isfinite(duration) and duration >= 0):
        raise ArrivalSpecError(
            f"duration must be a non-negative number of seconds, got {duration!r}"
        )


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ArrivalSpecError(f"{name} must be a positive number, got {value!r}")


def _renewal(gaps: _GapDraw, rate: float, duration: float) -> NDArray[np.float64]:
    """Cumulative sums of independent gaps, cut at ``duration``."""
    chunks: list[NDArray[np.float64]] = []
    start = 0.0
    expected = rate * duration
    n = int(expected + 6.0 * math.sqrt(expected) + 16)
    while True:
        ts = start + np.cumsum(gaps(n))
        chunks.append(ts)
        if ts.size == 0 or ts[-1] >= duration:
            break
        start = float(ts[-1])
        n = int((duration - start) * rate * 1.2) + 16
    out = np.concatenate(chunks)
    return np.asarray(out[out < duration], dtype=np.float64)


class _GapDraw(Protocol):
    def __call__(self, n: int, /) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class Poisson:
    """Exponential inter-arrival gaps: coefficient of variation 1."""

    @property
    def spec(self) -> str:
        return "poisson"

    def times(self, rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
        _check(rate, duration)

        def gaps(n: int) -> NDArray[np.float64]:
            return rng.exponential(1.0 / rate, n)

        return _renewal(gaps, rate, duration)


@dataclass(frozen=True, slots=True)
class Constant:
    """Evenly spaced sends, the first at 0; the generator is not used."""

    @property
    def spec(self) -> str:
        return "constant"

    def times(self, rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
        _check(rate, duration)
        ts = np.arange(math.ceil(rate * duration) + 1, dtype=np.float64) / rate
        return np.asarray(ts[ts < duration], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Gamma:
    """Gamma gaps with coefficient of variation ``cv`` (shape ``1/cv**2``)."""

    cv: float = 2.0

    def __post_init__(self) -> None:
        _positive("gamma cv", self.cv)

    @property
    def spec(self) -> str:
        return f"gamma:cv={self.cv:g}"

    def times(self, rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
        _check(rate, duration)
        shape = 1.0 / (self.cv * self.cv)
        scale = 1.0 / (rate * shape)

        def gaps(n: int) -> NDArray[np.float64]:
            return rng.gamma(shape, scale, n)

        return _renewal(gaps, rate, duration)


@dataclass(frozen=True, slots=True)
class Bursty:
    """Two-state Markov-modulated Poisson process with the requested mean rate.

    The process alternates between "on" and "off" periods with exponential
    lengths of mean ``on_s`` and ``off_s``; it starts in a state drawn from
    the stationary distribution. The "off" rate is ``off_ratio`` times the
    "on" rate. With mean rate ``r`` the "on" rate is
    ``r * (on_s + off_s) / (on_s + off_ratio * off_s)``.
    """

    on_s: float = 1.0
    off_s: float = 1.0
    off_ratio: float = 0.0

    def __post_init__(self) -> None:
        _positive("bursty on", self.on_s)
        _positive("bursty off", self.off_s)
        if not (math.isfinite(self.off_ratio) and 0.0 <= self.off_ratio <= 1.0):
            raise ArrivalSpecError(f"bursty ratio must be in [0, 1], got {self.off_ratio!r}")

    @property
    def spec(self) -> str:
        return f"bursty:on={self.on_s:g},off={self.off_s:g},ratio={self.off_ratio:g}"

    def state_rates(self, rate: float) -> tuple[float, float]:
        """The (on, off) Poisson rates whose time-weighted mean is ``rate``."""
        on_rate = rate * (self.on_s + self.off_s) / (self.on_s + self.off_ratio * self.off_s)
        return on_rate, on_rate * self.off_ratio

    def times(self, rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
        _check(rate, duration)
        if duration == 0:
            return np.empty(0, dtype=np.float64)
        on_rate, off_rate = self.state_rates(rate)
        first_on = bool(rng.random() < self.on_s / (self.on_s + self.off_s))
        # Periods alternate, so draw them in pairs until they cover the duration.
        cycle = self.on_s + self.off_s
        lengths: list[NDArray[np.float64]] = []
        covered = 0.0
        while covered < duration:
            pairs = int((duration - covered) / cycle * 1.2) + 8
            first = rng.exponential(self.on_s if first_on else self.off_s, pairs)
            second = rng.exponential(self.off_s if first_on else self.on_s, pairs)
            chunk = np.empty(2 * pairs)
            chunk[0::2] = first
            chunk[1::2] = second
            lengths.append(chunk)
            covered += float(chunk.sum())
        length = np.concatenate(lengths)
        ends = np.cumsum(length)
        keep = int(np.searchsorted(ends, duration)) + 1
        length, ends = length[:keep], ends[:keep]
        starts = ends - length
        rates = np.where((np.arange(keep) % 2 == 0) == first_on, on_rate, off_rate)
        counts = rng.poisson(rates * length)
        segment = np.repeat(np.arange(keep), counts)
        ts = np.sort(starts[segment] + rng.random(segment.size) * length[segment])
        return np.asarray(ts[ts < duration], dtype=np.float64)


_PARAMS: dict[str, dict[str, str]] = {
    "poisson": {},
    "constant": {},
    "gamma": {"cv": "cv"},
    "bursty": {"on": "on_s", "off": "off_s", "ratio": "off_ratio"},
}


def parse_arrival(spec: str) -> ArrivalProcess:
    """Parse ``name[:key=value,...]`` into an arrival process.

    ``poisson``; ``constant``; ``gamma[:cv=C]`` (default 2);
    ``bursty[:on=S,off=S,ratio=R]`` (defaults 1 s, 1 s, 0).
    Raises :class:`ArrivalSpecError` naming what is wrong.
    """
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _PARAMS:
        known = ", ".join(ARRIVALS)
        if name == "trace":
            raise ArrivalSpecError(
                "trace replay needs a trace file (load_trace), not an arrival spec"
            )
        raise ArrivalSpecError(
            f"unknown arrival process {name!r} in {spec!r}; expected one of {known}"
        )
    allowed = _PARAMS[name]
    kwargs: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise ArrivalSpecError(f"{name}: expected key=value, got {item!r} in {spec!r}")
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "no parameters"
            raise ArrivalSpecError(f"{name}: unknown parameter {key!r} (takes {expected})")
        if allowed[key] in kwargs:
            raise ArrivalSpecError(f"{name}: parameter {key!r} given twice in {spec!r}")
        try:
            text = raw.strip()
            value = float(text.removesuffix("s") if key in ("on", "off") else text)
        except ValueError:
            raise ArrivalSpecError(f"{name}: {key}={raw.strip()!r} is not a number") from None
        kwargs[allowed[key]] = value
    if name == "poisson":
        return Poisson()
    if name == "constant":
        return Constant()
    if name == "gamma":
        return Gamma(**kwargs)
    return Bursty(**kwargs)
