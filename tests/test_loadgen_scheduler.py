"""The load generator driving the real Scheduler on the sim backend, in virtual time."""

from __future__ import annotations

import pytest

import aiosched
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.loadgen import BatchStats, PredictorStats, Workload, build_report, run_open_loop


@pytest.mark.parametrize("rate", [300.0, 3000.0])
@pytest.mark.sim
async def test_loadgen_counts_agree_with_the_scheduler(rate: float) -> None:
    models = {
        "a": SimModel(base=0.004, per_item=0.001, noise=0.0),
        "b": SimModel(base=0.008, per_item=0.002, noise=0.0),
    }
    workload = Workload.parse("a:3,b:1", "a=20,b=40")
    schedule = workload.schedule("poisson", rate, 3.0, seed=5)

    async with aiosched.Scheduler(SimBackend(lanes=2, models=models)) as sched:
        for name in models:
            sched.register(name, max_batch_size=8)
        await sched.ready()
        before = sched.snapshot()
        result = await run_open_loop(sched.infer, schedule, make_input=lambda m: 0.0)
        snap = sched.snapshot()
    sizes: dict[int, int] = {}
    for m in snap.models.values():
        for size, n in m.batch_sizes.items():
            sizes[size] = sizes.get(size, 0) + n - before.models[m.name].batch_sizes.get(size, 0)
    report = build_report(
        result,
        batches=BatchStats.from_sizes(sizes),
        predictor=PredictorStats(snap.predictor, snap.predictor_mape, snap.predictor_p95_ape),
    )
    requests = report["requests"]
    assert requests["sent"] == len(schedule)
    assert requests["sent"] == requests["completed"] + requests["rejected"] + requests["failed"]
    assert requests["failed"] == 0 and requests["cancelled"] == 0
    for name, section in report["per_model"].items():
        m = snap.models[name]
        r = section["requests"]
        assert r["sent"] == m.submitted
        assert r["completed"] == m.completed
        assert r["rejected"] == m.rejected
        assert r["met_deadline"] == m.met_deadline
    if rate > 1000:
        assert requests["rejected"] > 0  # overloaded: the scheduler sheds load early
    assert report["batches"]["count"] > 0
    assert report["predictor"]["name"] == snap.predictor
