"""Scale-out on the sim backend: goodput and dispatch cost against the number of devices.

A :class:`aiosched.fleet.Fleet` of 1, 2, 4, ... 64 simulated devices (2 lanes
each), one model (the catalogue's ``resnet50``, max batch 8) on every device,
and a fixed offered load *per device*: open-loop Poisson at ``--fraction`` of
one device's peak (848/s, the README's ``compare`` peak search for this
model) times the number of devices, with a ``--deadline-ms`` of 50 ms, for
``--duration`` virtual seconds. Close to linear scale-out means goodput per
device stays where one device's is, and a flat dispatch cost means the wall
microseconds per request stay where one device's are.

Each point runs in a forked child on a fresh :func:`aiosched.simtime.run`
(virtual time: the devices cost no wall time, so the wall time is the
scheduling: the load generator, the fleet's routing, each device's
dispatcher and predictor, asyncio). Figures: offered and goodput requests/s,
goodput per device, attainment (requests that met their deadline per request
sent), p99 latency, mean batch, wall microseconds per request sent (from the
first send to the last response: start-up and warm-up are fixed costs,
reported apart as ``setup_s``), and the replicas rebalancing added or
removed (with one model on every device there is nothing to add; an idle
start could shrink it).

    python benchmarks/fleet.py [--devices 1,2,4,8,16,32,64] [--duration 5]
        [--fraction 0.8] [--deadline-ms 50] [--seed 1] [--json PATH]

Measured on the 2-core development VM (``python benchmarks/fleet.py --json
out.json``, defaults, 80 s of serving in all; this VM's speed varies from run to
run, so read the last column to a few tens of percent):

| devices | offered/s | goodput/s | goodput/s per device | attainment | p99 ms | wall µs/request |
| --- | --- | --- | --- | --- | --- | --- |
| 1 | 678 | 686 | 686.5 | 100.00 % | 23.4 | 117.9 |
| 2 | 1,357 | 1,352 | 675.7 | 100.00 % | 20.2 | 112.2 |
| 4 | 2,714 | 2,719 | 679.9 | 100.00 % | 18.0 | 116.9 |
| 8 | 5,427 | 5,428 | 678.5 | 100.00 % | 16.6 | 175.2 |
| 16 | 10,854 | 10,859 | 678.7 | 100.00 % | 15.9 | 177.0 |
| 32 | 21,709 | 21,770 | 680.3 | 100.00 % | 16.1 | 178.0 |
| 64 | 43,418 | 43,516 | 679.9 | 100.00 % | 15.9 | 199.9 |

Goodput is linear in devices. The Python work per request is nearly flat
(526, 532 and 555 function calls per request at 4, 8 and 32 devices under
cProfile, the routing's pass over the replicas included); the wall time per
request also grows with the length of a run (here 3,435 requests at 1
device, 218,041 at 64): at the same 5,460 requests, 4 / 8 / 32 devices took
128 / 114 / 146 µs per request.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from aiosched import simtime
from aiosched.fleet import Fleet
from aiosched.loadgen import Workload, build_report, run_open_loop

MODEL = "resnet50"
PEAK_RPS = 848.0  # one sim device, 2 lanes, max batch 8 (README, `aiosched compare`)
LANES = 2
MAX_BATCH = 8
DEVICES = (1, 2, 4, 8, 16, 32, 64)

Row = dict[str, Any]


def point(devices: int, fraction: float, duration: float, deadline_s: float, seed: int) -> Row:
    """One fleet of ``devices`` under ``devices * fraction * PEAK_RPS`` requests/s."""
    rate = devices * fraction * PEAK_RPS
    workload = Workload.parse(MODEL, str(deadline_s * 1e3))
    schedule = workload.schedule("poisson", rate=rate, duration=duration, seed=seed)
    times: dict[str, float] = {}

    async def main() -> Row:
        t0 = time.perf_counter()
        async with Fleet.sim(devices, lanes=LANES, seed=seed) as fleet:
            fleet.register(MODEL, max_batch_size=MAX_BATCH)
            await fleet.ready()
            t1 = time.perf_counter()
            result = await run_open_loop(fleet.infer, schedule)
            times["serve"] = time.perf_counter() - t1
            snap = fleet.snapshot()
        times["total"] = time.perf_counter() - t0
        report = build_report(result, config={"devices": devices})
        per_device = [d.models[MODEL].completed for d in snap.devices]
        sizes = snap.models[MODEL].batch_sizes
        batches = sum(sizes.values())
        return {
            "report": report,
            "per_device_completed_min": min(per_device),
            "per_device_completed_max": max(per_device),
            "mean_batch": sum(b * n for b, n in sizes.items()) / batches if batches else 0.0,
            "grown": snap.grown,
            "shrunk": snap.shrunk,
        }

    out = simtime.run(main())
    report = out.pop("report")
    sent = report["requests"]["sent"]
    met = report["requests"]["met_deadline"]
    serve = times["serve"]
    return {
        "devices": devices,
        "offered_rps": round(rate, 1),
        "sent": sent,
        "goodput_rps": round(report["goodput_rps"], 1),
        "goodput_per_device": round(report["goodput_rps"] / devices, 1),
        "attainment": round(met / sent, 5) if sent else None,
        "rejected": report["requests"]["rejected"],
        "p99_ms": round(report["latency_ms"]["p99"], 2),
        "mean_batch": round(out.pop("mean_batch"), 2),
        "us_per_request": round(serve / sent * 1e6, 2) if sent else None,
        "serve_s": round(serve, 2),
        "setup_s": round(times["total"] - serve, 2),
        **out,
    }


def _child(conn: Connection, args: tuple[Any, ...]) -> None:
    try:
        conn.send(point(*args))
    except BaseException as exc:  # report it to the parent rather than hang it
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def run_point(*args: Any) -> Row:
    """:func:`point` in a forked child: a fresh heap and garbage collector per point."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, args))
    proc.start()
    child.close()
    row: Row = parent.recv()
    proc.join()
    if "error" in row:
        raise RuntimeError(f"point {args}: {row['error']}")
    return row


def table(rows: list[Row]) -> str:
    lines = [
        "| devices | offered/s | goodput/s | goodput/s per device | attainment | p99 ms "
        "| mean batch | wall µs/request |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['devices']} | {r['offered_rps']:,.0f} | {r['goodput_rps']:,.0f} "
            f"| {r['goodput_per_device']:.1f} | {r['attainment'] * 100:.2f} % "
            f"| {r['p99_ms']:.1f} | {r['mean_batch']:.2f} | {r['us_per_request']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default=",".join(map(str, DEVICES)))
    ap.add_argument("--duration", type=float, default=5.0, help="virtual seconds per point")
    ap.add_argument("--fraction", type=float, default=0.8, help="of one device's peak, 848/s")
    ap.add_argument("--deadline-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.devices.split(",") if c.strip()]
    rows = []
    for n in counts:
        row = run_point(n, args.fraction, args.duration, args.deadline_ms / 1e3, args.seed)
        rows.append(row)
        print(
            f"{n} devices: {row['sent']} sent, goodput {row['goodput_rps']:,.0f}/s, "
            f"attainment {row['attainment'] * 100:.2f} %, {row['us_per_request']:.1f} µs/request, "
            f"serve {row['serve_s']} s wall",
            file=sys.stderr,
        )
    print(table(rows))
    if args.json:
        config = {k: getattr(args, k) for k in ("duration", "fraction", "deadline_ms", "seed")}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"config": config, "rows": rows}, f, indent=2, allow_nan=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
