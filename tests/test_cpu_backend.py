"""The scheduler on the cpu backend with small torch models: real threads, real time."""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiosched
from aiosched.backends import cpu as cpu_module
from aiosched.backends._lanes import LaneThread
from aiosched.backends.base import LaneFailure
from aiosched.backends.cpu import split_outputs
from aiosched.errors import ModelOutputError
from aiosched.models import ZOO, tiny_cnn, tiny_mlp, torchvision_model


class Pair(NamedTuple):
    a: Any
    b: Any


def test_results_match_running_the_model_alone() -> None:
    model = tiny_mlp()

    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=2) as sched:
            sched.register("mlp", model, max_batch_size=8, input_shape=(16,), dtype=torch.float32)
            await sched.ready()
            xs = [torch.randn(16) for _ in range(40)]
            ys = await asyncio.gather(*(sched.infer("mlp", x, deadline=5.0) for x in xs))
            with torch.inference_mode():
                expected = model(torch.stack(xs))
            for y, e in zip(ys, expected, strict=True):
                torch.testing.assert_close(y, e)
            snap = sched.snapshot()
            m = snap.models["mlp"]
            assert m.completed == 40 and m.pending == 0
            assert max(m.batch_sizes) > 1
            assert sched.predictor.knows("mlp")

    asyncio.run(main())


def test_two_models_run_on_two_lanes_at_once() -> None:
    async def main() -> None:
        # fifo uses every free lane; the default policy, on two lanes that take both cores,
        # starts one at a time until running beside has been seen to pay.
        async with aiosched.Scheduler("cpu", lanes=2, policy="fifo", best_effort=True) as sched:
            sched.register("cnn", tiny_cnn(), max_batch_size=4, input_shape=(3, 32, 32))
            sched.register("mlp", tiny_mlp(), max_batch_size=4, input_shape=(16,))
            await sched.ready()
            calls = [sched.infer("cnn", torch.randn(3, 32, 32), deadline=5.0) for _ in range(16)]
            calls += [sched.infer("mlp", torch.randn(16), deadline=5.0) for _ in range(16)]
            await asyncio.gather(*calls)
            lanes = {e.lane for e in sched.timeline if not e.warmup}
            assert lanes == {0, 1}

    asyncio.run(main())


def test_a_raising_model_fails_only_its_bad_input() -> None:
    def picky(batch: torch.Tensor) -> torch.Tensor:
        if bool((batch < 0).any()):
            raise ValueError("negative input")
        return batch + 1

    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1) as sched:
            sched.register("p", picky, max_batch_size=8, input_shape=(1,), warmup=False)
            xs = [torch.tensor([float(i)]) for i in (1, 2, -3, 4)]
            results = await asyncio.gather(
                *(sched.infer("p", x, deadline=5.0) for x in xs), return_exceptions=True
            )
            assert isinstance(results[2], aiosched.ModelError)
            assert isinstance(results[2].__cause__, ValueError)
            for i in (0, 1, 3):
                assert torch.equal(results[i], xs[i] + 1)

    asyncio.run(main())


def test_a_model_returning_the_wrong_number_of_rows_fails_typed() -> None:
    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1) as sched:
            sched.register("sum", lambda b: b.sum(), input_shape=(2,), warmup=False)
            with pytest.raises(aiosched.ModelError):
                await sched.infer("sum", torch.zeros(2), deadline=5.0)

    asyncio.run(main())


# Guards a test that hung forever before its fix; no wall-clock assertion.
_HANG_GUARD_S = 60.0


def test_sys_exit_or_keyboard_interrupt_in_a_model_fails_its_caller_and_the_lane_lives() -> None:
    # Regression: a BaseException from the model ended the lane thread, so its callers
    # never resolved and aclose() never returned.
    def fragile(batch: torch.Tensor) -> torch.Tensor:
        if bool((batch == 1).any()):
            sys.exit(1)
        if bool((batch == 2).any()):
            raise KeyboardInterrupt
        return batch + 1

    async def main() -> None:
        sched = aiosched.Scheduler("cpu", lanes=1, policy="fifo", best_effort=True)
        await sched.start()
        try:
            sched.register("f", fragile, max_batch_size=4, input_shape=(1,), warmup=False)
            xs = [torch.tensor([float(v)]) for v in (0, 1, 2, 3)]
            async with asyncio.timeout(_HANG_GUARD_S):
                results = await asyncio.gather(
                    *(sched.infer("f", x, deadline=30.0) for x in xs), return_exceptions=True
                )
                for i, cause in ((1, SystemExit), (2, KeyboardInterrupt)):
                    assert isinstance(results[i], aiosched.ModelError)
                    assert isinstance(results[i].__cause__, cause)
                for i in (0, 3):
                    assert torch.equal(results[i], xs[i] + 1)
                # The lane still runs.
                y = await sched.infer("f", torch.tensor([5.0]), deadline=30.0)
                assert y.tolist() == [6.0]
        finally:
            await asyncio.wait_for(sched.aclose(), _HANG_GUARD_S)

    asyncio.run(main())


def test_a_lane_thread_answers_every_job_whatever_escapes_it() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        lane = LaneThread(0, loop, name="aiosched-test", fault=lambda exc: ("fault", exc))
        broken = LaneThread(1, loop, _fail_setup, name="aiosched-test", fault=lambda e: e)
        replies: list[Any] = []
        failures: list[Any] = []

        def escape() -> Any:
            raise SystemExit(2)

        lane.submit(escape, replies.append)
        lane.submit(lambda: "ok", replies.append)
        broken.submit(lambda: "never", failures.append)
        broken.submit(lambda: "never", failures.append)
        async with asyncio.timeout(_HANG_GUARD_S):
            # A lane's replies are posted before its exit, so they are in once stop() returns.
            await lane.stop()
            await broken.stop()
        return replies, failures

    replies, failures = asyncio.run(main())
    assert replies[0][0] == "fault" and isinstance(replies[0][1], SystemExit)
    assert replies[1] == "ok"
    assert len(failures) == 2
    for reply in failures:
        assert isinstance(reply, LaneFailure) and isinstance(reply.__cause__, RuntimeError)


def _fail_setup() -> None:
    raise RuntimeError("no such device")


def test_a_failed_start_stops_the_lanes_it_had_started(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: a lane thread that failed to start left the ones before it running.
    real = cpu_module.LaneThread

    def second_fails(index: int, *args: Any, **kwargs: Any) -> LaneThread:
        if index == 1:
            raise RuntimeError("can't start new thread")
        return real(index, *args, **kwargs)

    monkeypatch.setattr(cpu_module, "LaneThread", second_fails)
    backend = aiosched.CpuBackend(lanes=1, threads_per_lane=1)
    backend.lanes = 2  # set past the cores' check: this machine may have one core

    async def main() -> None:
        with pytest.raises(RuntimeError, match="new thread"):
            await backend.start(aiosched.PerfClock())

    asyncio.run(main())
    assert not [t.name for t in threading.enumerate() if t.name.startswith("aiosched-cpu")]


def test_close_joins_lane_threads_and_cancellation_does_not_leak() -> None:
    async def main() -> None:
        sched = aiosched.Scheduler("cpu", lanes=2)
        await sched.start()
        sched.register("cnn", tiny_cnn(), max_batch_size=2, input_shape=(3, 32, 32), warmup=False)
        tasks = [
            asyncio.create_task(sched.infer("cnn", torch.randn(3, 32, 32), deadline=5.0))
            for _ in range(10)
        ]
        await asyncio.sleep(0)
        for t in tasks[::2]:
            t.cancel()
        await sched.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        snap = sched.snapshot().models["cnn"]
        assert snap.pending == 0
        assert snap.completed + snap.cancelled == 10
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == snap.cancelled

    asyncio.run(main())  # the autouse fixture checks that no lane thread is left


def test_split_outputs_shapes() -> None:
    t = torch.arange(6).reshape(3, 2)
    assert [r.tolist() for r in split_outputs(t, 3)] == [[0, 1], [2, 3], [4, 5]]
    d = split_outputs({"a": t, "b": t[:, 0]}, 3)
    assert d[1]["a"].tolist() == [2, 3] and d[1]["b"].item() == 2
    tup = split_outputs((t, t[:, 1]), 3)
    assert tup[2][1].item() == 5
    # List in, list out: only where the model was given its samples as a list.
    assert split_outputs(["x", "y"], 2, samples_as_list=True) == ["x", "y"]
    with pytest.raises(ValueError):
        split_outputs(t, 4)
    with pytest.raises(ValueError):
        split_outputs(object(), 1)


def test_a_list_of_batched_heads_is_split_per_head_whatever_the_batch_size() -> None:
    # Regression: a list whose length happened to equal the batch size was taken as one
    # item per row, so the first caller of a batch of two got head_a of both rows.
    batch = torch.tensor([[1.0], [2.0]])
    rows = split_outputs([batch * 10, batch * 100], 2)
    assert [[h.tolist() for h in row] for row in rows] == [[[10.0], [100.0]], [[20.0], [200.0]]]
    three = torch.tensor([[1.0], [2.0], [3.0]])
    assert split_outputs([three, three], 3)[2][1].tolist() == [3.0]
    assert len(split_outputs([batch[:1], batch[:1]], 1)) == 1


def test_outputs_that_cannot_be_split_by_rows_are_model_output_errors() -> None:
    t = torch.zeros(2, 3)
    cases: list[tuple[Any, str]] = [
        ((t, "label"), r"model output\[1\] is a str"),
        ({"logits": t, "extra": t[:1]}, r"model output\['extra'\] has shape \(1, 3\)"),
        (torch.tensor(1.0), "0-d"),
        ([], "holds no tensor"),
        (None, "NoneType"),
        (["a", "b"], "is a str"),  # a list of two for a batch of two stacked tensors: no rows
    ]
    for out, message in cases:
        with pytest.raises(ModelOutputError, match=message):
            split_outputs(out, 2)
    with pytest.raises(ModelOutputError, match="one output per sample"):
        split_outputs(["a"], 2, samples_as_list=True)


def test_named_tuples_and_struct_sequences_keep_their_type() -> None:
    pair = Pair(torch.arange(2), torch.arange(4).reshape(2, 2))
    rows = split_outputs(pair, 2)
    assert isinstance(rows[1], Pair) and rows[1].b.tolist() == [2, 3]
    top = torch.tensor([[3.0, 1.0], [0.0, 5.0]]).max(dim=1)
    rows = split_outputs(top, 2)
    assert type(rows[1]) is type(top) and rows[1].values.item() == 5.0


def test_callers_in_one_batch_each_get_their_row_of_every_head() -> None:
    def heads(batch: torch.Tensor) -> list[torch.Tensor]:
        return [batch * 10, batch * 100]

    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1, policy="fifo", best_effort=True) as sched:
            sched.register("h", heads, max_batch_size=2, input_shape=(1,), warmup=False)
            alice, bob = torch.tensor([1.0]), torch.tensor([2.0])
            a, b = await asyncio.gather(
                sched.infer("h", alice, deadline=5.0), sched.infer("h", bob, deadline=5.0)
            )
            assert [h.tolist() for h in a] == [[10.0], [100.0]]
            assert [h.tolist() for h in b] == [[20.0], [200.0]]
            assert dict(sched.snapshot().models["h"].batch_sizes) == {2: 1}

    asyncio.run(main())


def test_a_model_with_the_wrong_rows_fails_each_caller_with_a_model_error() -> None:
    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1, policy="fifo", best_effort=True) as sched:
            sched.register("three", lambda b: torch.zeros(3, 1), max_batch_size=2, warmup=False)
            results = await asyncio.gather(
                *(sched.infer("three", torch.zeros(1), deadline=5.0) for _ in range(2)),
                return_exceptions=True,
            )
            for r in results:
                assert isinstance(r, aiosched.ModelError)
                assert isinstance(r.__cause__, ModelOutputError)
                assert "3 rows" in str(r)
            assert sched.snapshot().models["three"].failed == 2

    asyncio.run(main())


def test_a_model_on_plain_samples_answers_list_in_list_out() -> None:
    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1, policy="fifo", best_effort=True) as sched:
            sched.register("upper", lambda xs: [x.upper() for x in xs], max_batch_size=4)
            ys = await asyncio.gather(*(sched.infer("upper", w, deadline=5.0) for w in "abc"))
            assert ys == ["A", "B", "C"]

    asyncio.run(main())


@dataclass(frozen=True)
class Leaf:
    """A batched tensor in a generated output: the batch, then ``dims``."""

    dims: tuple[int, ...]


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    some = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        some,
        some.map(tuple),
        st.builds(Pair, children, children),
        st.dictionaries(st.text("abc", min_size=1, max_size=2), children, min_size=1, max_size=3),
    )


structures = st.recursive(
    st.lists(st.integers(1, 3), max_size=2).map(lambda d: Leaf(tuple(d))), _containers, max_leaves=6
)


def _build(spec: Any, first: torch.Tensor, counter: list[int]) -> Any:
    """The output for a batch whose samples' first elements are ``first`` (one per row)."""
    if isinstance(spec, Leaf):
        k = counter[0] = counter[0] + 1
        rows = first * k + k  # every leaf differs, and every row of it
        return rows.reshape(-1, *[1] * len(spec.dims)).repeat(1, *spec.dims)
    if isinstance(spec, dict):
        return {key: _build(v, first, counter) for key, v in spec.items()}
    items = [_build(v, first, counter) for v in spec]
    return Pair(*items) if isinstance(spec, Pair) else type(spec)(items)


def _same(got: Any, want: Any) -> bool:
    if type(got) is not type(want):
        return False
    if isinstance(want, torch.Tensor):
        return torch.equal(got, want)
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=structures, n=st.integers(1, 6))
def test_each_caller_gets_exactly_its_row_of_any_nested_output(spec: Any, n: int) -> None:
    def model(batch: torch.Tensor) -> Any:
        return _build(spec, batch[:, 0], [0])

    xs = [torch.tensor([float(i + 1), -1.0]) for i in range(n)]

    async def main() -> None:
        async with aiosched.Scheduler("cpu", lanes=1, policy="fifo", best_effort=True) as sched:
            sched.register("m", model, max_batch_size=n, input_shape=(2,), warmup=False)
            ys = await asyncio.gather(*(sched.infer("m", x, deadline=30.0) for x in xs))
            assert dict(sched.snapshot().models["m"].batch_sizes) == {n: 1}  # one batch of n
        for x, y in zip(xs, ys, strict=True):
            want = _build(spec, x[:1], [0])  # the model on this sample alone...
            want = _row(want)  # ...without its batch dimension of one
            assert _same(y, want), (spec, n, x, y, want)

    asyncio.run(main())


def _row(out: Any) -> Any:
    """A batch-of-one output without its batch dimension (built independently of the code)."""
    if isinstance(out, torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        return {k: _row(v) for k, v in out.items()}
    items = [_row(v) for v in out]
    return Pair(*items) if isinstance(out, Pair) else type(out)(items)


def test_zoo_builds_models_without_downloads() -> None:
    model, shape = torchvision_model("squeezenet1_1")
    assert shape == (3, 224, 224)
    with torch.inference_mode():
        out = model(torch.zeros(1, *shape))
    assert out.shape == (1, 1000)
    assert {"resnet18", "mobilenet_v3_small", "resnet50"} <= set(ZOO)
    with pytest.raises(aiosched.InvalidConfig):
        torchvision_model("nonesuch")
