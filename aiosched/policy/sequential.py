"""One execution at a time on the whole device, as Clockwork runs it.

EDF ordering and prediction-sized batches, a queued request rejected when
it can no longer make its deadline, but never two batches at once: no
interference, at the price of head-of-line blocking. As a baseline it stays
as Clockwork is: no admission test at ``infer()`` and no shedding for
throughput (both can be turned on). Pair it with
``SoloPredictor(window=10, quantile=0.99)`` for Clockwork's "p99 of the last
ten" estimate.
"""

from __future__ import annotations

from .edf import EdfPolicy

__all__ = ["SequentialPolicy"]


class SequentialPolicy(EdfPolicy):
    name = "sequential"

    def __init__(self, *, admission: bool = False, shed: bool = False) -> None:
        super().__init__(max_concurrency=1, admission=admission, shed=shed)
