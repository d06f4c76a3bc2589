"""A model's pending requests, most urgent first; cancellation-safe.

Ordering is by deadline (EDF) or by arrival (FIFO baselines). A cancelled
request is marked and skipped when it reaches the top (lazy deletion), so
cancelling is O(1) and never reorders the heap; when cancelled entries come
to outnumber the live ones, the heap is rebuilt without them, so a queue that
sees many cancellations does not grow without bound.

A request whose batch failed (or hung) belongs to a *retry group*: the half of
that batch it was put back with. A group only ever leaves together, never
mixed with others, so that a failing batch is bisected until the input that
breaks it runs alone (``log2(n)`` reruns instead of ``n``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import TYPE_CHECKING, Any, Literal

from .spec import ModelSpec
from .telemetry.stats import ModelCounters

if TYPE_CHECKING:
    from .ready import ReadyQueues

__all__ = ["ModelQueue", "Request"]

QUEUED, RUNNING, SETTLED = 0, 1, 2

_seq = itertools.count()


class Request:
    """One input for one model, with an absolute deadline and the future its caller awaits."""

    __slots__ = (
        "arrival",
        "counters",
        "deadline",
        "future",
        "group",
        "model",
        "pushes",
        "seq",
        "shed",
        "state",
        "x",
    )

    def __init__(
        self,
        model: str,
        x: Any,
        deadline: float,
        arrival: float,
        future: asyncio.Future[Any],
        counters: ModelCounters,
    ) -> None:
        self.model = model
        self.x = x
        self.deadline = deadline
        self.arrival = arrival
        self.future = future
        self.counters = counters
        self.seq = next(_seq)
        self.state = QUEUED
        # Set after its batch failed or hung: the requests it must run with (its half of
        # that batch), so that a bad input ends up alone and fails alone.
        self.group: list[Request] | None = None
        self.pushes = 0  # which of its heap entries is current (it may be pushed again)
        # Passed over so that a larger batch behind it could start: if it is rejected later,
        # the error says it was shed for throughput.
        self.shed = False

    def __repr__(self) -> str:
        return f"<Request {self.model} #{self.seq} deadline={self.deadline:.6f} state={self.state}>"


_Entry = tuple[float, int, int, Request]  # (key, arrival sequence, push number, request)


class ModelQueue:
    """Pending requests of one model. ``len()`` counts live (queued, not cancelled) requests."""

    __slots__ = ("_by_deadline", "_heap", "_indexed", "_live", "_ready", "_version", "spec")

    def __init__(self, spec: ModelSpec, order: Literal["deadline", "arrival"] = "deadline") -> None:
        self.spec = spec
        self._by_deadline = order == "deadline"
        self._heap: list[_Entry] = []
        self._live = 0
        # The scheduler's index of ready queues (once the model is warm), the key it holds
        # for this queue's head (None: not in it) and the version of that entry.
        self._ready: ReadyQueues | None = None
        self._indexed: float | None = None
        self._version = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    def key(self, request: Request) -> float:
        """Where ``request`` stands in this queue: its deadline, or its arrival under FIFO."""
        return request.deadline if self._by_deadline else float(request.seq)

    def push(self, request: Request) -> None:
        key = request.deadline if self._by_deadline else float(request.seq)
        request.state = QUEUED
        request.pushes += 1
        heapq.heappush(self._heap, (key, request.seq, request.pushes, request))
        self._live += 1
        ready = self._ready
        if ready is not None:
            indexed = self._indexed
            if indexed is None or key < indexed:
                ready.note(self, key, request.seq)

    def peek(self) -> Request | None:
        heap = self._heap
        while heap:
            _, _, pushes, head = heap[0]
            if head.state == QUEUED and head.pushes == pushes:
                return head
            heapq.heappop(heap)
        return None

    def discard(self, request: Request) -> None:
        """Forget a queued request (its caller went away); it is skipped when it surfaces."""
        if request.state == QUEUED:
            request.state = SETTLED
            self._live -= 1
            if len(self._heap) > 2 * self._live + 64:
                self._compact()

    def pop(self) -> Request:
        head = self.peek()
        if head is None:
            raise IndexError("pop from an empty ModelQueue")
        heapq.heappop(self._heap)
        self._live -= 1
        head.state = RUNNING
        return head

    def pop_batch(self, n: int) -> list[Request]:
        """Up to ``n`` most urgent requests; a retry group only ever leaves on its own."""
        batch: list[Request] = []
        heap = self._heap
        pop = heapq.heappop
        while heap and len(batch) < n:
            _, _, pushes, head = heap[0]
            if head.state != QUEUED or head.pushes != pushes:
                pop(heap)
                continue
            if head.group is not None:
                if batch:
                    break
                return self._pop_group(head.group, n)
            pop(heap)
            head.state = RUNNING
            batch.append(head)
        self._live -= len(batch)
        return batch

    def _pop_group(self, group: list[Request], n: int) -> list[Request]:
        members = sorted((r for r in group if r.state == QUEUED), key=self.key)[:n]
        for r in members:
            r.state = RUNNING  # their heap entries are left behind: stale from now on
        self._live -= len(members)
        return members

    def first(self, k: int) -> list[Request]:
        """The ``k`` most urgent live requests, in order, without removing them.

        A walk of the heap as a tree, most urgent frontier first: O(k log k)
        however deep the queue is (skipped entries cost a step each).
        """
        heap = self._heap
        out: list[Request] = []
        if not heap or k <= 0:
            return out
        frontier = [(heap[0][0], heap[0][1], 0)]
        size = len(heap)
        while frontier and len(out) < k:
            _, _, i = heapq.heappop(frontier)
            _, _, pushes, request = heap[i]
            if request.state == QUEUED and request.pushes == pushes:
                out.append(request)
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    c = heap[child]
                    heapq.heappush(frontier, (c[0], c[1], child))
        return out

    def pop_batch_after(self, skip: int, n: int) -> list[Request]:
        """Up to ``n`` requests after the ``skip`` most urgent, which stay queued."""
        if skip <= 0:
            return self.pop_batch(n)
        passed = self.pop_batch(skip)
        batch = self.pop_batch(n) if len(passed) == skip else []
        for request in passed:
            request.shed = True
            self.push(request)
        return batch

    def pop_all(self) -> list[Request]:
        """Every live request, most urgent first, grouped or not (for failing them all)."""
        batch = [e[3] for e in sorted(self._heap) if e[3].state == QUEUED and e[3].pushes == e[2]]
        for request in batch:
            request.state = RUNNING
        self._heap.clear()
        self._live = 0
        return batch

    def _compact(self) -> None:
        """Rebuild the heap from its live entries (cancellations left the rest behind)."""
        self._heap = [e for e in self._heap if e[3].state == QUEUED and e[3].pushes == e[2]]
        heapq.heapify(self._heap)
