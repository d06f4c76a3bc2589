"""Running a program on the best available event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed (opt out with ``use_uvloop=False`` or AIOSCHED_UVLOOP=0)."""
    if use_uvloop is None:
        use_uvloop = os.environ.get("AIOSCHED_UVLOOP", "1") != "0"
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Like ``asyncio.run``, on uvloop when it is installed (unless opted out)."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)
