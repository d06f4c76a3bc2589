"""Hypothesis on the cpu backend (issue 10): a tiny torch module whose output is a tensor or
a nesting of tuples, lists and dicts of tensors, served to concurrent callers in batches
of whatever sizes the scheduler forms, on one or two lanes. Each caller gets exactly its
own row of every tensor, the same as the module gives for its sample alone; an output
that cannot be split by rows fails every caller with a ModelError."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiosched
from aiosched.errors import ModelOutputError

WIDTH = 4  # features the module computes per sample; leaves take slices of them


class Pair(NamedTuple):
    a: Any
    b: Any


@dataclass(frozen=True)
class Leaf:
    """A batched tensor in the output: feature ``k`` of the module (scaled), then ``dims``."""

    k: int
    dims: tuple[int, ...]


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    some = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        some,
        some.map(tuple),
        st.builds(Pair, children, children),
        st.dictionaries(st.sampled_from("xyz"), children, min_size=1, max_size=3),
    )


leaves = st.builds(
    Leaf, st.integers(0, WIDTH - 1), st.lists(st.integers(1, 3), max_size=2).map(tuple)
)
structures = st.recursive(leaves, _containers, max_leaves=5)


class Heads(torch.nn.Module):
    """A linear layer with small integer weights (exact in float32 at any batch size),
    whose features are laid out in the nested structure ``spec``."""

    def __init__(self, spec: Any, broken: str | None) -> None:
        super().__init__()
        self.spec = spec
        self.broken = broken
        self.lin = torch.nn.Linear(2, WIDTH, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.arange(2 * WIDTH, dtype=torch.float32).view(WIDTH, 2))

    def forward(self, x: torch.Tensor) -> Any:
        h = self.lin(x)
        out = self._build(self.spec, h, [0])
        if self.broken == "extra_row":
            return [out, torch.zeros(x.shape[0] + 1)]
        if self.broken == "scalar":
            return (out, h.sum())
        if self.broken == "number":
            return {"out": out, "n": 3}
        return out

    def _build(self, spec: Any, h: torch.Tensor, count: list[int]) -> Any:
        if isinstance(spec, Leaf):
            count[0] += 1
            col = h[:, spec.k] * count[0] + count[0]  # every leaf differs, and every row
            return col.reshape(-1, *[1] * len(spec.dims)).repeat(1, *spec.dims)
        if isinstance(spec, dict):
            return {key: self._build(v, h, count) for key, v in spec.items()}
        items = [self._build(v, h, count) for v in spec]
        return Pair(*items) if isinstance(spec, Pair) else type(spec)(items)


def _row(out: Any) -> Any:
    """A batch-of-one output without its batch dimension."""
    if isinstance(out, torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        return {k: _row(v) for k, v in out.items()}
    items = [_row(v) for v in out]
    return Pair(*items) if isinstance(out, Pair) else type(out)(items)


def _same(got: Any, want: Any) -> bool:
    if type(got) is not type(want):
        return False
    if isinstance(want, torch.Tensor):
        return got.shape == want.shape and torch.equal(got, want)
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=structures,
    callers=st.integers(2, 8),
    max_batch=st.integers(1, 4),
    lanes=st.integers(1, 2),
    broken=st.sampled_from([None, None, None, "extra_row", "scalar", "number"]),
)
def test_each_caller_gets_its_own_row_in_batches_of_any_size(
    spec: Any, callers: int, max_batch: int, lanes: int, broken: str | None
) -> None:
    module = Heads(spec, broken).eval()
    xs = [torch.tensor([float(i + 1), float(2 * i - 3)]) for i in range(callers)]

    async def main() -> None:
        async with aiosched.Scheduler(
            "cpu", lanes=lanes, policy="fifo", best_effort=True, predictor="solo"
        ) as sched:
            sched.register("h", module, max_batch_size=max_batch, input_shape=(2,), warmup=False)
            ys = await asyncio.gather(
                *(sched.infer("h", x, deadline=30.0) for x in xs), return_exceptions=True
            )
            snap = sched.snapshot().models["h"]
        assert snap.submitted == callers
        if broken is not None:
            for y in ys:
                assert isinstance(y, aiosched.ModelError), y
                assert isinstance(y.__cause__, ModelOutputError), y.__cause__
            assert snap.failed == callers
            return
        assert snap.completed == callers
        with torch.inference_mode():
            for x, y in zip(xs, ys, strict=True):
                want = _row(module(x.unsqueeze(0)))  # the module on this sample alone
                assert _same(y, want), (spec, x, y, want)

    asyncio.run(main())
