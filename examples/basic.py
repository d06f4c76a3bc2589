"""Serve two small torchvision models on the cpu backend and print what happened.

python examples/basic.py
"""

from __future__ import annotations

import asyncio
import random

import torch

import aiosched
from aiosched.models import torchvision_model


async def main() -> None:
    async with aiosched.Scheduler(backend="cpu", lanes=2) as sched:
        for name in ("mobilenet_v3_small", "squeezenet1_1"):
            model, shape = torchvision_model(name)
            sched.register(name, model, max_batch_size=8, input_shape=shape, dtype=torch.float32)
        await sched.ready()  # warm-up runs seed the latency predictor

        async def client(i: int) -> str:
            name = random.choice(("mobilenet_v3_small", "squeezenet1_1"))
            await asyncio.sleep(random.expovariate(40.0) * i / 4)
            x = torch.randn(3, 224, 224)
            try:
                y = await sched.infer(name, x, deadline=0.25)
            except aiosched.DeadlineUnmeetable as exc:
                return f"{name}: rejected early ({exc})"
            return f"{name}: class {int(y.argmax())}"

        results = await asyncio.gather(*(client(i) for i in range(80)))
        for line in results[:5]:
            print(line)
        snap = sched.snapshot()
        print()
        print(
            f"{'model':20} {'done':>5} {'met':>5} {'missed':>6} {'rejected':>8} {'p50 ms':>7} "
            f"{'p99 ms':>7}  batch sizes"
        )
        for m in snap.models.values():
            print(
                f"{m.name:20} {m.completed:5d} {m.met_deadline:5d} {m.missed_deadline:6d} "
                f"{m.rejected:8d} {m.latency.p50 * 1e3:7.1f} {m.latency.p99 * 1e3:7.1f}  "
                f"{dict(m.batch_sizes)}"
            )
        print(
            f"predictor {snap.predictor}: MAPE {snap.predictor_mape:.1%}, "
            f"p95 APE {snap.predictor_p95_ape:.1%} over {snap.executions} executions"
        )


if __name__ == "__main__":
    aiosched.run(main())
