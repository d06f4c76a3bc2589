"""Soak: a million requests in virtual time; none lost, counters add up, memory flat.

Open-loop Poisson load (:mod:`aiosched.loadgen`) on the sim backend, two
catalogue models (``resnet50:2,yolov8n:1``, 50 / 30 ms deadlines), 2 lanes, the
default policy and predictor. Of the requests:

- ``--cancel`` (1 %) are cancelled by their caller part-way, at a uniform
  0-20 ms after the call: half through ``asyncio.wait_for`` timing out, half
  by cancelling the task that awaits ``infer()``;
- ``--faults`` (0.1 %) carry an input that makes its batch raise (the model
  fails; the scheduler bisects the batch, so only that caller should fail).

Checked at the end (exit code 1 if any fails):

- **0 lost**: every call returned or raised exactly once, and none was still
  waiting when the load ended (the driver gives stragglers ``--drain`` virtual
  seconds, then cancels them: each of those is *lost*);
- every good request got its own input back (the sim models echo it), or a
  rejection or its caller's cancel; no good request failed;
- the counters of ``snapshot()`` add up: per model ``submitted`` equals what
  was sent, and ``completed + rejected + failed + cancelled``; nothing pending
  or queued; and they agree with what the callers saw (a cancel that lands
  after its request was settled shows as cancelled to the caller and as the
  outcome in the counters; such late cancels are counted and reconciled);
- memory is flat once the timeline's history (``keep_executions``, 100,000 by
  default) is full: the process's resident memory is sampled every
  ``--sample-every`` requests sent (100,000), and the growth from the first
  sample taken with the history full to the last must stay under
  ``--max-growth-mib`` (``--tracemalloc`` samples traced Python memory instead:
  exact, but about twice as slow).

    python benchmarks/soak.py [--requests 1000000] [--rate 500] [--cancel 0.01]
        [--faults 0.001] [--seed 1] [--json PATH]

``--requests 20000`` is a quick run (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from typing import Any

import numpy as np

import aiosched
from aiosched import simtime
from aiosched.backends.sim import CATALOGUE, SimBackend
from aiosched.loadgen import REJECTIONS, Workload, run_open_loop

MODELS = "resnet50:2,yolov8n:1"
DEADLINES = "resnet50=50,yolov8n=30"
CANCEL_WITHIN_S = 0.020
KEEP_EXECUTIONS = 100_000

# What each request is meant to do (decided from the seed, in send order).
GOOD, FAULT, WAIT_FOR, TASK_CANCEL = 0, 1, 2, 3


def _faulty(x: object) -> bool:
    return isinstance(x, int) and x < 0


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(args: argparse.Namespace) -> dict[str, Any]:
    n = args.requests
    workload = Workload.parse(MODELS, DEADLINES)
    duration = n / args.rate
    schedule = workload.schedule("poisson", rate=args.rate, duration=duration, seed=args.seed)
    sent_total = len(schedule)
    rng = np.random.default_rng(args.seed + 7919)
    u = rng.random(sent_total)
    plan = np.full(sent_total, GOOD, dtype=np.int8)
    plan[u < args.faults] = FAULT
    cancel = (u >= args.faults) & (u < args.faults + args.cancel)
    plan[cancel] = np.where(rng.random(sent_total) < 0.5, WAIT_FOR, TASK_CANCEL)[cancel]
    cancel_after = rng.random(sent_total) * CANCEL_WITHIN_S
    models = {name: dataclasses.replace(CATALOGUE[name], fails=_faulty) for name in workload.names}
    seen: Counter[str] = Counter()  # what the callers saw
    memory: list[dict[str, Any]] = []
    lost: list[int] = []

    async def main() -> dict[str, Any]:
        backend = SimBackend(lanes=2, models=models, seed=args.seed)
        sched = aiosched.Scheduler(backend, keep_executions=args.keep)
        await sched.start()
        for name in workload.names:
            sched.register(name, max_batch_size=8)
        await sched.ready()
        loop = asyncio.get_running_loop()
        started = entered = finished = 0
        t_wall = time.perf_counter()

        def sample(i: int) -> None:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else None
            memory.append(
                {
                    "sent": i,
                    "rss_mib": round(_rss_mib(), 1),
                    "traced_mib": None if traced is None else round(traced, 1),
                    "history": len(sched.timeline.history),
                    "wall_s": round(time.perf_counter() - t_wall, 1),
                }
            )

        async def call(name: str, x: Any, deadline: float) -> Any:
            nonlocal entered
            entered += 1
            return await sched.infer(name, x, deadline)

        async def target(name: str, _: Any, deadline: float) -> None:
            nonlocal started, finished
            i = started
            started += 1
            if i % args.sample_every == 0:
                sample(i)
            kind = int(plan[i])
            x = -i - 1 if kind == FAULT else i
            try:
                if kind == WAIT_FOR:
                    try:
                        y = await asyncio.wait_for(call(name, x, deadline), cancel_after[i])
                    except TimeoutError:
                        seen["cancelled"] += 1
                        return
                elif kind == TASK_CANCEL:
                    task = loop.create_task(call(name, x, deadline))
                    handle = loop.call_later(cancel_after[i], task.cancel)
                    try:
                        y = await task
                    except asyncio.CancelledError:
                        if not task.cancelled():
                            raise
                        seen["cancelled"] += 1
                        return
                    finally:
                        handle.cancel()
                else:
                    y = await call(name, x, deadline)
            except REJECTIONS:
                seen["rejected"] += 1
                return
            except aiosched.ModelError:
                seen["failed"] += 1
                seen["failed_good" if kind != FAULT else "failed_fault"] += 1
                return
            except asyncio.CancelledError:
                lost.append(i)  # nobody here cancelled it: the driver gave up on it
                raise
            except Exception as exc:
                seen[f"other:{type(exc).__name__}"] += 1
                return
            finally:
                finished += 1
            seen["completed"] += 1
            if kind == FAULT:
                seen["fault_served"] += 1
            if y != x:
                seen["wrong_output"] += 1

        if args.tracemalloc:
            tracemalloc.start()
        result = await run_open_loop(target, schedule, drain_timeout=args.drain)
        sample(started)
        wall = time.perf_counter() - t_wall
        if args.tracemalloc:
            tracemalloc.stop()
        snap = sched.snapshot()
        await sched.aclose()
        counters = {
            key: snap.total(key)
            for key in (
                "submitted",
                "completed",
                "met_deadline",
                "missed_deadline",
                "rejected",
                "failed",
                "cancelled",
            )
        }
        driver = result.total().counts.as_dict()
        per_model_ok = all(
            m.pending == 0 and m.queue_depth == 0 and m.in_flight == 0 for m in snap.models.values()
        )
        return {
            "started": started,
            "entered": entered,
            "finished": finished,
            "counters": counters,
            "driver": driver,
            "per_model_settled": per_model_ok,
            "executions": snap.executions,
            "virtual_s": result.duration_s,
            "wall_s": wall,
        }

    out = simtime.run(main())
    c = out["counters"]
    late_cancels = seen["cancelled"] - c["cancelled"]
    settled_then_cancelled = (
        (c["completed"] - seen["completed"])
        + (c["rejected"] - seen["rejected"])
        + (c["failed"] - seen["failed"])
    )
    resolved = c["completed"] + c["rejected"] + c["failed"] + c["cancelled"]
    checks = {
        "every call sent entered infer": out["started"] == out["entered"] == sent_total,
        "every call returned (0 lost)": not lost and out["finished"] == sent_total,
        "submitted == sent": c["submitted"] == sent_total,
        "completed+rejected+failed+cancelled == submitted": resolved == c["submitted"],
        "completed == met + missed": c["completed"] == c["met_deadline"] + c["missed_deadline"],
        "nothing pending or queued": out["per_model_settled"],
        "callers and counters agree (late cancels reconciled)": (
            late_cancels >= 0 and settled_then_cancelled == late_cancels
        ),
        "every caller got its own output": seen["wrong_output"] == 0,
        "no good request failed": seen["failed_good"] == 0,
        "no faulty request served": seen["fault_served"] == 0,
        "no unexpected error": not any(k.startswith("other:") for k in seen),
    }
    full = [s for s in memory if s["history"] >= args.keep]
    key = "traced_mib" if args.tracemalloc else "rss_mib"
    growth = full[-1][key] - full[0][key] if len(full) >= 2 else None
    if growth is not None:
        checks[f"memory flat after the history cap (growth <= {args.max_growth_mib:g} MiB)"] = (
            growth <= args.max_growth_mib
        )
    return {
        "config": {
            "requests": n,
            "sent": sent_total,
            "models": MODELS,
            "deadlines_ms": DEADLINES,
            "rate_rps": args.rate,
            "cancel": args.cancel,
            "faults": args.faults,
            "seed": args.seed,
            "keep_executions": args.keep,
            "planned": {
                "good": int((plan == GOOD).sum()),
                "fault": int((plan == FAULT).sum()),
                "wait_for": int((plan == WAIT_FOR).sum()),
                "task_cancel": int((plan == TASK_CANCEL).sum()),
            },
        },
        "lost": len(lost),
        "callers": dict(seen),
        "late_cancels": late_cancels,
        **out,
        "memory": memory,
        "memory_growth_after_cap_mib": growth,
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=500.0, help="requests/s (virtual)")
    ap.add_argument("--cancel", type=float, default=0.01)
    ap.add_argument("--faults", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=int, default=KEEP_EXECUTIONS, help="keep_executions")
    ap.add_argument("--sample-every", type=int, default=100_000)
    ap.add_argument("--drain", type=float, default=60.0, help="virtual s for stragglers")
    ap.add_argument("--max-growth-mib", type=float, default=16.0)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    r = soak(args)
    cfg, c = r["config"], r["counters"]
    print(
        f"soak: {cfg['sent']} requests at {cfg['rate_rps']:g}/s, {r['virtual_s']:.0f} s virtual "
        f"in {r['wall_s']:.1f} s wall; planned {cfg['planned']}; executions {r['executions']}"
    )
    print(f"lost {r['lost']}; callers saw {dict(sorted(r['callers'].items()))}")
    print(f"counters {c}; late cancels {r['late_cancels']}")
    key = "traced_mib" if args.tracemalloc else "rss_mib"
    series = ", ".join(
        f"{s['sent'] // 1000}k: {s[key]} MiB (history {s['history']})" for s in r["memory"]
    )
    print(f"memory ({key}): {series}")
    growth = r["memory_growth_after_cap_mib"]
    print(f"growth after the history cap: {'n/a' if growth is None else f'{growth:.1f} MiB'}")
    failed = [name for name, ok in r["checks"].items() if not ok]
    for name, ok in r["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=2, allow_nan=False)
            f.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
