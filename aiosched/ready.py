"""The queues a policy may serve from, in order of their most urgent request.

A scheduler with a thousand registered models must not look at a thousand
queues for every batch it sends: most are empty, and of the rest a policy
needs only the few whose heads are most urgent. ``ReadyQueues`` keeps the
non-empty queues of warm models in a heap keyed by each queue's head (its
deadline under EDF ordering, its arrival under FIFO ordering; ties go to the
request that arrived first, so queues without deadlines take turns instead of
the first registered starving the rest).

The heap is maintained lazily, as :mod:`asyncio.queues` and the model queues
themselves are: a queue pushes an entry only when a request more urgent than
its indexed head arrives; when its head leaves (dispatched, rejected,
cancelled) the entry stays where it is. So an entry's key is a *lower bound*
on its queue's head: :meth:`ordered` may yield a queue earlier than its head
deserves, never later, and a policy that stops its scan on the bounds it is
given (as EDF does) misses nothing. :meth:`tidy` puts the top right, so the
first queue yielded is exactly the most urgent one.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .queue import ModelQueue

__all__ = ["ReadyQueues"]

# (key of the head when indexed, its arrival sequence, entry version, the queue)
_Entry = tuple[float, int, int, "ModelQueue"]


class ReadyQueues:
    """Non-empty queues of models ready to serve, most urgent head first (see module doc)."""

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[ModelQueue, None] = {}  # queues with a current entry, in entry order

    def empty(self) -> bool:
        """Whether no ready queue holds a request."""
        self.tidy()
        return not self._heap

    def attach(self, queue: ModelQueue) -> None:
        """Serve from ``queue`` from now on (its model is warm)."""
        queue._ready = self
        queue._indexed = None
        head = queue.peek()
        if head is not None:
            self.note(queue, queue.key(head), head.seq)

    def note(self, queue: ModelQueue, key: float, seq: int) -> None:
        """``queue``'s head is now (``key``, ``seq``), more urgent than its indexed one."""
        queue._version += 1
        queue._indexed = key
        self._live[queue] = None
        heapq.heappush(self._heap, (key, seq, queue._version, queue))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def queues(self) -> list[ModelQueue]:
        """Every ready, non-empty queue (in no particular order): O(non-empty queues)."""
        return [q for q in self._live if q]

    def tidy(self) -> None:
        """Drop stale entries at the top and re-key the top queue to its current head."""
        heap = self._heap
        while heap:
            key, seq, version, queue = heap[0]
            if version != queue._version:
                heapq.heappop(heap)  # superseded by a more urgent entry of the same queue
                continue
            head = queue.peek()
            if head is None:
                heapq.heappop(heap)
                self._forget(queue)
                continue
            true_key = queue.key(head)
            if true_key == key and head.seq == seq:
                return
            heapq.heappop(heap)
            queue._version += 1
            queue._indexed = true_key
            heapq.heappush(heap, (true_key, head.seq, queue._version, queue))

    def ordered(self) -> Iterator[tuple[float, ModelQueue]]:
        """``(bound, queue)`` for the ready queues, in order of ``bound``: a lower bound on
        the key of the queue's head (exact for the first after :meth:`tidy`).

        A walk of the heap as a tree, most urgent frontier first, without
        popping: stopping early costs nothing to undo. The heap must not change
        while the walk goes on (no requests are pushed during a dispatch step).
        """
        heap = self._heap
        if not heap:
            return
        size = len(heap)
        frontier = [(heap[0][0], heap[0][1], 0)]
        pop, push = heapq.heappop, heapq.heappush
        while frontier:
            key, _, i = pop(frontier)
            entry = heap[i]
            queue = entry[3]
            if entry[2] == queue._version and queue:
                yield key, queue
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    c = heap[child]
                    push(frontier, (c[0], c[1], child))

    def _forget(self, queue: ModelQueue) -> None:
        queue._indexed = None
        queue._version += 1
        self._live.pop(queue, None)

    def _compact(self) -> None:
        """Rebuild the heap from the current entries (stale ones pile up under churn)."""
        self._heap = [e for e in self._heap if e[2] == e[3]._version]
        heapq.heapify(self._heap)
