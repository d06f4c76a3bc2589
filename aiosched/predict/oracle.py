"""The ``oracle`` predictor: the sim backend's ground truth, the bound of what prediction can buy.

It reads the simulated device (:meth:`SimBackend.running_state
<aiosched.backends.sim.SimBackend.running_state>`): the remaining work and
noise of every batch on it, the device speed and each model's
:class:`~aiosched.backends.sim.SimModel`. To predict a batch started at
``now`` it runs the fluid model forward on copies, event by event (co-runners
finish at their own rates, the rates change as they do) until the new batch
is done. What it cannot know: the new batch's own noise (taken as 1, its
mean), later arrivals, and drift steps still to come.

The co-runners are the ``running`` entries the caller passes, so a policy can
leave some out ("what if it ran alone") or add hypothetical ones. Each entry
is matched to the device by lane (same model and batch size): its progress
comes from the device. An entry the device does not run is a hypothetical
batch starting at its ``start`` with full work, if that is not before
``now``; one that started before ``now`` on a lane the device has already
freed has finished (its completion is on its way to the scheduler) and is
left out.

Only the sim backend has a ground truth to read: :meth:`attach` refuses any
other. Before it is attached (or for a model the backend has not loaded) it
returns a default guess and :meth:`knows` is false. Pickled or copied, an
oracle leaves its backend behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..backends.sim import SimBackend, SimModel
from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor

__all__ = ["OraclePredictor"]

# As the sim backend: a batch within this many seconds of its end has finished.
_EPS = 1e-7
_DEFAULT = 0.01  # seconds at batch 1 when there is nothing to read


class _Job:
    __slots__ = ("model", "pressure", "remaining", "work")

    def __init__(self, model: SimModel, pressure: float, work: float, remaining: float) -> None:
        self.model = model
        self.pressure = pressure
        self.work = work  # seconds alone at speed 1, noise included
        self.remaining = remaining


class OraclePredictor(Predictor):
    """Exact latencies from the sim backend's state (noise of the new batch aside)."""

    name = "oracle"

    def __init__(self) -> None:
        super().__init__()
        self._backend: SimBackend | None = None
        # (id of a SimModel, batch size) -> (that model, pressure, solo seconds at speed 1)
        self._sizes: dict[tuple[int, int], tuple[SimModel, float, float]] = {}

    def attach(self, backend: Any) -> None:
        if not isinstance(backend, SimBackend):
            kind = getattr(backend, "name", type(backend).__name__)
            raise InvalidConfig(
                f"the oracle predictor reads the sim backend's ground truth; "
                f"it cannot run on the {kind!r} backend (use backend='sim' or another predictor)"
            )
        self._backend = backend

    def knows(self, model: str) -> bool:
        backend = self._backend
        return backend is not None and model in backend.running_state().models

    def _learn(self, execution: Execution) -> None:
        pass  # nothing to learn: the base class tracks the error

    def forget(self, model: str) -> None:
        pass  # nothing learnt: the truth is the backend's, which unloads the model itself

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_backend"] = None  # a live device does not travel
        state["_sizes"] = {}
        return state

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        default = _DEFAULT * math.sqrt(max(1, batch_size))
        backend = self._backend
        if backend is None:
            return default
        state = backend.running_state()
        models = state.models
        truth = models.get(model)
        if truth is None:
            return default
        device = {r.lane: r for r in state.runs}
        elapsed = max(0.0, now - state.at)
        active: list[_Job] = []
        pending: list[tuple[float, _Job]] = []
        used: set[int] = set()
        for entry in running:
            run = device.get(entry.lane)
            if (
                run is not None
                and entry.lane not in used
                and run.name == entry.model
                and run.batch_size == entry.batch_size
            ):
                used.add(entry.lane)
                # Up to ``now`` at its current rate, as the backend's settle would.
                left = run.remaining - run.rate * elapsed
                truth_of_run = models.get(run.name)  # None: unloaded while it runs (hung)
                if left > run.rate * _EPS and truth_of_run is not None:
                    active.append(self._job(truth_of_run, run.batch_size, run.noise, left))
                continue
            other = models.get(entry.model)
            if other is None or entry.start < now:
                continue  # unknown to the device, or already done there
            job = self._job(other, entry.batch_size, 1.0, 1.0)
            if entry.start == now:
                active.append(job)
            else:
                pending.append((entry.start, job))
        target = self._job(truth, batch_size, 1.0, 1.0)
        active.append(target)
        pending.sort(key=lambda p: p[0])
        value = self._simulate(active, pending, target, state.speed, now)
        return value if value > 0 and math.isfinite(value) else default

    def _job(self, model: SimModel, batch_size: int, noise: float, remaining: float) -> _Job:
        key = (id(model), batch_size)
        hit = self._sizes.get(key)
        if hit is None or hit[0] is not model:
            if len(self._sizes) > 4096:
                self._sizes.clear()
            hit = (model, model.pressure_at(batch_size), model.solo_latency(batch_size))
            self._sizes[key] = hit
        return _Job(model, hit[1], hit[2] * noise, remaining)

    @staticmethod
    def _simulate(
        active: list[_Job],
        pending: list[tuple[float, _Job]],
        target: _Job,
        speed: float,
        now: float,
    ) -> float:
        """Drain ``active`` (``pending`` joining at their times) until ``target`` ends."""
        t = now
        k = 0  # next pending start
        while True:
            n = len(active)
            total = sum(j.pressure for j in active)
            rates = [speed / (j.work * j.model.slowdown(total - j.pressure, n - 1)) for j in active]
            step = min(max(j.remaining, 0.0) / r for j, r in zip(active, rates, strict=True))
            if k < len(pending) and pending[k][0] - t < step:
                step = pending[k][0] - t
                for job, rate in zip(active, rates, strict=True):
                    job.remaining -= rate * step
                t = pending[k][0]
                while k < len(pending) and pending[k][0] <= t:
                    active.append(pending[k][1])
                    k += 1
                continue
            t += step
            still: list[_Job] = []
            finished = False
            for job, rate in zip(active, rates, strict=True):
                job.remaining -= rate * step
                if job.remaining <= rate * _EPS:
                    finished = finished or job is target
                else:
                    still.append(job)
            if finished:
                return t - now
            active = still
