"""aiosched.integrations.ray_serve: the replica in-process (no Ray), then a local Ray Serve app.

The Ray tests are marked ``ray`` and skipped without ray; they start one local
Ray instance with 2 CPUs and an application of two 1-CPU replicas (about 20-30 s
on the 2-core development machine, most of it Ray starting up).
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import sys
import time
from typing import Any

import pytest
import torch
from torch import nn

import aiosched
from aiosched.integrations._replica import AioschedReplica, Reply, ServedModel, error_class
from aiosched.models import torchvision_model


class Slow(nn.Module):
    """50 ms per batch: a 20 ms deadline cannot be met once the warm-up has measured it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return x.sum(dim=1, keepdim=True)


def models() -> dict[str, Any]:
    return {
        "tiny_mlp": ServedModel.zoo("tiny_mlp", max_batch_size=8),
        "slow": ServedModel(Slow, input_shape=(4,), max_batch_size=4),
    }


def expected(x: torch.Tensor) -> torch.Tensor:
    model, _ = torchvision_model("tiny_mlp")  # seeded: every replica builds these weights
    with torch.no_grad():
        return model(x.unsqueeze(0))[0]


# ------------------------------------------------------------- no Ray needed


def test_reply_unwrap_raises_the_typed_error() -> None:
    assert Reply(output=3).unwrap() == 3
    with pytest.raises(aiosched.DeadlineUnmeetable, match="late"):
        Reply(error="DeadlineUnmeetable", message="late").unwrap()
    with pytest.raises(aiosched.Overloaded):
        Reply(error="Overloaded").unwrap()
    assert error_class("DeadlineExceeded") is aiosched.DeadlineExceeded
    assert error_class("NotAnError") is aiosched.AioschedError
    assert error_class("annotations") is aiosched.AioschedError  # a name, but no error class


@pytest.mark.slow
def test_replica_in_process_deadlines_errors_and_shutdown_hook() -> None:
    asyncio.run(_in_process())


async def _in_process() -> None:
    replica = AioschedReplica(models(), backend="cpu", lanes=1)
    await replica.start()
    x = torch.randn(16)
    r = await replica.infer("tiny_mlp", x, time.time() + 1.0, sent_at=time.time())
    assert r.ok and r.transit_s is not None and r.transit_s >= 0
    torch.testing.assert_close(r.output, expected(x))
    passed = await replica.infer("tiny_mlp", x, time.time() - 0.5)
    assert passed.error == "DeadlineExceeded" and "in transit" in passed.message
    slow = [await replica.infer("slow", torch.randn(4), time.time() + 0.02) for _ in range(3)]
    assert "DeadlineUnmeetable" in {r.error for r in slow}, slow  # the first may run as a probe
    bad = await replica.infer("tiny_mlp", torch.randn(3), time.time() + 1.0)
    assert bad.error == "InvalidInput"
    unknown = await replica.infer("nope", x, None)
    assert unknown.error == "UnknownModel"
    replica.check_health()
    info = replica.describe()
    assert info["models"]["tiny_mlp"]["input_shape"] == [16]
    assert replica.stats()["models"]["tiny_mlp"]["completed"] == 1
    # Serve's hook: __del__ called on the replica's loop returns the close, which it awaits.
    hook = replica.__del__()
    assert hook is not None
    await hook
    assert replica.scheduler.closed and replica.__del__() is None
    with pytest.raises(aiosched.SchedulerClosed):
        replica.check_health()
    closed = await replica.infer("tiny_mlp", x, time.time() + 1.0)
    assert closed.error == "SchedulerClosed"


# ------------------------------------------------------------- Ray Serve

APP = "aiosched-test"


@pytest.mark.ray
def test_ray_serve_two_replicas_deadlines_results_and_clean_shutdown() -> None:
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from aiosched.integrations.ray_serve import AioschedClient, aiosched_deployment

    # The test module's Slow travels by value: the replicas cannot import this file.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
    )
    try:
        serve.start(proxy_location="Disabled")  # handles only, no HTTP proxy
        app = aiosched_deployment(models(), backend="cpu", lanes=1, num_replicas=2)
        client = AioschedClient(serve.run(app, name=APP, route_prefix=None))
        _requests_with_deadlines(client)
        logs = ray._private.worker.global_worker.node.get_logs_dir_path()
        serve.delete(APP)  # graceful: each replica drains, then its __del__ closes its scheduler
        closed = []
        for path in glob.glob(os.path.join(logs, "serve", "replica_*.log")):
            with open(path, encoding="utf-8", errors="replace") as f:
                closed += [line for line in f if "scheduler closed" in line]
        assert len(closed) == 2, closed
        # "(20 completed, ...)" also contains "0 completed": match the whole number.
        idle = [line for line in closed if re.search(r"(?<!\d)0 completed", line)]
        assert not idle, f"both replicas served: {closed}"
    finally:
        serve.shutdown()
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not ray.is_initialized()


def _requests_with_deadlines(client: Any) -> None:
    xs = [torch.randn(16) for _ in range(40)]

    async def main() -> tuple[list[Reply], list[Reply], Reply, Reply, dict[str, Any]]:
        replies = await asyncio.gather(*(client.call("tiny_mlp", x, deadline=2.0) for x in xs))
        # 2 x 3 calls: each replica may run its first as a probe (it has not run for a while)
        unmeetable = [await client.call("slow", torch.randn(4), deadline=0.02) for _ in range(6)]
        in_transit = await client.call("tiny_mlp", xs[0], deadline=1e-6)
        slow_ok = await client.call("slow", torch.randn(4), deadline=2.0)
        with pytest.raises(aiosched.DeadlineUnmeetable):
            for _ in range(6):
                await client.infer("slow", torch.randn(4), deadline=0.02)
        info = await client.describe()
        return list(replies), unmeetable, in_transit, slow_ok, info

    replies, unmeetable, in_transit, slow_ok, info = asyncio.run(main())
    for x, r in zip(xs, replies, strict=True):
        assert r.ok, r
        torch.testing.assert_close(r.output, expected(x))
        assert r.transit_s is not None and r.transit_s < 2.0
    assert len({r.replica for r in replies}) == 2, "both replicas served"
    assert "DeadlineUnmeetable" in {r.error for r in unmeetable}, unmeetable
    assert all(r.ok or r.error == "DeadlineUnmeetable" for r in unmeetable), unmeetable
    assert in_transit.error == "DeadlineExceeded" and "in transit" in in_transit.message
    assert slow_ok.ok and slow_ok.output.shape == (1,)
    assert set(info["models"]) == {"tiny_mlp", "slow"} and info["lanes"] == 1


def test_loadtest_target_option_is_checked_before_any_run() -> None:
    from typer.testing import CliRunner

    from aiosched.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["loadtest", "--target", "bogus", "--rate", "5"])
    assert bad.exit_code == 2 and "ray-serve:APP" in bad.output
    no_rate = runner.invoke(app, ["loadtest", "--target", "ray-serve:app"])
    assert no_rate.exit_code == 2 and "--rate" in no_rate.output
