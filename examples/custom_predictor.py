"""A predictor of your own, checked against aiosched's contract and used by a scheduler.

python examples/custom_predictor.py

``SlowdownPredictor`` keeps, per model and batch size, an exponential moving
average of the latencies it has seen alone, and multiplies it by a fixed
``slowdown`` for every batch running beside it. That is cruder than the
built-in ones, but it is all a predictor needs: ``predict``, ``_learn``,
``knows`` and (to take profiles) ``observe``. Its settings are kept under the
constructor's argument names, so ``params()``, ``clone()`` and ``repr()`` come
from the base class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiosched
from aiosched import simtime
from aiosched.testing import check_predictor


class SlowdownPredictor(aiosched.Predictor):
    """Solo latency (an EWMA per model and batch size) times ``slowdown`` per co-runner."""

    name = "slowdown"

    def __init__(self, slowdown: float = 1.5, rate: float = 0.2, default: float = 0.01) -> None:
        super().__init__()
        self.slowdown = slowdown
        self.rate = rate
        self.default = default
        self._solo: dict[tuple[str, int], float] = {}

    def predict(
        self, model: str, batch_size: int, running: Sequence[aiosched.Running], now: float
    ) -> float:
        solo = self._solo.get((model, batch_size))
        if solo is None:
            # Never seen at this size: scale the nearest smaller size seen, or guess.
            seen = [b for (m, b) in self._solo if m == model and b < batch_size]
            b = max(seen, default=0)
            solo = self._solo[(model, b)] * batch_size / b if b else self.default * batch_size
        return solo * self.slowdown ** len(running)

    def _learn(self, execution: aiosched.Execution) -> None:
        if not execution.ok or execution.latency <= 0:
            return
        # Undo the assumed slowdown, so that overlapped runs teach the solo latency too.
        at_dispatch = len(execution.at_dispatch)
        self.observe(
            execution.model, execution.batch_size, execution.latency / self.slowdown**at_dispatch
        )

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        key = (model, batch_size)
        old = self._solo.get(key)
        self._solo[key] = latency if old is None else old + self.rate * (latency - old)

    def knows(self, model: str) -> bool:
        return any(m == model for m, _ in self._solo)

    def forget(self, model: str) -> None:
        # Unregistered: a model registered later under this name may be another one.
        for key in [k for k in self._solo if k[0] == model]:
            del self._solo[key]


async def serve(predictor: aiosched.Predictor) -> None:
    """Two models, 400 requests/s for two seconds, on the simulated device in virtual time."""
    async with aiosched.Scheduler(backend="sim", lanes=2, predictor=predictor) as sched:
        for name in ("resnet50", "vgg19"):
            sched.register(name, max_batch_size=8)
        await sched.ready()

        async def client(i: int) -> bool:
            await asyncio.sleep(i / 400)
            try:
                await sched.infer(("resnet50", "vgg19")[i % 2], 0.0, deadline=0.05)
            except aiosched.DeadlineUnmeetable:
                return False
            return True

        served = sum(await asyncio.gather(*(client(i) for i in range(800))))
        err = sched.predictor.error()
        print(f"{served}/800 requests answered; prediction error {err.mape:.1%} (MAPE)")


def main() -> None:
    predictor = SlowdownPredictor(slowdown=1.4)
    check_predictor(predictor)  # raises AssertionError naming the broken clause
    print(f"{predictor!r} keeps the predictor contract")
    simtime.run(serve(predictor))


if __name__ == "__main__":
    main()
