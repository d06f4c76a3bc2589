"""The scheduler on the cpu backend with small torch models: real threads, real time."""

from __future__ import annotations

import asyncio

import pytest
import torch

import aiosched
from aiosched.backends.cpu import split_outputs
from aiosched.models import ZOO, tiny_cnn, tiny_mlp, torchvision_model


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
    assert split_outputs(["x", "y"], 2) == ["x", "y"]
    with pytest.raises(ValueError):
        split_outputs(t, 4)
    with pytest.raises(ValueError):
        split_outputs(object(), 1)


def test_zoo_builds_models_without_downloads() -> None:
    model, shape = torchvision_model("squeezenet1_1")
    assert shape == (3, 224, 224)
    with torch.inference_mode():
        out = model(torch.zeros(1, *shape))
    assert out.shape == (1, 1000)
    assert {"resnet18", "mobilenet_v3_small", "resnet50"} <= set(ZOO)
    with pytest.raises(aiosched.InvalidConfig):
        torchvision_model("nonesuch")
