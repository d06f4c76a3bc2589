"""The ``overlap`` predictor: fine-grained, trained on realized overlaps, learning online.

The model. A batch of model ``m`` and size ``b`` needs ``W_m(b)`` seconds of
work; while a set ``S`` of batches runs beside it, it progresses at rate
``1 - g_m(S)`` (``g`` is the share of its time lost to interference). Cut an
execution into stretches of constant co-location, fractions ``f_k`` of its
latency ``L``; then ``W = L * sum_k f_k (1 - g_m(S_k))``, that is::

    W_m(b) / L  +  sum_k f_k g_m(S_k)  =  1

With the solo curve ``W_m(b) = tau_m (w0 + w1 sqrt(b) + w2 b)`` (``tau_m`` a
fixed reference time; the basis fits ``a + c b^e`` for ``e`` in [0.5, 1.1]
within 0.8 % on sizes 1 to 8) and ``g_m(S) = theta_m . phi(S)``
(:class:`~aiosched.predict.features.FeatureSpace`), the left-hand side is
linear in ``(w, theta)`` whatever the number of lanes and however co-runners
came and went. So each target model gets one recursive-least-squares fit of
that identity: the solo curve and the interference are learnt *jointly* from
every execution, solo or not, its realized overlaps included. Learning the
solo latency only from solo runs fails under load, where almost nothing runs
alone, not even the warm-ups of several models.

Each target's fit covers only what it needs: the three solo-curve weights,
the two pair terms, and one block of three weights per co-runner model it
has actually run beside, added (zero weights, the prior's variance) when a
new one first shows up. Features of models it never ran beside are zero in
every one of its equations, so leaving them out changes nothing; what it
saves is a fit over every registered model's block per target, which made
memory and ``learn`` grow as the square of the number of models. Beyond
``max_corunners`` co-runner models the least recently seen one is dropped
(its weights marginalised out) and counts as never seen again.

Two memories. When a model is always overlapped by the same number of
co-runners (a saturated device), the data cannot tell a short solo time with
heavy interference from a longer one with less, and under forgetting the fit
would slide towards "no work, all interference". So the solo-curve weights
forget far more slowly (``solo_forgetting``) than the interference weights
(``forgetting``). A device-wide change (a slower clock, another job on the
device) is caught instead by one *device factor* shared by all models,
nudged by every execution's log error against what the fit explains given
the overlaps that really happened; latencies are learnt in units of it.
The nudge is small (``device_rate``), so noise stays out of it; but then a
large step (the device three times slower) took a hundred executions and
more, and meanwhile the fast-forgetting interference weights took up part of
the step as interference, which the predictions then carried for hundreds
more. So the factor also jumps when three in four of the last ``device_window``
executions say, each on its own, that it is off to the same side, and the
median of what they say is beyond three times the errors' typical size: to
that median.
Noise (even the heavy-tailed noise of a shared CPU) almost never does that.

Predicting. The executions in flight are projected forward: each one's
remaining time is ``max(0, expected_end - now)``, so a co-runner about to
finish counts for little. The new batch's work is spent stretch by stretch,
at the rate the co-runners still running allow, until it is done; the
overlap with each co-runner is thus the smaller of its remaining time and
the new batch's own (projected) latency, solved exactly rather than by
iteration.

What cannot be known at dispatch is who will start beside the batch later.
The predictor learns it as an expectation: per target model and per kind of
stretch (co-runners at dispatch, how many of them are still running), the
time-averaged share lost to batches that *joined* later, and adds it to each
projected stretch. Under heavy load a lane freed by a finishing co-runner is
taken again at once; under light load it stays empty; the expectation learns
which. (On the sim backend, knowing the co-runners' true end times instead of
their projected ones barely changes the error: what is left after the
projection is noise and who joins later.)

``predict`` is the expected latency. The scheduler's default wraps it in
:class:`~aiosched.predict.quantile.QuantilePredictor` (``overlap:quantile=0.9``)
to size batches against a high quantile instead.

Cost. ``predict`` is dictionary look-ups and a few float operations per
co-runner, with the projection reused for the repeated calls of one dispatch
(the policy bisects a batch size). ``learn`` is one small RLS update (numpy:
5 + 3k weights for k co-runner models seen, whatever the number of models
registered; plain Python is slower even at 8 weights) and the overlap
bookkeeping in plain Python: per peer and per pair of peers, not per stretch.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidConfig
from ..timeline import Execution, Running
from .base import Predictor
from .features import BLOCK, SparseVector
from .learners import RLS

__all__ = ["OverlapPredictor"]

# Each target model's RLS: [1, sqrt(b), b] of the solo curve, the two pair terms, then one
# block [1, sqrt(b), b] per co-runner model it has run beside, in order of appearance.
_SOLO = 3
_PAIR = 3  # index of the pair terms: [number of pairs, sum over pairs of sqrt(b_j b_k)]
_FIXED = 5  # weights before the first co-runner block

_Plan = tuple[tuple[float, ...], tuple[float, ...], float]
# (ends of the projected stretches, progress rate in each, rate once the known co-runners left)

_Key = tuple[int, int]  # (co-runners at dispatch, how many of them are still running)

# Derived caches follow every update of a target's first fit, then every few updates.
_EXACT_UPDATES = 64
_REFRESH_EVERY = 4

# The device factor's shift detection (_Level): the memory of the errors' typical size, and
# how many times that size a run of executions must agree on before the factor jumps.
_NOISE_RATE = 0.02
_NOISE_MEMORY = 50  # 1 / _NOISE_RATE
_JUMP = 3.0


class _Level:
    """The device factor's log, tracked from residuals: a slow average, and a jump on a shift.

    Each residual (log of actual over explained, the explanation already
    scaled by this factor) moves ``value`` by ``rate`` times the residual
    (clipped, so one wild execution moves it little). Each also implies a
    value on its own (``value + residual``); when three in four of the last
    ``window`` of them lie on the same side of ``value`` and their median is
    further from it than ``_JUMP`` times the residuals' typical size (a slow,
    winsorised average of their clipped magnitude), the level has moved:
    ``value`` jumps to that median.
    """

    __slots__ = ("factor", "implied", "noise", "updates", "value")

    def __init__(self, window: int) -> None:
        self.value = 0.0
        self.factor = 1.0  # exp(value)
        self.noise = 0.0  # typical |residual|
        self.updates = 0
        self.implied: deque[float] | None = deque(maxlen=window) if window else None

    def update(self, residual: float, rate: float) -> bool:
        """Fold in one residual; whether it jumped."""
        value = self.value
        clipped = min(0.5, max(-0.5, residual))
        size = abs(clipped)
        noise = self.noise
        updates = self.updates = self.updates + 1
        if updates <= _NOISE_MEMORY:
            self.noise = noise + (size - noise) / updates  # the plain mean, to begin with
        else:
            # Winsorised, so that the errors of a shift itself barely raise the bar for it
            # (never below 5 %, so that a size once measured near zero can still grow).
            self.noise = noise + _NOISE_RATE * (min(size, max(2.0 * noise, 0.05)) - noise)
        implied = self.implied
        # No jump until the noise's typical size has been measured (a memory's worth).
        if implied is not None and self.updates > _NOISE_MEMORY:
            implied.append(value + residual)
            n = len(implied)
            if n == implied.maxlen:
                ordered = sorted(implied)
                median = ordered[n // 2]
                # Three in four on the same side (one execution caught across the change, or
                # an outlier, must not hide it), the median well beyond the noise.
                if (ordered[n // 4] > value or ordered[n - 1 - n // 4] < value) and abs(
                    median - value
                ) > _JUMP * noise:
                    self.value = median
                    self.factor = math.exp(median)
                    implied.clear()
                    return True
        self.value = value + rate * clipped
        self.factor = math.exp(self.value)
        return False


class _Target:
    """What the predictor knows about one model as the batch being predicted."""

    __slots__ = (
        "background",
        "blocks",
        "contrib",
        "joined",
        "rls",
        "solo",
        "tau",
        "unseen",
    )

    def __init__(self, tau: float, forgetting: float, solo_forgetting: float, delta: float) -> None:
        self.tau = tau
        self.rls = RLS(_FIXED, forgetting, delta)
        self.rls.set_forgetting(0, _SOLO, solo_forgetting)
        # Before any data: a flat solo curve at the first latency seen.
        self.rls.theta[0] = 1.0
        self.rls.weights[0] = 1.0
        self.solo: dict[int, float] = {}  # cache: batch size -> solo seconds
        self.contrib: dict[tuple[str, int], float] = {}  # cache: (co-runner, b) -> share
        self.unseen: dict[int, float] = {}  # cache: b -> share of a co-runner never beside it
        # The co-runner models it has run beside -> the index of their block in the RLS,
        # least recently seen first.
        self.blocks: dict[str, int] = {}
        # Joined-later expectation per key: decayed sums of the share of time lost to
        # batches that joined later, and of the time it was measured over; and their ratio.
        self.joined: dict[_Key, list[float]] = {}
        self.background: dict[_Key, float] = {}

    def stale(self) -> None:
        """Drop the cached co-runner shares (after the weights or the blocks changed)."""
        self.contrib.clear()
        self.unseen.clear()


class OverlapPredictor(Predictor):
    """Fine-grained, overlap-aware latency predictor (see the module docstring).

    ``forgetting``/``solo_forgetting``/``delta`` set each target model's RLS
    (forgetting of the interference and of the solo-curve weights, prior
    variance); ``background_memory`` the forgetting of the joined-later
    expectation; ``device_rate`` the step of the device factor (0 turns it
    off) and ``device_window`` the run of executions that make it jump (0: it
    never jumps); ``max_slowdown`` bounds any predicted slowdown; ``default``
    is the guess in seconds at batch 1 for a model never seen;
    ``max_corunners`` bounds the co-runner models each target keeps weights
    for (the least recently seen beyond it are forgotten, and count as a model
    never seen beside it). ``predict`` is the expectation (for a quantile:
    :class:`~aiosched.predict.quantile.QuantilePredictor`).
    """

    name = "overlap"

    def __init__(
        self,
        forgetting: float = 0.995,
        solo_forgetting: float = 0.999,
        delta: float = 10.0,
        background_memory: float = 0.99,
        device_rate: float = 0.1,
        max_slowdown: float = 20.0,
        default: float = 0.01,
        max_corunners: int = 32,
        device_window: int = 8,
    ) -> None:
        super().__init__()
        if not 0.0 <= device_rate <= 0.5:
            raise InvalidConfig("device_rate must be in [0, 0.5]")
        if not 0.0 < background_memory < 1.0:
            raise InvalidConfig("background_memory must be in (0, 1)")
        if not max_slowdown > 1.0:
            raise InvalidConfig("max_slowdown must be > 1")
        if not (default > 0 and math.isfinite(default)):
            raise InvalidConfig("default must be a positive number of seconds")
        if not max_corunners >= 1:
            raise InvalidConfig("max_corunners must be >= 1")
        if device_window != 0 and not 3 <= device_window <= 64:
            raise InvalidConfig("device_window must be 0 (off) or in [3, 64]")
        RLS(0, forgetting, delta).set_forgetting(0, 0, solo_forgetting)  # validates them now
        self.forgetting = forgetting
        self.solo_forgetting = solo_forgetting
        self.delta = delta
        self.background_memory = background_memory
        self.device_rate = device_rate
        self.max_slowdown = max_slowdown
        self.default = default
        self.max_corunners = max_corunners
        self.device_window = device_window
        self._g_max = 1.0 - 1.0 / max_slowdown
        self._device = 1.0  # device factor: latencies are learnt in units of it
        self._level = _Level(device_window)  # log of the device factor
        self._targets: dict[str, _Target] = {}
        # Start times of recently learnt executions, to place peers inside an execution.
        self._starts: dict[int, float] = {}
        self._start_order: deque[int] = deque()
        # The last projection, reused while the dispatcher asks about one moment.
        self._plan_key: tuple[Sequence[Running] | None, float, str] = (None, math.nan, "")
        self._plan: _Plan = ((), (), 1.0)

    def knows(self, model: str) -> bool:
        return model in self._targets

    # -- prediction (hot path) ------------------------------------------------

    def predict(self, model: str, batch_size: int, running: Sequence[Running], now: float) -> float:
        target = self._targets.get(model)
        if target is None:
            return self.default * math.sqrt(max(1, batch_size))
        work = target.solo.get(batch_size) or self._work(model, batch_size)
        work *= self._device
        key = self._plan_key
        if key[0] is running and key[1] == now and key[2] == model:
            ends, rates, tail = self._plan
        else:
            ends, rates, tail = self._plan = self._project(target, running, now)
            self._plan_key = (running, now, model)
        t = 0.0
        for i, end in enumerate(ends):
            rate = rates[i]
            capacity = (end - t) * rate
            if work <= capacity:
                return t + work / rate
            work -= capacity
            t = end
        return t + work / tail

    def solo(self, model: str, batch_size: int) -> float:
        """Predicted seconds of a batch of ``model`` with nothing beside it."""
        return self._work(model, batch_size) * self._device

    def _work(self, model: str, batch_size: int) -> float:
        """The solo curve, in units of the device factor."""
        target = self._targets.get(model)
        if target is None:
            return self.default * math.sqrt(max(1, batch_size))
        value = target.solo.get(batch_size)
        if value is None:
            w = target.rls.weights
            value = target.tau * (w[0] + w[1] * math.sqrt(batch_size) + w[2] * batch_size)
            # Never below a twentieth of the reference: a wild early fit must stay positive.
            value = target.solo[batch_size] = max(value, 0.05 * target.tau)
        return value

    def _project(self, target: _Target, running: Sequence[Running], now: float) -> _Plan:
        """The stretches ahead: when each co-runner ends, and the new batch's rate till then."""
        background = target.background
        g_max = self._g_max
        n = len(running)
        if not n:
            g = background.get((0, 0), 0.0)
            return (), (), 1.0 - (g_max if g > g_max else 0.0 if g < 0.0 else g)
        if n == 1:  # the common case on two lanes, without the general loop's overhead
            r = running[0]
            share = target.contrib.get((r.model, r.batch_size))
            if share is None:
                share = self._contribution(target, r.model, r.batch_size)
            g = share + background.get((1, 1), 0.0)
            rate = 1.0 - (g_max if g > g_max else 0.0 if g < 0.0 else g)
            end = r.expected_end - now
            g = background.get((1, 0), 0.0)
            tail = 1.0 - (g_max if g > g_max else 0.0 if g < 0.0 else g)
            return (end if end > 0.0 else 0.0,), (rate,), tail
        if n == 2:
            a, b = running
            order: Sequence[Running] = (a, b) if a.expected_end <= b.expected_end else (b, a)
        else:
            order = sorted(running, key=_expected_end)
        w = target.rls.weights
        w_pair, w_cross = w[_PAIR], w[_PAIR + 1]
        cached = target.contrib
        rates = [0.0] * n
        # Walk back from the last to end: stretch i has co-runners i..n-1 still running.
        share = roots = cross = 0.0
        for i in range(n - 1, -1, -1):
            r = order[i]
            one = cached.get((r.model, r.batch_size))
            share += self._contribution(target, r.model, r.batch_size) if one is None else one
            root = math.sqrt(r.batch_size)
            cross += root * roots
            roots += root
            m = n - i
            g = share + background.get((n, m), 0.0)
            if m > 1:
                g += w_pair * (m * (m - 1) / 2) + w_cross * cross
            rates[i] = 1.0 - (g_max if g > g_max else 0.0 if g < 0.0 else g)
        ends = tuple(e if (e := r.expected_end - now) > 0.0 else 0.0 for r in order)
        g = background.get((n, 0), 0.0)
        return ends, tuple(rates), 1.0 - (g_max if g > g_max else 0.0 if g < 0.0 else g)

    def _contribution(self, target: _Target, other: str, b: int) -> float:
        """``theta . phi({(other, b)})``: the share of time one co-runner takes."""
        value = target.contrib.get((other, b))
        if value is None:
            j = target.blocks.get(other)
            if j is not None:
                w = target.rls.weights
                # A co-runner never speeds a batch up; the fit, extrapolated to a size it
                # has rarely seen beside this model, may say otherwise.
                value = max(0.0, w[j] + w[j + 1] * math.sqrt(b) + w[j + 2] * b)
            else:
                # A co-runner model never seen beside this one: the mean of those seen.
                value = target.unseen.get(b)
                if value is None:
                    value = target.unseen[b] = _mean_share(target, b)
            target.contrib[(other, b)] = value
        return value

    # -- learning (once per finished execution) -----------------------------------

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        """Fold in one solo latency (a profile entry, a solo run measured elsewhere)."""
        if latency > 0 and math.isfinite(latency):
            target = self._targets.get(model)
            if target is None:
                target = self._targets[model] = self._new_target(latency / self._device)
            self._fit(target, batch_size, latency / self._device, {})

    def _learn(self, execution: Execution) -> None:
        if not execution.ok:
            return
        latency = execution.latency
        self._remember(execution.id, execution.start)
        if not (latency > 0 and math.isfinite(latency)):
            return
        model = execution.model
        target = self._targets.get(model)
        fresh = target is None
        if target is None:
            target = self._targets[model] = self._new_target(latency / self._device)
        x, joined, shares, lost = self._overlap_features(execution, target, fresh)
        if not fresh:
            self._track_device(model, execution.batch_size, latency, lost)
        self._fit(target, execution.batch_size, latency / self._device, x)
        if not fresh:
            self._track_joined(target, joined, shares)
        if len(target.blocks) > self.max_corunners:
            self._evict(target)

    def _new_target(self, tau: float) -> _Target:
        return _Target(tau, self.forgetting, self.solo_forgetting, self.delta)

    def _overlap_features(
        self, execution: Execution, target: _Target, fresh: bool = False
    ) -> tuple[SparseVector, dict[_Key, float], dict[_Key, float], float]:
        """``x = sum_k f_k phi(S_k)`` over the execution, the joiners' cost by key, ``theta . x``.

        The peers are placed in time as :func:`~aiosched.predict.features.peer_spans`
        places them. ``x`` is indexed like ``target``'s RLS; a co-runner model
        new to it gets a block (zero weights, the prior's variance) once its
        features are in, so that until then it counts as a model never seen
        beside it. The per-model features are additive over co-runners, so
        each peer adds its overlap share times its basis; the pair terms need
        the time two peers ran together. What batches that joined later cost
        (under the target's current weights) is split by key: the stretches
        after ``i`` of the peers known at dispatch had finished. The last value
        is the share of the latency the current weights put down to
        interference. ``fresh`` (the target's first execution) skips the
        costs: they are unused.
        """
        start, end = execution.start, execution.end
        latency = end - start
        at_dispatch = execution.at_dispatch
        n = len(at_dispatch)
        overlaps = execution.overlaps
        if not overlaps:
            return {}, {(n, 0): 0.0}, {(n, 0): 1.0}, 0.0
        # Place the peers (a named tuple per peer is what made this cost).
        known_ids = {r.id for r in at_dispatch} if n else ()
        starts = self._starts
        placed: list[tuple[float, float, float, bool, str, int]] = []
        ends: list[float] = []
        for peer in overlaps:
            if peer.id in known_ids:
                a = start
                k = True
            else:
                t = starts.get(peer.id)
                a = (t if t > start else start) if t is not None else end - peer.overlap
                k = False
            e = a + peer.overlap
            if e > end:
                e = end
            if e > a:
                b = peer.batch_size
                placed.append((a, e, math.sqrt(b), k, peer.model, b))
                if k:
                    ends.append(e)
        # The known peers all start at the start, so k of them run until the
        # (n_known - k)-th of their ends.
        if ends:
            ends.sort()
            bounds = [start, *ends, end]
            known = len(ends)
            regions = [
                ((n, known - i), bounds[i], bounds[i + 1])
                for i in range(known + 1)
                if bounds[i + 1] > bounds[i]
            ]
            shares = {key: (hi - lo) / latency for key, lo, hi in regions}
        else:
            regions = [((n, 0), start, end)]
            shares = {(n, 0): 1.0}
        joined = dict.fromkeys(shares, 0.0)
        x: SparseVector = {}
        lost = 0.0
        blocks = target.blocks
        new: dict[str, int] = {}  # co-runner models new to the target -> their block
        reused: list[int] = []  # blocks taken over from forgotten co-runners
        present: set[str] | None = None
        dim = target.rls.dim
        grown = dim
        contribution = self._contribution
        for a, e, r, k, model, b in placed:
            f = (e - a) / latency
            i = blocks.pop(model, None)
            if i is not None:
                blocks[model] = i  # least recently seen first: it moves to the end
            else:
                i = new.get(model)
                if i is None:
                    if len(blocks) + len(new) >= self.max_corunners:
                        # Full: the least recently seen co-runner not in this execution
                        # gives up its block (see _evict for when there is none).
                        if present is None:
                            present = {p.model for p in overlaps}
                        victim = next((c for c in blocks if c not in present), None)
                        if victim is not None:
                            i = blocks.pop(victim)
                            reused.append(i)
                    if i is None:
                        i = grown
                        grown += BLOCK
                    new[model] = i
            x[i] = x.get(i, 0.0) + f
            x[i + 1] = x.get(i + 1, 0.0) + f * r
            x[i + 2] = x.get(i + 2, 0.0) + f * b
            if fresh:
                continue
            h = contribution(target, model, b)
            lost += f * h
            if not k:
                h /= latency
                for key, lo, hi in regions:
                    g = (e if e < hi else hi) - (a if a > lo else lo)
                    if g > 0:
                        joined[key] += g * h
        if len(placed) > 1:
            w = target.rls.weights
            # A pair's share of time: w_pairs + w_cross * sqrt(b1 b2) (0 before it is learnt).
            w_pair, w_cross = w[_PAIR], w[_PAIR + 1]
            for j, (a1, e1, r1, k1, _, _) in enumerate(placed):
                for a2, e2, r2, k2, _, _ in placed[j + 1 :]:
                    lo = a1 if a1 > a2 else a2
                    hi = e1 if e1 < e2 else e2
                    if hi <= lo:
                        continue
                    f = (hi - lo) / latency
                    rr = r1 * r2
                    x[_PAIR] = x.get(_PAIR, 0.0) + f
                    x[_PAIR + 1] = x.get(_PAIR + 1, 0.0) + f * rr
                    h = w_pair + w_cross * rr
                    lost += f * h
                    if k1 and k2:
                        continue
                    h /= latency
                    for key, rlo, rhi in regions:
                        g = (hi if hi < rhi else rhi) - (lo if lo > rlo else rlo)
                        if g > 0:
                            joined[key] += g * h
        if new:
            blocks.update(new)
            rls = target.rls
            for i in reused:
                rls.reset(i, i + BLOCK)
            rls.grow(grown)
            target.stale()  # the stand-ins for these models are stale now
        return x, joined, shares, lost

    def forget(self, model: str) -> None:
        """Drop ``model`` as a target and its block in every other target's fit (the
        device factor, learnt from every model, stays)."""
        self._targets.pop(model, None)
        for target in self._targets.values():
            if model in target.blocks:
                self._drop_blocks(target, [model])
        self._plan_key = (None, math.nan, "")

    def _evict(self, target: _Target) -> None:
        """Forget the least recently seen co-runner models beyond ``max_corunners``.

        A new co-runner normally takes over the block of the least recently
        seen one; only when all of them ran beside this very execution does the
        fit grow past the bound, until this brings it back after the update.
        """
        blocks = target.blocks
        self._drop_blocks(target, list(itertools.islice(blocks, len(blocks) - self.max_corunners)))

    def _drop_blocks(self, target: _Target, victims: Sequence[str]) -> None:
        """Remove the co-runner models ``victims`` from ``target``'s fit."""
        blocks = target.blocks
        indices = sorted(blocks.pop(c) for c in victims)
        target.rls.drop([i + k for i in indices for k in range(BLOCK)])
        for c, i in blocks.items():
            blocks[c] = i - BLOCK * bisect.bisect_left(indices, i)
        target.stale()
        self._plan_key = (None, math.nan, "")

    def _fit(self, target: _Target, b: int, latency: float, x: SparseVector) -> None:
        """One RLS step on ``W(b) / latency + theta . x = 1`` for ``target``."""
        rls = target.rls
        scale = target.tau / latency
        z = [0.0] * rls.dim  # filled as a list: setting numpy items one by one costs more
        z[0] = scale
        z[1] = scale * math.sqrt(b)
        z[2] = scale * b
        for i, v in x.items():
            z[i] = v
        rls.update(np.array(z), 1.0)
        if rls.updates <= _EXACT_UPDATES or not rls.updates % _REFRESH_EVERY:
            # One update moves the weights by little once they have settled: the cached
            # solo times and co-runner shares are refreshed every few updates, which keeps
            # predictions after a learn (and the learn itself) cheap.
            target.solo.clear()
            target.stale()
            self._plan_key = (None, math.nan, "")

    def _track_joined(
        self, target: _Target, joined: dict[_Key, float], shares: dict[_Key, float]
    ) -> None:
        decay = self.background_memory
        for key, share in shares.items():
            sums = target.joined.get(key)
            if sums is None:
                sums = target.joined[key] = [0.0, 0.0]
            sums[0] = sums[0] * decay + joined[key]
            sums[1] = sums[1] * decay + share
            target.background[key] = sums[0] / sums[1] if sums[1] > 0 else 0.0
        self._plan_key = (None, math.nan, "")

    def _track_device(self, model: str, b: int, latency: float, lost: float) -> None:
        """Move the device factor a step along log(actual / what the fit explains).

        The residual is the fit's, given the overlaps that really happened
        (``W / (1 - lost)`` against the latency, ``lost = theta . x``), not the prediction's:
        the prediction also carries what could not be known at dispatch
        (later joiners, co-runners' ends), and letting that steer a factor
        the fit itself is scaled by would close a loop. Every model's
        executions feed it, so a device-wide change shows up after a few
        dozen executions of any models (a few, for a large one: see
        :class:`_Level`); what differs by model is left to the per-model fits.
        """
        if not self.device_rate:
            return
        g = min(self._g_max, max(0.0, lost))
        explained = self.solo(model, b) / (1.0 - g)
        self._level.update(math.log(latency / explained), self.device_rate)
        self._device = self._level.factor
        self._plan_key = (None, math.nan, "")

    def _remember(self, ident: int, start: float) -> None:
        self._starts[ident] = start
        self._start_order.append(ident)
        if len(self._start_order) > 512:
            self._starts.pop(self._start_order.popleft(), None)


def _mean_share(target: _Target, b: int) -> float:
    """The mean over the target's co-runner models of the share one batch of ``b`` takes."""
    blocks = target.blocks
    if not blocks:
        return 0.0
    w = target.rls.weights
    root = math.sqrt(b)
    total = 0.0
    for j in blocks.values():
        share = w[j] + w[j + 1] * root + w[j + 2] * b
        if share > 0.0:  # each as _contribution has it: never below zero
            total += share
    return total / len(blocks)


def _expected_end(r: Running) -> float:
    return r.expected_end
