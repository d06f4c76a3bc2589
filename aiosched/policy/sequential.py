"""One execution at a time on the whole device, as Clockwork runs it.

EDF ordering, prediction-sized batches and early rejection, but never two
batches at once: no interference, at the price of head-of-line blocking.
Pair it with ``SoloPredictor(window=10, quantile=0.99)`` for Clockwork's
"p99 of the last ten" estimate.
"""

from __future__ import annotations

from .edf import EdfPolicy

__all__ = ["SequentialPolicy"]


class SequentialPolicy(EdfPolicy):
    name = "sequential"

    def __init__(self) -> None:
        super().__init__(max_concurrency=1)
