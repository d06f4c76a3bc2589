"""Executions in flight and recently finished: the co-location history.

Every batch run becomes an :class:`Execution` that records who ran beside it
and for how long (:class:`Peer`), and who was already running when it was
dispatched (``at_dispatch``). Predictors learn from that record; the paper's
point is that the co-location changes *during* an execution, so the realized
overlaps, not the set at dispatch, are what explain its latency.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Execution", "Peer", "Running", "Timeline"]


@dataclass(frozen=True, slots=True)
class Running:
    """An execution in flight; ``expected_end`` is its start plus its predicted latency."""

    id: int
    model: str
    batch_size: int
    lane: int
    start: float
    expected_end: float
    deadline: float = math.inf
    """The earliest deadline among its requests (``inf`` for warm-up runs)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another execution that overlapped this one for ``overlap`` seconds."""

    id: int
    model: str
    batch_size: int
    overlap: float


@dataclass(frozen=True, slots=True)
class Execution:
    """One finished batch run on one lane."""

    id: int
    model: str
    batch_size: int
    lane: int
    start: float
    end: float
    predicted: float
    at_dispatch: tuple[Running, ...]
    overlaps: tuple[Peer, ...]
    ok: bool = True
    warmup: bool = False

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def solo(self) -> bool:
        """Nothing ran beside it at any moment."""
        return not self.overlaps


class Timeline:
    """Tracks executions from dispatch to finish and computes their overlaps.

    ``history`` keeps the last ``keep`` finished executions (the trace the
    predictor experiments replay); overlap bookkeeping itself needs only the
    executions that could still overlap something in flight.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self._ids = itertools.count(1)
        self._in_flight: dict[int, Running] = {}
        self._in_flight_view: tuple[Running, ...] = ()
        # Finished executions that may still overlap one in flight, in finish order.
        self._recent: deque[Execution] = deque()
        self.history: deque[Execution] = deque(maxlen=keep)

    @property
    def in_flight(self) -> tuple[Running, ...]:
        return self._in_flight_view

    def __len__(self) -> int:
        return len(self._in_flight)

    def begin(
        self,
        model: str,
        batch_size: int,
        lane: int,
        start: float,
        predicted: float,
        deadline: float = math.inf,
    ) -> Running:
        running = Running(
            next(self._ids), model, batch_size, lane, start, start + predicted, deadline
        )
        self._in_flight[running.id] = running
        self._in_flight_view = tuple(self._in_flight.values())
        return running

    def abandon(self, running: Running) -> None:
        """Forget an execution that never started (its submission failed)."""
        if self._in_flight.pop(running.id, None) is not None:
            self._in_flight_view = tuple(self._in_flight.values())

    def finish(
        self,
        running: Running,
        start: float,
        end: float,
        *,
        at_dispatch: tuple[Running, ...] = (),
        ok: bool = True,
        warmup: bool = False,
    ) -> Execution:
        """Close ``running`` with its measured ``start``/``end`` and compute its overlaps."""
        del self._in_flight[running.id]
        self._in_flight_view = tuple(self._in_flight.values())
        if end < start:
            end = start
        peers: list[Peer] = []
        for other in self._in_flight.values():
            overlap = end - max(start, other.start)
            if overlap > 0:
                peers.append(Peer(other.id, other.model, other.batch_size, overlap))
        for done in self._recent:
            overlap = min(end, done.end) - max(start, done.start)
            if overlap > 0:
                peers.append(Peer(done.id, done.model, done.batch_size, overlap))
        execution = Execution(
            id=running.id,
            model=running.model,
            batch_size=running.batch_size,
            lane=running.lane,
            start=start,
            end=end,
            predicted=running.expected_end - running.start,
            at_dispatch=at_dispatch,
            overlaps=tuple(peers),
            ok=ok,
            warmup=warmup,
        )
        self._recent.append(execution)
        self.history.append(execution)
        self._prune()
        return execution

    def _prune(self) -> None:
        # A finished execution matters only while something in flight started before it ended.
        if not self._in_flight:
            self._recent.clear()
            return
        oldest_start = min(r.start for r in self._in_flight.values())
        while self._recent and self._recent[0].end <= oldest_start:
            self._recent.popleft()

    def __iter__(self) -> Iterator[Execution]:
        return iter(self.history)
