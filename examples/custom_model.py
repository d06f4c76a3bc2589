"""Serve your own torch model: any ``nn.Module`` (or callable) that maps a batch to a batch.

python examples/custom_model.py [requests]

The scheduler stacks the inputs of a batch along a new first dimension, calls
the model once on the lane's thread (under ``torch.inference_mode``), and hands
row ``i`` of the output to the ``i``-th caller. So a model needs only to take
``(batch, *input_shape)`` and return something whose first dimension is the
batch. ``input_shape`` and ``dtype`` at ``register`` let the scheduler check
each input at the call and make the warm-up batches that seed its latency
predictor.
"""

from __future__ import annotations

import asyncio
import sys

import torch
from torch import nn

import aiosched


class TextScorer(nn.Module):
    """A toy model of your own: token ids in, one score per class out."""

    def __init__(self, vocabulary: int = 1000, width: int = 64, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary, width)  # mean of the token embeddings
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (batch, length) int64
        return torch.softmax(self.head(self.embed(tokens)), dim=-1)


LENGTH = 32


async def main(requests: int = 200) -> dict[str, int]:
    torch.manual_seed(0)
    async with aiosched.Scheduler(backend="cpu", lanes=1) as sched:
        sched.register(
            "scorer",
            TextScorer().eval(),
            max_batch_size=16,
            input_shape=(LENGTH,),
            dtype=torch.int64,
            deadline=0.05,  # the default budget for calls that give none (seconds)
        )
        await sched.ready()

        async def one(i: int) -> str:
            await asyncio.sleep(i * 0.001)  # about 1000 requests/s, open loop
            tokens = torch.randint(0, 1000, (LENGTH,))
            try:
                scores = await sched.infer("scorer", tokens)
            except aiosched.DeadlineUnmeetable:
                return "rejected"
            return f"class {int(scores.argmax())}"

        outcomes = await asyncio.gather(*(one(i) for i in range(requests)))
        try:  # a wrong input is refused at the call, before anything is queued
            await sched.infer("scorer", torch.zeros(LENGTH, dtype=torch.float32))
        except aiosched.InvalidInput as exc:
            print(f"refused: {exc}")
        snap = sched.snapshot().models["scorer"]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{requests} requests: {dict(sorted(counts.items()))}")
    print(
        f"met {snap.met_deadline}, missed {snap.missed_deadline}, rejected {snap.rejected}; "
        f"p50 {snap.latency.p50 * 1e3:.1f} ms, p99 {snap.latency.p99 * 1e3:.1f} ms; "
        f"batch sizes {dict(snap.batch_sizes)}"
    )
    return counts


if __name__ == "__main__":
    aiosched.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
