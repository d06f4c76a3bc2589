"""Lane threads: one OS thread per lane, fed jobs from the loop, answering on the loop.

Shared by the cpu and cuda backends. A job runs entirely on its lane's
thread; its result is handed back with ``call_soon_threadsafe``, so the event
loop never waits on a model.

Nothing a job raises ends the thread: a thread that died would leave its
caller waiting for a reply that never comes, and ``stop()`` (so the
scheduler's ``aclose()``) waiting for jobs that never run. Jobs return their
own errors as results; whatever escapes one anyway (``BaseException``
included) becomes that job's reply through ``fault``, and a lane whose setup
failed answers every job with a :class:`~aiosched.backends.base.LaneFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from .base import LaneFailure

__all__ = ["LaneThread"]

_STOP = object()


class LaneThread:
    """A daemon thread that runs jobs in order and posts each result back to the loop."""

    def __init__(
        self,
        index: int,
        loop: asyncio.AbstractEventLoop,
        setup: Callable[[], None] | None = None,
        name: str = "aiosched-lane",
        *,
        fault: Callable[[BaseException], Any],
    ) -> None:
        self.index = index
        self._loop = loop
        self._setup = setup
        self._fault = fault
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._exited: asyncio.Future[None] = loop.create_future()
        self._stopping = False
        self._abandoned = False
        self._thread = threading.Thread(target=self._main, name=f"{name}-{index}", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        """Run ``job()`` on the lane; ``reply(result)`` is called on the loop thread."""
        self._jobs.put((job, reply))

    def call(self, job: Callable[[], Any]) -> None:
        """Run ``job()`` on the lane after what is queued there, for its effect alone
        (housekeeping of state the lane's thread owns); nothing is posted back."""
        self._jobs.put((job, _ignore))

    def _main(self) -> None:
        broken: BaseException | None = None
        try:
            if self._setup is not None:
                try:
                    self._setup()
                except BaseException as exc:  # answer every job with it, rather than exit
                    broken = LaneFailure(f"lane {self.index} failed to start: {exc!r}")
                    broken.__cause__ = exc
            while True:
                item = self._jobs.get()
                if item is _STOP:
                    return
                job, reply = item
                # Let go of the job (it holds the model, which may be unloaded meanwhile,
                # and the inputs) before answering: the thread must not keep it while idle.
                item = None
                if broken is not None:
                    result = self._fault(broken)
                else:
                    try:
                        result = job()  # jobs return their own errors as results
                    except BaseException as exc:
                        result = self._fault(exc)
                job = None
                if reply is not _ignore:
                    self._post(reply, result)
                reply = result = None
        finally:
            self._post(_resolve, self._exited)

    def _post(self, callback: Callable[[Any], None], arg: Any) -> None:
        # A closed loop raises RuntimeError: then nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, arg)

    def stop_nowait(self) -> None:
        """Ask the thread to end after its queued jobs, without waiting for it."""
        if not self._stopping:
            self._stopping = True
            self._jobs.put(_STOP)

    def abandon(self) -> None:
        """The lane is stuck in a job that may never return: end it when (if) that job
        does, and let :meth:`stop` return without waiting for it (the thread is a daemon:
        it cannot outlive the process)."""
        self._abandoned = True
        self.stop_nowait()

    async def stop(self) -> None:
        """Finish queued jobs, then end the thread; returns once it has exited (at once for
        an abandoned lane)."""
        self.stop_nowait()
        if self._abandoned:
            return
        if self._thread.is_alive():
            await asyncio.shield(self._exited)
        self._thread.join()


def _ignore(result: Any) -> None:
    pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
