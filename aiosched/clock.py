"""The one clock every timestamp comes from.

The scheduler, its backend and the load generator share a single monotonic
clock. The default is ``time.perf_counter``: uvloop's ``loop.time()`` has only
millisecond resolution, too coarse for batches of a few milliseconds. The sim
backend uses the event loop's clock instead, because under
:class:`~aiosched.simtime.VirtualTimeLoop` that clock is virtual.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LoopClock", "PerfClock"]


@runtime_checkable
class Clock(Protocol):
    """A monotonic source of seconds. Safe to call from any thread."""

    def now(self) -> float: ...


class PerfClock:
    """High-resolution wall clock (``time.perf_counter``)."""

    __slots__ = ()

    def now(self) -> float:
        return time.perf_counter()

    def __repr__(self) -> str:
        return "PerfClock()"


class LoopClock:
    """The event loop's own clock: virtual under a virtual-time loop."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def __repr__(self) -> str:
        return f"LoopClock({type(self._loop).__name__})"
