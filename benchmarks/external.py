"""Predictor error when a CPU-heavy process starts beside the run (external interference).

An open-loop Poisson load runs through the embedded scheduler (cpu backend,
default policy and predictor). Part-way through, ``--neighbours`` busy
processes (``python -c 'while 1: pass'``) start beside it and run to the end.
The recorded executions are scored several ways:

- ``acted``: the predictions the scheduler acted on (the default predictor,
  at its 90th percentile: it errs more than a mean by construction);
- ``default``: the default predictor replayed on the same trace (its own
  projections of the co-runners), which should match ``acted`` (it differs
  a little where a finish and a dispatch share an instant);
- ``point``: the same predictor without the quantile margin (its expectation);
- ``--extra SPEC``: any other predictor, replayed the same way;
- ``floor`` and ``floor-p90``: the noise floor (below).

The noise floor. Identical executions on a shared CPU differ by 10-20 %
(``REFERENCES.md``), so a predictor's error is judged against what a
predictor that knew the level of the moment in hindsight would make. For each
execution its look-alikes are the other executions of the same model and
batch size with the same number of co-runners (peers that overlapped it), on
the same side of the neighbour's start, the ``--floor-k`` nearest before it
and the ``--floor-k`` nearest after it in start order (itself excluded);
``floor`` predicts their mean latency, ``floor-p90`` their 90th percentile.
It uses the future, so a predictor that must look only back can come close
to it but hardly below it; it is not a strict bound (a mean of 20 is itself
a few per cent off, and the mean is not what minimises a percentage error).

Columns: MAPE before the neighbour (the mean rolling error, from the
``--window``-th execution on), after it, over the first ``--horizon``
executions after it and over the rest; the peak of the rolling MAPE over
``--window`` executions after it; ``recover``, the executions after the
neighbour started until that rolling error stays under ``--target`` (15 %)
for the rest of the run (``never``: it ends above); ``above``, the fraction
of the rolling windows after it (from the ``--window``-th execution on) at or
above ``--target``, a measure of the same that one late excursion does not
decide; ``under``, the fraction
of executions that took at most the prediction, before/after (0.9 for a
calibrated 90th percentile). A line per batch size gives the median latency
before and after, to show what the neighbour did.

    python benchmarks/external.py [--json out.json] [--rate 60] [--before 10] [--after 30]
        [--neighbours 1] [--extra overlap:device_window=0] [--save-trace run.pkl]
    python benchmarks/external.py --load-trace run.pkl   # score a recorded run again
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import pickle
import statistics
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
            "model": args.model,
            "lanes": args.lanes,
            "rate": args.rate,
            "neighbours": args.neighbours,
            "before": args.before,
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


def hindsight(live: Sequence[Execution], at: float, k: int) -> list[tuple[float, float] | None]:
    """The noise floor: per execution, (mean, 90th percentile) of its look-alikes nearby.

    Look-alikes: the other executions of the same model and batch size with
    the same number of co-runners (peers that overlapped it), on the same
    side of the neighbour's start, up to ``k`` just before it and ``k`` just
    after it in start order; itself excluded. The mean is what a predictor
    that knew the level of that kind of execution at that moment, but not
    this execution's own noise, would say. ``None`` where it has no
    look-alike.
    """
    groups: dict[tuple[str, int, int, bool], list[int]] = {}
    for i, e in enumerate(live):
        groups.setdefault((e.model, e.batch_size, len(e.overlaps), e.start >= at), []).append(i)
    out: list[tuple[float, float] | None] = [None] * len(live)
    for members in groups.values():
        latencies = [live[i].latency for i in members]
        for j, i in enumerate(members):
            others = latencies[max(0, j - k) : j] + latencies[j + 1 : j + 1 + k]
            if others:
                ordered = sorted(others)
                p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
                out[i] = (sum(others) / len(others), p90)
    return out


def batch_medians(live: Sequence[Execution], at: float) -> dict[int, tuple[int, float, int, float]]:
    """Per batch size with 5 executions or more on each side: (n, median) before and after."""
    sides: dict[int, tuple[list[float], list[float]]] = {}
    for e in live:
        sides.setdefault(e.batch_size, ([], []))[e.start >= at].append(e.latency)
    out = {}
    for b, (before, after) in sides.items():
        if len(before) >= 5 and len(after) >= 5:
            out[b] = (len(before), statistics.median(before), len(after), statistics.median(after))
    return out


def score(
    series: Sequence[tuple[float, float, float]], at: float, args: Any
) -> dict[str, float | int | None]:
    """Scores of ``(start, predicted, actual)`` in start order (see the module docstring)."""
    apes = [abs(p - a) / a for _, p, a in series]
    roll = rolling(apes, args.window)
    first = next((i for i, (s, _, _) in enumerate(series) if s >= at), len(series))
    quiet = roll[args.window : first]
    after = roll[first:]
    above = [i for i, r in enumerate(after) if r >= args.target]
    recovered: int | None
    if not above:
        recovered = 0
    elif above[-1] >= len(after) - args.window:
        recovered = None
    else:
        recovered = above[-1] + 1
    under = [a <= p for _, p, a in series]

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs) if xs else math.nan

    return {
        "before": mean(quiet),
        "after": mean(apes[first:]),
        "first": mean(apes[first : first + args.horizon]),
        "later": mean(apes[first + args.horizon :]),
        "peak": max(after, default=math.nan),
        "recovered_after": recovered,
        "above": mean([float(r >= args.target) for r in after[args.window :]]),
        "under_before": mean([float(u) for u in under[:first]]),
        "under_after": mean([float(u) for u in under[first:]]),
    }


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
    parser.add_argument("--horizon", type=int, default=200, help="executions after it")
    parser.add_argument("--floor-k", type=int, default=10, help="look-alikes each side")
    parser.add_argument("--extra", action="append", default=[], help="another predictor spec")
    parser.add_argument("--save-trace", default=None, help="pickle the recorded run here")
    parser.add_argument("--load-trace", default=None, help="score a pickled run instead")
    args = parser.parse_args()
    wall = time.perf_counter()
    if args.load_trace:
        with open(args.load_trace, "rb") as src:
            trace, at, summary = pickle.load(src)
    else:
        trace, at, summary = aiosched.run(record(args))
    if args.save_trace:
        with open(args.save_trace, "wb") as dst:
            pickle.dump((trace, at, summary), dst)
    live = [e for e in trace if not e.warmup and e.ok]
    live.sort(key=lambda e: e.start)
    series: dict[str, list[tuple[float, float, float]]] = {}
    series["acted"] = [(e.start, e.predicted, e.latency) for e in live]
    specs = [("default", DEFAULT_PREDICTOR), ("point", "overlap")]
    specs += [(spec, spec) for spec in args.extra]
    for label, spec in specs:
        scored = sorted(replay(make_predictor(spec), trace), key=lambda s: s.execution.start)
        series[label] = [(s.execution.start, s.predicted, s.execution.latency) for s in scored]
    floor = hindsight(live, at, args.floor_k)
    for label, column in (("floor", 0), ("floor-p90", 1)):
        series[label] = [
            (e.start, f[column], e.latency) for e, f in zip(live, floor, strict=True) if f
        ]
    print(
        f"{summary['model']} on cpu, {summary['lanes']} lanes, {summary['rate']:g}/s, "
        f"{summary['neighbours']} busy neighbour(s) from {summary['before']:g} s; "
        f"{summary['executions']} executions, {summary['met_deadline']}/{summary['sent']} met"
    )
    medians = batch_medians(live, at)
    for b, (n0, m0, n1, m1) in sorted(medians.items()):
        print(
            f"  batch {b}: median {m0 * 1e3:.1f} ms before ({n0} executions), "
            f"{m1 * 1e3:.1f} ms after ({n1})"
        )
    print(
        f"MAPE; rolling over {args.window}: peak after, executions until it stays under "
        f"{args.target:.0%}, fraction of windows above it; fraction at or under the "
        f"prediction; floor: mean of up to {2 * args.floor_k} look-alikes nearby"
    )
    horizon = f"first{args.horizon}"
    print(
        f"{'scored':22s} {'before':>7s} {'after':>7s} {horizon:>8s} {'later':>7s} "
        f"{'peak':>7s} {'recover':>7s} {'above':>6s} {'under':>11s}"
    )
    out: dict[str, Any] = {
        "config": vars(args),
        "summary": summary,
        "medians_ms": {
            b: {"before": m0 * 1e3, "after": m1 * 1e3} for b, (_, m0, _, m1) in medians.items()
        },
        "scores": {},
    }
    for label, rows in series.items():
        sc = score(rows, at, args)
        n = sc["recovered_after"]
        print(
            f"{label:22s} {sc['before']:7.1%} {sc['after']:7.1%} {sc['first']:8.1%} "
            f"{sc['later']:7.1%} {sc['peak']:7.1%} {'never' if n is None else n:>7} "
            f"{sc['above']:6.0%} "
            f"{sc['under_before']:5.0%}/{sc['under_after']:<5.0%}"
        )
        out["scores"][label] = sc
    print(f"{time.perf_counter() - wall:.1f} s wall")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
