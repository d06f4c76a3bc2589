"""Co-location features: who ran beside an execution, as numbers a linear model can use.

A *co-location* is a set of batches running beside a target batch, each a
(model, batch size) pair. :class:`FeatureSpace` turns one into a sparse
feature vector ``phi``:

- per co-runner model ``c`` a block of three features, ``[1, sqrt(b), b]``
  summed over that model's co-runners: a per-model quadratic in ``sqrt(b)``,
  which follows how a co-runner's pressure and the target's slowdown grow
  with its batch size (on the sim backend's ground truth the worst error of
  this basis is 0.001 in slowdown terms, against 0.013 for ``[1, sqrt(b)]``);
- two pairwise terms, the number of co-runner pairs and the sum over pairs of
  ``sqrt(b_j * b_k)``, for the super-linear effect of several co-runners at
  once (three lanes and more);
- optionally a constant bias feature (the coarse regressions use one).

Blocks are assigned as models appear, so the dimension grows; learners grow
with it (:meth:`aiosched.predict.learners.RLS.grow`). (The coarse predictors
share one such space; the ``overlap`` predictor lays the same features out
per target model, over only the co-runners that target has seen.)

:func:`peer_spans` places each recorded :class:`~aiosched.timeline.Peer`
overlap of a finished execution in time, and :func:`realized_segments` cuts
the execution into the stretches during which its set of co-runners was
constant: the fine-grained view the paper argues for. The coarse view is
simply :meth:`FeatureSpace.phi` of the co-runners at dispatch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..timeline import Execution, Peer

__all__ = [
    "BLOCK",
    "FeatureSpace",
    "Segment",
    "Span",
    "SparseVector",
    "peer_spans",
    "realized_segments",
]

BLOCK = 3
"""Features per co-runner model: ``[1, sqrt(b), b]``."""

SparseVector = dict[int, float]

_SQRT = [math.sqrt(b) for b in range(65)]


def _sqrt(b: int) -> float:
    return _SQRT[b] if 0 <= b < len(_SQRT) else math.sqrt(b)


class FeatureSpace:
    """Maps co-locations to sparse feature vectors; one instance per predictor.

    Layout: ``[bias?] [pairs, sum sqrt(b_j b_k)] [block of model 1] [block of model 2] ...``.
    """

    def __init__(self, bias: bool = False) -> None:
        self.bias = bias
        self.pair_index = 1 if bias else 0
        self._blocks: dict[str, int] = {}
        self.dim = self.pair_index + 2

    def block(self, model: str) -> int:
        """Index of ``model``'s first feature, assigning a new block on first sight."""
        index = self._blocks.get(model)
        if index is None:
            index = self._blocks[model] = self.dim
            self.dim += BLOCK
        return index

    def forget(self, model: str) -> None:
        """Unbind ``model`` from its block: a model of that name later gets a new one."""
        self._blocks.pop(model, None)

    def known_block(self, model: str) -> int | None:
        """Index of ``model``'s block, or ``None`` if it never appeared (no new block)."""
        return self._blocks.get(model)

    def phi(
        self,
        corunners: Iterable[tuple[str, int]],
        out: SparseVector | None = None,
        weight: float = 1.0,
    ) -> SparseVector:
        """Add ``weight * phi(corunners)`` to ``out`` (a new vector by default) and return it."""
        vec: SparseVector = {} if out is None else out
        if self.bias:
            vec[0] = vec.get(0, 0.0) + weight
        roots: list[float] = []
        for model, b in corunners:
            i = self.block(model)
            r = _sqrt(b)
            vec[i] = vec.get(i, 0.0) + weight
            vec[i + 1] = vec.get(i + 1, 0.0) + weight * r
            vec[i + 2] = vec.get(i + 2, 0.0) + weight * b
            roots.append(r)
        if len(roots) > 1:
            p = self.pair_index
            pairs, cross = _pair_terms(roots)
            vec[p] = vec.get(p, 0.0) + weight * pairs
            vec[p + 1] = vec.get(p + 1, 0.0) + weight * cross
        return vec


def _pair_terms(roots: list[float]) -> tuple[float, float]:
    n = len(roots)
    total = sum(roots)
    squares = sum(r * r for r in roots)
    return n * (n - 1) / 2.0, (total * total - squares) / 2.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of an execution with a constant set of co-runners.

    ``fraction`` is its share of the execution's latency; ``peers`` the
    co-runners active through it; ``known`` how many of those were already
    running at dispatch (the rest started later: what a predictor could not
    have known).
    """

    fraction: float
    peers: tuple[Peer, ...]
    known: int


class Span(NamedTuple):
    """Where a peer ran inside an execution: ``[start, end)`` on the scheduler's clock.

    ``known`` says it was already running at dispatch. (A named tuple: one is
    made per peer per learnt execution, and tuples are the cheapest to make.)
    """

    start: float
    end: float
    peer: Peer
    known: bool


def peer_spans(execution: Execution, starts: Mapping[int, float]) -> list[Span]:
    """Place each recorded overlap of ``execution`` in time.

    A peer's overlap gives its length, not its position. Peers running at
    dispatch overlap from the start; peers that started later and were still
    running at the end overlap up to the end; peers that started and finished
    inside are placed by their start time from ``starts`` (id -> start of
    executions finished before this one), else assumed to end with it.
    """
    start, end = execution.start, execution.end
    at_dispatch = {r.id for r in execution.at_dispatch}
    spans: list[Span] = []
    for peer in execution.overlaps:
        known = peer.id in at_dispatch
        if known:
            a = start
        else:
            s = starts.get(peer.id)
            a = max(start, s) if s is not None else end - peer.overlap
        b = min(end, a + peer.overlap)
        if b > a:
            spans.append(Span(a, b, peer, known))
    return spans


def realized_segments(execution: Execution, starts: Mapping[int, float]) -> list[Segment]:
    """Cut ``execution`` into stretches of constant co-location (:func:`peer_spans` placed)."""
    start, end = execution.start, execution.end
    latency = end - start
    if latency <= 0:
        return []
    spans = peer_spans(execution, starts)
    if not spans:
        return [Segment(1.0, (), 0)]
    cuts = sorted({start, end, *(s.start for s in spans), *(s.end for s in spans)})
    segments: list[Segment] = []
    for t0, t1 in itertools.pairwise(cuts):
        if t1 <= t0:
            continue
        mid = (t0 + t1) / 2
        active = [s for s in spans if s.start < mid < s.end]
        segments.append(
            Segment(
                (t1 - t0) / latency,
                tuple(s.peer for s in active),
                sum(1 for s in active if s.known),
            )
        )
    return segments
