"""The closed-loop driver, in virtual time: N users, at most N in flight, Little's law."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched import Scheduler
from aiosched.cli import app
from aiosched.errors import InvalidConfig, Overloaded
from aiosched.loadgen.closed_loop import BACKOFF_S, ClosedLoop, ClosedLoopDriver, in_warmup
from aiosched.loadgen.harness import LoadtestConfig
from aiosched.loadgen.result import LoadResult
from aiosched.loadgen.workload import Workload
from tests.conftest import flat_model, sim


def _accounted(r: LoadResult) -> None:
    for m in r.models.values():
        c = m.counts
        assert c.sent == c.completed + c.rejected + c.failed + c.cancelled
        assert c.completed == c.met_deadline + c.missed_deadline
        assert c.in_flight == 0


@pytest.mark.sim
async def test_n_users_keep_at_most_n_in_flight_and_obey_littles_law() -> None:
    workload = Workload.parse("a:3,b:1", "100")
    backend = sim(lanes=2, a=flat_model(0.008, 0.001), b=flat_model(0.020, 0.002))
    async with Scheduler(backend, lanes=2) as sched:
        sched.register("a", max_batch_size=8)
        sched.register("b", max_batch_size=8)
        await sched.ready()
        in_flight = [0, 0]

        async def infer(model: str, x: Any, deadline: float) -> Any:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            try:
                return await sched.infer(model, x, deadline=deadline)
            finally:
                in_flight[0] -= 1

        driver = ClosedLoopDriver(infer, workload, ClosedLoop(6, 20.0, warmup_s=1.0))
        r = await driver.run()
    _accounted(r)
    total = r.total()
    assert in_flight[1] == driver.max_in_flight == 6  # the users did overlap, never more
    assert total.counts.rejected == total.counts.failed == 0
    assert total.counts.sent > 1000 and set(r.models) == {"a", "b"}
    assert r.models["a"].counts.sent > 2 * r.models["b"].counts.sent  # shares 3:1
    assert driver.warmup_counts.sent > 0 and driver.warmup_counts.in_flight == 0
    # Little's law: users = throughput x time per cycle (no think time here)
    mean = total.latency.mean_s
    assert mean is not None
    littles = total.counts.completed / r.duration_s * mean
    assert littles == pytest.approx(6, rel=0.05)


@pytest.mark.sim
async def test_think_time_slows_the_users_and_rejections_back_off() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def infer(model: str, x: Any, deadline: float) -> Any:
        calls.append(loop.time())
        n = len(calls)
        await asyncio.sleep(0.010)
        if n % 2:
            raise Overloaded("full")

    plan = ClosedLoop(2, 1.0, think_s=0.040)
    r = await ClosedLoopDriver(infer, Workload.parse("m"), plan).run()
    _accounted(r)
    c = r.total().counts
    # each cycle is 10 ms of request + 40 ms of thinking (+ 10 ms back-off after a rejection)
    assert c.rejected > 0 and c.completed > 0
    cycles = c.completed * 0.050 + c.rejected * (0.050 + BACKOFF_S)
    assert cycles == pytest.approx(2 * 1.0, abs=0.12)


@pytest.mark.sim
async def test_stop_and_the_drain_resolve_every_request_once() -> None:
    seen_warmup: list[bool] = []

    async def infer(model: str, x: Any, deadline: float) -> Any:
        seen_warmup.append(in_warmup())
        await asyncio.sleep(0.5)

    driver = ClosedLoopDriver(infer, Workload.parse("m"), ClosedLoop(3, 10.0, warmup_s=1.0))
    asyncio.get_running_loop().call_later(2.2, driver.stop)
    r = await driver.run()
    _accounted(r)
    assert r.stopped_early and r.send_window_s == pytest.approx(1.2)
    # 3 users: 2 warm-up requests each, then 3 measured each (the last drained after stop)
    assert driver.warmup_counts.sent == 6 and r.total().counts.completed == 9
    assert seen_warmup.count(True) == 6


def test_a_closed_loop_takes_no_rate() -> None:
    with pytest.raises(InvalidConfig, match="closed loop"):
        LoadtestConfig(backend="sim", concurrency=4, rate=10.0, rate_mode="closed")
    with pytest.raises(InvalidConfig, match="concurrency"):
        ClosedLoop(0, 1.0)


def test_loadtest_concurrency_on_sim_reports_mode_users_and_rate(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["loadtest", "--backend", "sim", "--concurrency", "4", "--duration", "5"]
    result = CliRunner().invoke(app, [*args, "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "closed loop: 4 users" in result.output and "peak search" not in result.output
    report = json.loads(out.read_text())
    c, r = report["config"], report["requests"]
    assert c["mode"] == "closed" and c["concurrency"] == 4 and c["max_in_flight"] == 4
    assert c["warmup"]["seconds"] == 1 and c["warmup"]["requests"]["sent"] > 0
    assert r["sent"] == r["completed"] + r["rejected"] + r["failed"] + r["cancelled"]
    assert report["achieved_rps"] * report["latency_ms"]["mean"] / 1000 == pytest.approx(
        4, rel=0.05
    )


def test_concurrency_with_a_rate_exits_2_with_one_line() -> None:
    result = CliRunner().invoke(app, ["loadtest", "--concurrency", "2", "--rate", "5"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "closed loop" in result.output


def test_open_loop_warmup_on_sim_runs_first_and_is_not_counted(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["loadtest", "--backend", "sim", "--rate", "200", "--duration", "2"]
    result = CliRunner().invoke(app, [*args, "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    warm = report["config"]["warmup"]
    assert warm["seconds"] == 1 and 150 < warm["requests"]["sent"] < 250
    assert 300 < report["requests"]["sent"] < 500  # the measured 2 s only
    assert "first 1 s" in warm["excluded"]
