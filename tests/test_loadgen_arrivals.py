"""Arrival processes: rate and dispersion within statistical bounds for fixed seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiosched.errors import AioschedError
from aiosched.loadgen import (
    ArrivalSpecError,
    Bursty,
    Constant,
    Gamma,
    Poisson,
    parse_arrival,
)
from aiosched.loadgen.arrivals import ArrivalProcess


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaps_cv(t: np.ndarray) -> float:
    gaps = np.diff(t)
    return float(gaps.std() / gaps.mean())


def index_of_dispersion(t: np.ndarray, duration: float, window: float) -> float:
    counts = np.bincount((t // window).astype(int), minlength=int(duration / window))
    return float(counts.var(ddof=1) / counts.mean())


def mmpp_idc(p: Bursty, rate: float, window: float) -> float:
    """Index of dispersion of counts of a 2-state MMPP over windows of ``window`` s."""
    l1, l2 = p.state_rates(rate)
    w1, w2 = 1.0 / p.on_s, 1.0 / p.off_s
    limit = 2.0 * (l1 - l2) ** 2 * w1 * w2 / ((w1 + w2) ** 2 * (l1 * w2 + l2 * w1))
    s = (w1 + w2) * window
    return 1.0 + limit * (1.0 - (1.0 - math.exp(-s)) / s)


PROCESSES: list[ArrivalProcess] = [Poisson(), Constant(), Gamma(2.0), Gamma(0.5), Bursty(1, 1)]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.spec)
def test_times_are_sorted_in_window_and_seeded(process: ArrivalProcess) -> None:
    t = process.times(200.0, 20.0, rng(1))
    assert t.dtype == np.float64
    assert len(t) > 0
    assert t[0] >= 0.0 and t[-1] < 20.0
    assert np.all(np.diff(t) >= 0)
    assert np.array_equal(t, process.times(200.0, 20.0, rng(1)))
    if not isinstance(process, Constant):
        assert not np.array_equal(t, process.times(200.0, 20.0, rng(2)))


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.spec)
def test_zero_duration_is_empty(process: ArrivalProcess) -> None:
    assert len(process.times(100.0, 0.0, rng())) == 0


def test_poisson_rate_and_dispersion() -> None:
    rate, duration = 1000.0, 100.0
    t = Poisson().times(rate, duration, rng())
    # count ~ Poisson(1e5): sd 316, so 1 % is over 3 sd
    assert len(t) / duration == pytest.approx(rate, rel=0.01)
    assert gaps_cv(t) == pytest.approx(1.0, abs=0.03)  # se about 0.0045
    assert index_of_dispersion(t, duration, 0.1) == pytest.approx(1.0, abs=0.2)  # se about 0.045


def test_constant_is_exact() -> None:
    t = Constant().times(250.0, 4.0, rng())
    assert len(t) == 1000
    assert t[0] == 0.0
    assert np.allclose(np.diff(t), 1 / 250.0)
    assert gaps_cv(t) < 1e-9


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_rate_and_cv(cv: float) -> None:
    rate, duration = 1000.0, 200.0
    t = Gamma(cv).times(rate, duration, rng(3))
    # the count of a renewal process has variance about n * cv**2
    assert len(t) / duration == pytest.approx(
        rate, rel=max(0.01, 6 * cv / math.sqrt(rate * duration))
    )
    assert gaps_cv(t) == pytest.approx(cv, rel=0.06)


def test_gamma_cv_one_behaves_like_poisson() -> None:
    t = Gamma(1.0).times(1000.0, 100.0, rng(4))
    assert index_of_dispersion(t, 100.0, 0.1) == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize(
    "process", [Bursty(1.0, 1.0), Bursty(0.5, 2.0, 0.2), Bursty(2.0, 0.5, 0.0)], ids=str
)
def test_bursty_rate_and_index_of_dispersion(process: Bursty) -> None:
    rate, duration, window = 100.0, 5000.0, 10.0
    t = process.times(rate, duration, rng(5))
    assert len(t) / duration == pytest.approx(rate, rel=0.08)
    idc = index_of_dispersion(t, duration, window)
    assert idc == pytest.approx(mmpp_idc(process, rate, window), rel=0.25)
    assert idc > 10  # far burstier than Poisson (1)


def test_bursty_off_periods_are_silent_with_ratio_zero() -> None:
    t = Bursty(1.0, 1.0).times(100.0, 100.0, rng(6))
    # mean off period 1 s: many gaps far longer than the on-state mean gap (5 ms)
    assert np.sum(np.diff(t) > 0.5) > 10


def test_bursty_with_ratio_one_is_poisson() -> None:
    t = Bursty(1.0, 1.0, 1.0).times(1000.0, 100.0, rng(8))
    assert len(t) / 100.0 == pytest.approx(1000.0, rel=0.01)
    assert index_of_dispersion(t, 100.0, 0.1) == pytest.approx(1.0, abs=0.2)


def test_bursty_state_rates_average_to_rate() -> None:
    p = Bursty(0.5, 2.0, 0.25)
    on, off = p.state_rates(80.0)
    assert (on * 0.5 + off * 2.0) / 2.5 == pytest.approx(80.0)
    assert off == pytest.approx(on * 0.25)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("poisson", Poisson()),
        (" Poisson ", Poisson()),
        ("constant", Constant()),
        ("gamma", Gamma(2.0)),
        ("gamma:cv=0.5", Gamma(0.5)),
        ("bursty", Bursty(1.0, 1.0, 0.0)),
        ("bursty:on=2,off=0.5", Bursty(2.0, 0.5)),
        ("bursty:on=2s, off=3s, ratio=0.1", Bursty(2.0, 3.0, 0.1)),
    ],
)
def test_parse_arrival(spec: str, expected: ArrivalProcess) -> None:
    got = parse_arrival(spec)
    assert got == expected
    assert parse_arrival(got.spec) == got


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "unknown arrival process"),
        ("uniform", "unknown arrival process 'uniform'"),
        ("trace", "trace file"),
        ("gamma:k=2", "unknown parameter 'k'"),
        ("poisson:rate=3", "unknown parameter 'rate'"),
        ("gamma:cv", "expected key=value"),
        ("gamma:cv=two", "is not a number"),
        ("gamma:cv=0", "cv must be a positive number"),
        ("gamma:cv=-1", "cv must be a positive number"),
        ("gamma:cv=nan", "cv must be a positive number"),
        ("gamma:cv=1,cv=2", "given twice"),
        ("bursty:on=0", "on must be a positive number"),
        ("bursty:off=-1", "off must be a positive number"),
        ("bursty:ratio=2", "ratio must be in [0, 1]"),
    ],
)
def test_parse_arrival_errors(spec: str, message: str) -> None:
    with pytest.raises(ArrivalSpecError, match=None) as info:
        parse_arrival(spec)
    assert message in str(info.value)
    assert isinstance(info.value, AioschedError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("rate", "duration"), [(0.0, 1.0), (-1.0, 1.0), (math.inf, 1.0), (1.0, -1.0)]
)
def test_bad_rate_or_duration(rate: float, duration: float) -> None:
    with pytest.raises(ArrivalSpecError):
        Poisson().times(rate, duration, rng())
