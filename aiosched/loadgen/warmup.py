"""What a run left out of its statistics as warm-up: the report's ``config.warmup``.

Two things are never counted. The embedded scheduler's models run warm-up
batches before the first request (:meth:`aiosched.Scheduler.ready`): those
executions are in no run's batch or predictor statistics. And with
``--warmup S`` the load runs for ``S`` seconds before the measured run, at the
same rate (open loop: a run of its own, drained before the measured one) or
with the same users (closed loop: they carry on into the measured window
without a pause); the requests *sent* in those seconds are counted here, not
in the report's figures.
"""

from __future__ import annotations

from typing import Any

from aiosched.loadgen.result import RequestCounts

__all__ = ["warmup_section"]


def warmup_section(
    seconds: float, counts: RequestCounts | None, *, scheduler_warmup: bool
) -> dict[str, Any]:
    """``config.warmup``: the seconds and requests excluded, and how."""
    if seconds > 0:
        excluded = f"requests sent in the first {seconds:g} s (a warm-up at the same load)"
    else:
        excluded = "no requests (--warmup 0)"
    if scheduler_warmup:
        excluded += "; the models' warm-up batches before the run (Scheduler.ready)"
    return {
        "seconds": seconds,
        "requests": (counts or RequestCounts()).as_dict(),
        "excluded": excluded,
    }
