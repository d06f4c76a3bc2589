"""Earliest deadline first, with batches and co-location chosen for goodput (the default).

The policy makes three decisions from one predictor.

**Which batch.** The model whose most urgent request has the least slack
goes first. Its batch is the largest that meets that request's deadline
beside what is running. When that forces a small batch (the head has
little slack left, as under overload), the policy also considers passing
over the most urgent requests to send a larger batch that still meets the
deadlines of everyone in it, and simulates both plans over the next few
batches of the queue, on this lane, from the predicted solo latencies. It
passes over the heads only when that plan meets more deadlines: so batches
grow with load instead of shrinking to one (work-conserving EDF's failure),
and nothing is given up while there is time for everyone. Requests passed
over stay queued (another lane may take them); one that then cannot make it
is rejected with a message saying it was shed for throughput, as Nexus and
Clockwork drop early rather than run late.

**Whether to run it beside others.** With nothing running, it starts at
once. Beside running executions it starts only when that pays: it must meet
its own deadline, it must not push a running execution past a deadline that
execution would otherwise meet, and either starting now must finish the
work on the device sooner than waiting for the first of them to end
(``colocation_gain``: the predicted makespan, now against one after the
other), or waiting would cost it its deadline. Otherwise it waits, and
gathers requests meanwhile. So the effective concurrency follows the
device: several batches at once where the predictor has seen them overlap
well, one at a time where they do not (small batches on a CPU whose cores
also run the event loop and the application).

**Whether to admit a request at all.** ``infer()`` rejects at once a request
that could not meet its deadline even alone on an idle device
(:class:`~aiosched.errors.DeadlineUnmeetable`), and a queued request is
rejected the moment it turns infeasible (a planned wake-up, not the next
completion). Rejection only on predictions can lock the scheduler out: after
a slowdown the predictor has seen only slow executions, rejects everything,
and sees no more. So when a model has had no execution for
``probe_interval`` seconds while its requests are being rejected, one is let
through and run alone as a probe; the interval doubles while probes confirm
the prediction (up to ``max_probe_interval``) and falls back to the minimum
as soon as an execution runs faster than predicted. The same can happen to
batch sizes: a predictor that saw large batches run slowly during a slowdown
and then sees only the batches of one it allows keeps predicting the large
ones slow. So while a backlog is kept to batches smaller than the queue
allows, a batch twice that size is sent now and then as a probe, on the
same backoff (up to ``max_size_probe_interval``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from ..errors import AioschedError, DeadlineUnmeetable, InvalidConfig
from ..queue import ModelQueue, Request
from ..timeline import Execution, Running
from .base import DispatchView, Policy

__all__ = ["EdfPolicy"]

_FASTER = 0.8  # an execution this much faster than predicted is evidence the device recovered
# Evidence strong enough to doubt the predictions of sizes not run lately: a quantile
# prediction's margin makes executions 20 % faster than predicted common, and each size probe
# costs the deadlines of the requests it adds.
_MUCH_FASTER = 0.5


class _Batch:
    """A candidate batch: size, heads passed over, predicted latency, earliest deadline."""

    __slots__ = ("deadline", "predicted", "size", "skip")

    def __init__(self, size: int, skip: int, predicted: float, deadline: float) -> None:
        self.size = size
        self.skip = skip
        self.predicted = predicted
        self.deadline = deadline


class EdfPolicy(Policy):
    """EDF sized and co-located for goodput, with early rejection and probes (see module doc).

    ``max_concurrency`` caps the executions in flight (``None``: the lanes).
    ``admission`` rejects at ``infer()`` what cannot make it even alone.
    ``shed`` lets a batch pass over urgent requests when that meets more
    deadlines (``None``: except on a backend whose lanes share the host's
    cores). ``colocation_gain`` is the fraction by which running beside others
    must shorten the predicted makespan (``0.05``: 5 %); ``pairs`` starts two
    batches sized for each other under load; ``realized_gain`` is the measured
    gain co-location must keep showing (plus the backend's
    ``colocation_cost``), retried every ``explore_every`` seconds under light
    load; ``rescue`` starts a batch beside others when waiting would cost its
    deadline even though it does not pay; ``lookahead`` is how many batches'
    worth of the queue the shedding decision simulates.
    """

    name = "edf"
    order = "deadline"

    def __init__(
        self,
        max_concurrency: int | None = None,
        *,
        admission: bool = True,
        shed: bool | None = None,
        colocation_gain: float = 0.05,
        rescue: bool = False,
        pairs: bool = True,
        realized_gain: float = 0.1,
        explore_every: float = 60.0,
        lookahead: int = 4,
        probe_interval: float = 0.05,
        max_probe_interval: float = 0.25,
        shed_rate: bool = True,
        max_size_probe_interval: float = 2.0,
    ) -> None:
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise InvalidConfig("max_concurrency must be an int >= 1 or None")
        if not 0.0 <= colocation_gain < 1.0:
            raise InvalidConfig("colocation_gain must be in [0, 1)")
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise InvalidConfig("lookahead must be an int >= 1")
        if not (0 < probe_interval <= max_probe_interval < math.inf):
            raise InvalidConfig("need 0 < probe_interval <= max_probe_interval < inf (seconds)")
        if not (probe_interval <= max_size_probe_interval < math.inf):
            raise InvalidConfig("need probe_interval <= max_size_probe_interval < inf (seconds)")
        self.max_concurrency = max_concurrency
        self.admission = admission
        self.shed = shed
        self._shedding = bool(shed)
        self.colocation_gain = colocation_gain
        self.rescue = rescue
        self.pairs = pairs
        self.realized_gain = realized_gain
        self.explore_every = explore_every
        self._efficiency = _RealizedEfficiency()

        self._colocating = True  # co-location is allowed (it has paid, or is being tried)
        self._decided_at: float | None = None
        # (time, execution id, partner size): an execution sized to run beside a partner
        # dispatched at the same moment, which that partner therefore does not harm.
        self._paired: tuple[float, int, int] | None = None
        self.lookahead = lookahead
        self.shed_rate = shed_rate
        self.probe_interval = probe_interval
        self.max_probe_interval = max_probe_interval
        self._view: DispatchView | None = None
        self._alone: dict[str, float] = {}  # predicted solo latency at batch 1, per model
        self._max_alone = 0.0  # at least the largest of them (see _reach)
        self._noted = 0
        self._evidence: dict[str, float] = {}  # when an execution of the model last finished
        self._interval: dict[str, float] = {}  # current probe interval per model
        self._probed: dict[str, float] = {}  # when the last probe was dispatched
        self._admitted_probe: dict[str, float] = {}  # when infer() last let one through
        self._probing: set[str] = set()
        self.max_size_probe_interval = max_size_probe_interval
        self._size_interval: dict[str, float] = {}  # current size-probe interval per model
        self._size_probed: dict[str, float] = {}  # when the last size probe was dispatched
        self._size_probing: dict[str, int] = {}  # execution id of the size probe in flight
        self._size_seen: dict[str, dict[int, float]] = {}  # when each batch size last finished

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_concurrency={self.max_concurrency}, "
            f"admission={self.admission}, shed={self.shed}, "
            f"colocation_gain={self.colocation_gain})"
        )

    # -- admission (per request) --------------------------------------------

    def bind(self, view: DispatchView) -> None:
        self._view = view
        # Where co-location must also pay for the host (a CPU whose cores all go to lanes),
        # start one at a time and let exploration show whether running beside pays.
        self._colocating = view.colocation_cost == 0
        # Shedding trades urgent requests for a plan simulated from predictions. On two CPU
        # cores shared with the host that trade measured as a loss against one-at-a-time EDF
        # (the predictions err by 15-35 % there), so by default it is for the other backends.
        self._shedding = self.shed if self.shed is not None else view.colocation_cost == 0

    def admit(self, queue: ModelQueue, deadline: float, now: float) -> AioschedError | None:
        p1 = self._alone.get(queue.name)
        if p1 is None or now + p1 <= deadline or not self.admission:
            return None
        view = self._view
        if view is None or view.best_effort:
            return None
        name = queue.name
        # ``p1`` was cached when an execution last finished or the queue was last looked
        # at. After a slowdown everything is rejected, so nothing runs to refresh it until
        # the next probe; a predictor that reads the device (the oracle) may know better
        # by now. Ask again before turning a request away (only rejections pay for it).
        p1 = view.predictor.predict(name, 1, (), now)
        self._note_alone(name, p1)
        if now + p1 <= deadline:
            return None
        if self._probe_due(name, now, self._admitted_probe):
            self._admitted_probe[name] = now
            return None
        return DeadlineUnmeetable(
            f"{name}: predicted {p1 * 1e3:.2f} ms even alone; "
            f"deadline in {(deadline - now) * 1e3:.2f} ms"
        )

    def finished(self, execution: Execution) -> None:
        name = execution.model
        self._evidence[name] = execution.end
        view = self._view
        if view is not None and view.predictor.knows(name):
            self._note_alone(name, view.predictor.predict(name, 1, (), execution.end))
        self._size_seen.setdefault(name, {})[execution.batch_size] = execution.end
        if execution.warmup:
            return
        if view is not None:
            solo = view.predictor.predict(name, execution.batch_size, (), execution.start)
            self._efficiency.add(execution, solo)
            self._judge_colocation(execution.end)
        interval = self._interval.get(name, self.probe_interval)
        if execution.latency < _FASTER * execution.predicted:
            interval = self.probe_interval
        elif name in self._probing and execution.batch_size == 1:
            interval = min(2 * interval, self.max_probe_interval)
        self._probing.discard(name)
        self._interval[name] = interval
        if execution.latency < _MUCH_FASTER * execution.predicted:
            self._size_interval[name] = self.probe_interval
        elif self._size_probing.get(name) == execution.id:
            step = self._size_interval.get(name, self.max_size_probe_interval)
            self._size_interval[name] = min(2 * step, self.max_size_probe_interval)
        if self._size_probing.get(name) == execution.id:
            del self._size_probing[name]

    def forget(self, model: str) -> None:
        for table in (
            self._alone,
            self._evidence,
            self._interval,
            self._probed,
            self._admitted_probe,
            self._size_interval,
            self._size_probed,
            self._size_probing,
            self._size_seen,
        ):
            table.pop(model, None)
        self._probing.discard(model)
        self._max_alone = max(self._alone.values(), default=0.0)
        self._noted = 0

    def _judge_colocation(self, now: float) -> None:
        """Keep co-locating while running beside others has really paid (realized, not
        predicted: what the predictor cannot see, such as the host's own threads competing
        for a CPU's cores, shows here); stop otherwise, and try again now and then."""
        e = self._efficiency
        cost = self._view.colocation_cost if self._view is not None else 0.0
        if self._decided_at is None:
            self._decided_at = now
        if self._colocating:
            if e.evidence >= _EVIDENCE and e.gain() < 1.0 + self.realized_gain + cost:
                self._colocating = False
                self._decided_at = now
        elif now - self._decided_at >= self.explore_every * (4.0 if cost > 0 else 1.0) and (
            self._view is None or all(len(q) < q.spec.max_batch_size for q in self._view.queues)
        ):  # try again only under light load, where a wrong try costs little
            self._colocating = True
            self._decided_at = now
            e.forget_colocated()

    def _note_alone(self, name: str, p1: float) -> None:
        self._alone[name] = p1
        if p1 > self._max_alone:
            self._max_alone = p1
        self._noted += 1
        if self._noted >= len(self._alone):  # exact again now and then: O(1) amortised
            self._noted = 0
            self._max_alone = max(self._alone.values())

    def _reach(self) -> float:
        """An upper bound on any model's predicted solo latency at batch 1.

        The cached predictions of models not looked at lately may have grown
        since (the predictor learnt from other models' runs): the factor
        covers that; a queue missed by more is only looked at a step later.
        """
        return 1.5 * self._max_alone

    def _probe_due(self, name: str, now: float, last: dict[str, float]) -> bool:
        seen = max(self._evidence.get(name, -math.inf), last.get(name, -math.inf))
        return now - seen >= self._interval.get(name, self.probe_interval)

    # -- dispatch -----------------------------------------------------------

    def step(self, view: DispatchView) -> float | None:
        now = view.now
        held: set[str] = set()
        enforce = not view.best_effort
        while True:
            running = view.running
            lanes = view.free_lanes()
            capped = (
                self.max_concurrency is not None and len(running) >= self.max_concurrency
            ) or (bool(running) and not self._colocating)
            can_start = bool(lanes) and not capped
            best: ModelQueue | None = None
            best_start = math.inf  # the latest start of its head: deadline - p1
            wake = math.inf
            probe: ModelQueue | None = None
            idle = can_start and not running  # a lockout leaves the device idle: probe then
            # Queues come most urgent head first, each with a lower bound on its head's
            # deadline; no head's p1 exceeds ``reach``. So once a bound minus the reach is
            # past both the best start found and the earliest rejection time, no queue
            # further on can beat either, and the scan stops: a step looks at a handful of
            # queues however many models are registered.
            reach = self._reach()
            for bound, queue in view.ordered():
                if not (can_start and best is None):
                    stop = max(
                        best_start if can_start else -math.inf, wake if enforce else -math.inf
                    )
                    if bound - reach >= stop:
                        break
                head, p1, enforced, probe_now = self._feasible_head(view, queue, idle)
                if head is None:
                    continue
                if probe_now:
                    probe = queue
                    break
                start = head.deadline - p1
                if enforced and start < wake:
                    wake = start
                if queue.name in held:
                    continue
                if best is None or start < best_start:
                    best, best_start = queue, start
            if probe is not None:
                self._probed[probe.name] = now
                self._probing.add(probe.name)
                view.dispatch(probe, 1, lanes[0], self._alone.get(probe.name, math.nan))
                continue
            if best is None or not can_start:
                break
            batch = self._batch(view, best, running)
            probe_size = self._size_probe(view, best, batch)
            if probe_size:
                batch = _Batch(
                    probe_size,
                    0,
                    view.predictor.predict(best.name, probe_size, running, now),
                    batch.deadline,
                )
            pair = None
            if not running and len(lanes) > 1 and self.pairs and self._colocating:
                pair = self._pair(view, best, batch, lanes[1])
                batch = pair or batch
            if running and not self._pays_beside(view, best, batch, lanes[0], running):
                held.add(best.name)
                continue
            if view.dispatch(best, batch.size, lanes[0], batch.predicted, batch.skip) == 0:
                held.add(best.name)
            elif probe_size and view.running:
                self._size_probed[best.name] = now
                self._size_probing[best.name] = view.running[-1].id
            elif pair is not None and view.running:
                self._paired = (now, view.running[-1].id, pair.size)
        return wake if math.isfinite(wake) else None

    def _size_probe(self, view: DispatchView, queue: ModelQueue, batch: _Batch) -> int:
        """A larger batch size to try instead of ``batch`` (see the module doc), or 0."""
        name = queue.name
        if batch.skip or view.best_effort:
            return 0
        pending = self._size_probing.get(name)
        if pending is not None:
            if any(r.id == pending for r in view.running):
                return 0
            del self._size_probing[name]  # it failed: ``finished`` never saw it
        size = min(queue.spec.max_batch_size, len(queue), max(2, 2 * batch.size))
        if size <= batch.size or not view.predictor.knows(name):
            return 0
        # Doubt a prediction only once no batch this large has run for the interval (which
        # starts long, and falls to the shortest once the model runs faster than predicted).
        seen = self._size_seen.get(name, {})
        last = max((t for b, t in seen.items() if b >= size), default=-math.inf)
        last = max(last, self._size_probed.get(name, -math.inf))
        if view.now - last < self._size_interval.get(name, self.max_size_probe_interval):
            return 0
        return size

    def _pair(
        self, view: DispatchView, queue: ModelQueue, solo: _Batch, other_lane: int
    ) -> _Batch | None:
        """Under load, two batches started together, each sized for the other beside it, when
        the predicted throughput of the pair beats one batch at a time; else ``None``.

        Once the device is saturated, a batch sized to run alone leaves no room for a second
        one beside it (it would be late), so co-location would never start, however much it
        pays: the pair is sized for it from the start.
        """
        cap = queue.spec.max_batch_size
        if len(queue) < solo.skip + 2 * min(cap, solo.size + 1):
            return None  # not enough queued for two batches larger than one alone
        now = view.now
        partner = Running(
            -2, queue.name, min(cap, solo.size), other_lane, now, now + 2 * solo.predicted
        )
        pair = self._batch(view, queue, (partner,))
        if pair.size < 1 or len(queue) < pair.skip + 2 * pair.size:
            return None
        alone = view.predictor.predict(queue.name, pair.size, (), now)
        if not pair.predicted > alone:
            return None  # a predictor blind to co-location cannot tell whether a pair pays
        solo_rate = solo.size / solo.predicted
        pair_rate = 2 * pair.size / pair.predicted
        return pair if pair_rate > (1.0 + self.colocation_gain) * solo_rate else None

    def _feasible_head(
        self, view: DispatchView, queue: ModelQueue, can_start: bool
    ) -> tuple[Request | None, float, bool, bool]:
        """The queue's head after rejecting what cannot make it even alone; its predicted
        latency alone; whether rejection applies; whether to run the head as a probe."""
        now = view.now
        name = queue.name
        predictor = view.predictor
        # "Even alone": co-runners in flight may be gone by the time it runs, so rejecting on
        # a prediction beside them would turn away requests that can still make it.
        enforce = not view.best_effort
        if predictor.knows(name):
            p1 = predictor.predict(name, 1, (), now)
            self._note_alone(name, p1)
        else:
            p1 = 0.0  # a guess is no ground for rejection: only what has already expired goes
        head = queue.peek()
        while head is not None and enforce and now + p1 > head.deadline:
            if p1 > 0 and can_start and self._probe_due(name, now, self._probed):
                return head, p1, enforce, True
            if head.shed:
                reason = "shed for throughput: a larger batch behind it was sent first"
            else:
                reason = f"predicted {p1 * 1e3:.2f} ms even alone"
            view.reject_head(
                queue,
                DeadlineUnmeetable(
                    f"{name}: {reason}; {(head.deadline - now) * 1e3:.2f} ms left to the deadline"
                ),
            )
            head = queue.peek()
        return head, p1, enforce, False

    def _batch(self, view: DispatchView, queue: ModelQueue, running: Sequence[Running]) -> _Batch:
        """The batch to send now (see "Which batch" in the module docstring)."""
        head = queue.peek()
        assert head is not None
        now = view.now
        name = queue.name
        predictor = view.predictor
        predict = predictor.predict
        budget = head.deadline - now
        cap = queue.spec.max_batch_size
        hi = min(cap, len(queue))
        p_hi = predict(name, hi, running, now)
        if p_hi <= budget:
            return _Batch(hi, 0, p_hi, head.deadline)
        if view.best_effort or not predictor.knows(name):
            return _Batch(hi, 0, p_hi, head.deadline)  # the deadline is lost either way
        memo: dict[int, float] = {hi: p_hi}

        def p(b: int) -> float:
            value = memo.get(b)
            if value is None:
                value = memo[b] = predict(name, b, running, now)
            return value

        keep, p_keep = 0, p(1)
        if p_keep <= budget:
            keep, lo, top = 1, 1, hi  # invariant: lo fits, top does not
            while top - lo > 1:
                mid = (lo + top) // 2
                if p(mid) <= budget:
                    lo = mid
                else:
                    top = mid
            keep, p_keep = lo, p(lo)
        kept = _Batch(max(keep, 1), 0, p_keep, head.deadline)
        if not self._shedding:
            return kept
        window = queue.first(min(len(queue), self.lookahead * cap))
        deadlines = [r.deadline for r in window]
        # The largest batch that meets the deadlines of all in it, passing over the heads
        # that could not make it at that size.
        shed: _Batch | None = None
        for b in range(hi, keep, -1):
            skip = bisect.bisect_left(deadlines, now + p(b))
            if len(deadlines) - skip >= b and skip > 0:
                shed = _Batch(b, skip, p(b), deadlines[skip])
                break
        if shed is None:
            return kept
        solo = _SoloCurve(view, name, cap, now)
        if keep:
            keep_met = keep + solo.met(deadlines, keep, now + p_keep)
        else:  # it cannot start beside these co-runners: the plan is to wait for the first
            free = min((r.expected_end for r in running), default=now)
            keep_met = solo.met(deadlines, 0, max(free, now))
        shed_met = shed.size + solo.met(deadlines, shed.skip + shed.size, now + shed.predicted)
        if shed_met > keep_met:
            return shed
        # The plan above serves the rest of the window on a lane of its own, as if no other
        # model wanted the device. Where even that plan loses requests (a backlog), judge by
        # requests met per second of device time: sizing each batch to its head's last
        # moment keeps a backlogged queue running batches of one.
        if (
            self.shed_rate
            and keep
            and keep_met < len(deadlines)
            and shed.size * p_keep > (1.0 + self.colocation_gain) * keep * shed.predicted
        ):
            return shed
        return kept

    def _pays_beside(
        self,
        view: DispatchView,
        queue: ModelQueue,
        batch: _Batch,
        lane: int,
        running: Sequence[Running],
    ) -> bool:
        """Whether to start ``batch`` now beside ``running`` rather than wait for a lane."""
        now = view.now
        if now + batch.predicted > batch.deadline:
            return False  # late beside them: its chance is alone, once one of them ends
        predict = view.predictor.predict
        candidate = Running(
            -1, queue.name, batch.size, lane, now, now + batch.predicted, batch.deadline
        )
        stretched = now
        paired = self._paired
        for r in running:
            left = r.expected_end - now
            if left <= 0:
                continue  # overran its prediction: its end is unknown
            if paired is not None and paired[:2] == (now, r.id) and batch.size <= paired[2]:
                stretched = max(stretched, r.expected_end)
                continue  # sized for this partner
            others = [o for o in running if o is not r]
            alone = predict(r.model, r.batch_size, others, now)
            beside = predict(r.model, r.batch_size, [*others, candidate], now)
            end = now + left * (beside / alone if alone > 0 else 1.0)
            if r.expected_end <= r.deadline < end:
                return False  # it would make a running execution late
            stretched = max(stretched, end)
        first = min(running, key=_expected_end)
        free_at = max(first.expected_end, now)
        rest = [r for r in running if r is not first]
        later = predict(queue.name, batch.size, rest, free_at)
        serial = max(free_at + later, max((r.expected_end for r in rest), default=now))
        concurrent = max(now + batch.predicted, stretched)
        if concurrent - now <= (1.0 - self.colocation_gain) * (serial - now):
            return True  # the device gets through the work sooner with both running
        return self.rescue and free_at + later > batch.deadline  # waiting would cost it


_EVIDENCE = 20.0  # co-located executions' worth of evidence before judging co-location


class _RealizedEfficiency:
    """How much work the device got through per second when batches ran beside others,
    relative to when they ran alone: decayed sums of predicted solo latency against each
    execution's share of device time (latency over the mean number running during it).

    Two batches that each run ``s`` times slower beside the other give ``2 / s``; the
    predictor's bias cancels in the ratio of the co-located to the solo figure.
    """

    __slots__ = ("_co", "_solo", "evidence")

    def __init__(self) -> None:
        self._co = [0.0, 0.0]  # decayed sums: predicted solo seconds, device-time seconds
        self._solo = [0.0, 0.0]
        self.evidence = 0.0  # decayed count of co-located executions

    def add(self, execution: Execution, solo: float) -> None:
        latency = execution.latency
        if not (latency > 0 and solo > 0 and math.isfinite(solo)):
            return
        if execution.solo:
            sums = self._solo
        else:
            sums = self._co
            self.evidence = self.evidence * _DECAY + 1.0
        running = 1.0 + sum(p.overlap for p in execution.overlaps) / latency
        sums[0] = sums[0] * _DECAY + solo
        sums[1] = sums[1] * _DECAY + latency / running

    def gain(self) -> float:
        if not self._co[1] > 0:
            return math.inf
        co = self._co[0] / self._co[1]
        # With nothing seen alone (a saturated device), the predictor's solo latency is the
        # reference as it stands.
        return co / (self._solo[0] / self._solo[1]) if self._solo[1] > 0 else co

    def forget_colocated(self) -> None:
        self._co = [0.0, 0.0]
        self.evidence = 0.0


_DECAY = 0.98


class _SoloCurve:
    """Predicted solo latency by batch size for one model at one moment, computed lazily,
    and the greedy plan the batch decision compares."""

    __slots__ = ("_cap", "_memo", "_name", "_now", "_view")

    def __init__(self, view: DispatchView, name: str, cap: int, now: float) -> None:
        self._view = view
        self._name = name
        self._cap = cap
        self._now = now
        self._memo: dict[int, float] = {}

    def __call__(self, b: int) -> float:
        value = self._memo.get(b)
        if value is None:
            value = self._view.predictor.predict(self._name, b, (), self._now)
            self._memo[b] = value
        return value

    def met(self, deadlines: list[float], i: int, t: float) -> int:
        """Deadlines met if requests ``deadlines[i:]`` are served on one lane from ``t``,
        each batch the largest that meets its most urgent member's deadline."""
        met = 0
        n = len(deadlines)
        p1 = self(1)
        while i < n:
            if t + p1 > deadlines[i]:
                i += 1
                continue
            b = min(n - i, self._cap)
            while b > 1 and t + self(b) > deadlines[i]:
                b -= 1
            met += b
            t += self(b)
            i += b
        return met


def _expected_end(r: Running) -> float:
    return r.expected_end
