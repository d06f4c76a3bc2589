"""Predictor error when a CPU-heavy process starts beside the run (external interference).

An open-loop Poisson load runs through the embedded scheduler (cpu backend,
default policy and predictor). Part-way through, ``--neighbours`` busy
processes (``python -c 'while 1: pass'``) start beside it and run to the end.
The recorded executions are scored three ways, each as the rolling mean
absolute percentage error over ``--window`` executions:

- ``acted``: the predictions the scheduler acted on (the default predictor,
  at its 90th percentile: it errs more than a mean by construction);
- ``default``: the default predictor replayed on the same trace (its own
  projections of the co-runners), which should match ``acted``;
- ``point``: the same predictor without the quantile margin (its expectation).

The figure is the number of executions after the neighbour started until the
rolling error is back under ``--target`` (15 %) for the rest of the run.

    python benchmarks/external.py [--json out.json] [--rate 60] [--before 10] [--after 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

import aiosched
from aiosched.experiments.replay import replay
from aiosched.loadgen import OpenLoopDriver, Workload
from aiosched.models import torchvision_model
from aiosched.predict import make_predictor
from aiosched.scheduler import DEFAULT_PREDICTOR
from aiosched.timeline import Execution


async def record(args: argparse.Namespace) -> tuple[list[Execution], float, dict[str, Any]]:
    model, shape = torchvision_model(args.model)
    x = torch.randn(shape)
    workload = Workload.parse(args.model, str(args.deadline))
    schedule = workload.schedule("poisson", args.rate, args.before + args.after, seed=args.seed)
    neighbours: list[subprocess.Popen[bytes]] = []
    async with aiosched.Scheduler("cpu", lanes=args.lanes) as sched:
        sched.register(args.model, model, max_batch_size=8, input_shape=shape)
        await sched.ready()
        t0 = sched.now()

        def start_neighbours() -> None:
            for _ in range(args.neighbours):
                neighbours.append(subprocess.Popen([sys.executable, "-c", "while 1: pass"]))

        loop = asyncio.get_running_loop()
        loop.call_later(args.before, start_neighbours)
        driver = OpenLoopDriver(sched.infer, schedule, make_input=lambda _: x, clock=sched.clock)
        try:
            result = await driver.run()
        finally:
            for p in neighbours:
                p.kill()
                p.wait()
        trace = list(sched.timeline)
        counts = result.total().counts
        summary = {
            "sent": counts.sent,
            "met_deadline": counts.met_deadline,
            "rejected": counts.rejected,
            "executions": len([e for e in trace if not e.warmup]),
        }
    return trace, t0 + args.before, summary


def rolling(apes: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, a in enumerate(apes):
        total += a
        if i >= window:
            total -= apes[i - window]
        out.append(total / min(i + 1, window))
    return out


def recovery(apes: Sequence[float], starts: Sequence[float], at: float, args: Any) -> Any:
    """(executions after ``at`` until the rolling error is under target for the rest of the
    run, or ``None`` if it ends above it; mean rolling error before ``at``; its peak after)."""
    roll = rolling(apes, args.window)
    first = next((i for i, s in enumerate(starts) if s >= at), len(starts))
    quiet = roll[args.window : first]
    before = sum(quiet) / len(quiet) if quiet else float("nan")
    after = roll[first:]
    peak = max(after, default=float("nan"))
    above = [i for i, r in enumerate(after) if r >= args.target]
    if not above:
        return 0, before, peak
    if above[-1] >= len(after) - args.window:
        return None, before, peak
    return above[-1] + 1, before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--deadline", type=float, default=200.0, help="ms")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--before", type=float, default=10.0, help="seconds before the neighbour")
    parser.add_argument("--after", type=float, default=30.0, help="seconds with it")
    parser.add_argument("--neighbours", type=int, default=1)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    wall = time.perf_counter()
    trace, at, summary = aiosched.run(record(args))
    live = [e for e in trace if not e.warmup and e.ok]
    live.sort(key=lambda e: e.start)
    rows: dict[str, Any] = {}
    acted = [abs(e.predicted - e.latency) / e.latency for e in live]
    rows["acted"] = recovery(acted, [e.start for e in live], at, args)
    for label, spec in (("default", DEFAULT_PREDICTOR), ("point", "overlap")):
        scored = sorted(replay(make_predictor(spec), trace), key=lambda s: s.execution.start)
        apes = [s.ape for s in scored]
        rows[label] = recovery(apes, [s.execution.start for s in scored], at, args)
    print(
        f"{args.model} on cpu, {args.lanes} lanes, {args.rate:g}/s, {args.neighbours} busy "
        f"neighbour(s) from {args.before:g} s; {summary['executions']} executions, "
        f"{summary['met_deadline']}/{summary['sent']} met"
    )
    print(f"rolling MAPE over {args.window} executions; target {args.target:.0%}")
    print(f"{'scored':8s} {'before':>8s} {'peak':>8s} {'executions to recover':>22s}")
    out: dict[str, Any] = {"config": vars(args), "summary": summary, "scores": {}}
    for label, (n, before, peak) in rows.items():
        print(f"{label:8s} {before:8.1%} {peak:8.1%} {'never' if n is None else n:>22}")
        out["scores"][label] = {"recovered_after": n, "before": before, "peak": peak}
    print(f"{time.perf_counter() - wall:.1f} s wall")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
