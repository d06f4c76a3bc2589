"""The two ways the driver fires sends on time: a loop timer, or a sender thread.

Both walk ``due`` (absolute send times on ``clock``, sorted) and hand every
send that is due to ``start_range(i, j)`` on the loop's thread (sends
``i .. j-1``), then call ``finish()`` once, after the last send or when they
are halted early (the thread sender; the loop sender is halted by the
driver, which finishes by itself then).

- :class:`LoopSender`: one loop timer at a time, set for the next send; when
  it fires, every send that is due starts. Exact under
  :class:`~aiosched.simtime.VirtualTimeLoop`, where the clock jumps to the
  timer; on a real loop asyncio timers fire about 1.3 ms late at p99.
- :class:`ThreadSender`: a thread sleeps (``threading.Event.wait``, so that a
  halt wakes it) until ``spin_s`` before the next send, then spins on the
  clock until the send is due, calling ``time.sleep(0)`` in the spin so the
  loop's thread can take the GIL meanwhile (a pure busy-wait holds it for the
  whole window and starves the loop: p99 lag over 3 ms at 10k requests/s).
  Then it hands every send due by now to the loop in one
  ``call_soon_threadsafe``. On the 2-core development machine this gave a
  p99 lag of 0.1-0.3 ms at 1k-10k requests/s on uvloop
  (``benchmarks/loadgen_lag.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from aiosched.clock import Clock

__all__ = ["EARLY_S", "LoopSender", "ThreadSender"]

EARLY_S = 1e-9
"""A send this close to its time counts as due (float rounding of timers)."""

StartRange = Callable[[int, int], None]


class LoopSender:
    """Fires sends from loop timers (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        due: NDArray[np.float64],
        start_range: StartRange,
        finish: Callable[[], None],
    ) -> None:
        self._loop, self._clock, self._due = loop, clock, due
        self._start_range, self._finish = start_range, finish
        self._next = 0
        self._halted = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick()

    def halt(self) -> None:
        """No more sends (on the loop's thread); ``finish`` is not called."""
        self._halted = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def join(self) -> None:
        """Nothing to wait for: the loop sender has no thread."""

    def _tick(self) -> None:
        self._timer = None
        if self._halted:
            return
        due, n, i = self._due, len(self._due), self._next
        limit = self._clock.now() + EARLY_S
        j = i
        while j < n and due.item(j) <= limit:
            j += 1
        self._next = j
        if j > i:
            self._start_range(i, j)
        if j >= n:
            self._finish()
            return
        delay = due.item(j) - self._clock.now()
        self._timer = self._loop.call_at(self._loop.time() + delay, self._tick)


class ThreadSender:
    """Fires sends from a thread that sleeps, then spins (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        due: NDArray[np.float64],
        start_range: StartRange,
        finish: Callable[[], None],
        spin_s: float,
    ) -> None:
        self._loop, self._clock, self._due = loop, clock, due
        self._start_range, self._finish = start_range, finish
        self._spin_s = spin_s
        self._halt = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name="aiosched-loadgen-sender", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """Stop sending soon (any thread); the thread still calls ``finish``."""
        self._halt.set()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _main(self) -> None:
        loop, clock, halt, spin = self._loop, self._clock, self._halt, self._spin_s
        due, n, i = self._due, len(self._due), 0
        try:
            while i < n:
                target = due.item(i)
                wait = target - clock.now()
                if wait > spin:
                    if halt.wait(wait - spin):
                        return
                    continue
                while clock.now() < target:
                    time.sleep(0)  # spin, but let the loop's thread take the GIL
                if halt.is_set():
                    return
                j = int(np.searchsorted(due, clock.now(), side="right"))
                loop.call_soon_threadsafe(self._start_range, i, j)
                i = j
        except RuntimeError:  # the loop was closed under us
            return
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish)
