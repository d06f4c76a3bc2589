"""Virtual time for the sim backend: an hour of traffic in seconds, deterministically.

:class:`VirtualTimeLoop` is an ordinary selector event loop whose clock only
moves when the loop would otherwise sleep: instead of blocking until the next
timer, it jumps the clock to that timer. Anything that reacts to real I/O
still works (the selector is polled without blocking first), and when nothing
is scheduled at all the loop blocks for real, so a thread that calls
``call_soon_threadsafe`` still wakes it.

Only code whose passage of time is driven by loop timers belongs under it: the
sim backend and the load generator do; the cpu backend's real threads do not.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run"]

T = TypeVar("T")


class _JumpingSelector:
    """Wraps a real selector; a timed wait becomes a jump of the virtual clock."""

    def __init__(self, loop: VirtualTimeLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._selector = selector

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._selector.select(0)
        if ready:
            return ready
        if timeout is None:
            return self._selector.select(None)
        if timeout > 0:
            self._loop._advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at ``start`` seconds."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        super().__init__(_JumpingSelector(self, selectors.DefaultSelector()))  # type: ignore[arg-type]

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main)
