"""Scale-out on the sim backend: goodput and dispatch cost against the number of devices.

A :class:`aiosched.fleet.Fleet` of 1, 2, 4, ... 64 simulated devices (2 lanes
each), one model (the catalogue's ``resnet50``, max batch 8) on every device,
and a fixed offered load *per device*: open-loop Poisson at ``--fraction`` of
one device's peak (848/s, the README's ``compare`` peak search for this
model) times the number of devices, with a ``--deadline-ms`` of 50 ms. Every
point sends the same ``--requests`` (the first of the Poisson stream; the
virtual duration follows from the rate: 59 s at 1 device, 0.9 s at 64), so
that the per-request figures compare the same amount of work. Close to
linear scale-out means goodput per device stays where one device's is; a
flat dispatch cost means the work per request stays where one device's is.

Each run is a forked child on a fresh :func:`aiosched.simtime.run` (virtual
time: the devices cost no wall time, so the wall time is the scheduling: the
load generator, the fleet's routing, each device's dispatcher and predictor,
asyncio). Figures: offered and goodput requests/s, goodput per device,
attainment (requests that met their deadline per request sent), p99
latency, mean batch, and two costs per request:

- **wall µs/request**, from the first send to the last response (start-up
  and warm-up are fixed costs, left out); each point runs ``--repeat``
  times, the device counts taken in turn so that a slow spell of the machine
  falls on all of them, and the table gives the median and the range.
- **calls/request**: Python function calls per request sent, counted by
  :mod:`cProfile` in one more run of ``--profile-requests`` per point (in
  virtual time the run is deterministic, so this count is noise-free; the
  profiler slows the run, so it is not timed). ``fleet calls`` counts only
  the calls into :mod:`aiosched.fleet` (routing and its bookkeeping).

    python benchmarks/fleet.py [--devices 1,2,4,8,16,32,64] [--requests 40000]
        [--repeat 5] [--profile-requests 10000] [--fraction 0.8]
        [--deadline-ms 50] [--seed 1] [--json PATH]

Measured on the 2-core development VM (``python benchmarks/fleet.py --json
out.json`` under the machine lock, defaults: 40,000 requests per run, 5 timed
runs and one profiled run of 10,000 requests per point). ``n``: devices;
``met``: attainment; ``batch``: mean batch; ``µs/req``: wall µs per request,
the median of the 5 runs (their range); ``x 1``: that median over 1 device's;
``calls/req``: all function calls per request; ``in fleet``: those into
:mod:`aiosched.fleet`:

| n | goodput/s | per device | met | p99 ms | batch | µs/req (range) | x 1 | calls/req | in fleet |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| 1 | 680 | 679.6 | 100.00 % | 24.7 | 2.48 | 105.8 (97.7-125.8) | 1.00 | 520.6 | 3.03 |
| 2 | 1,359 | 679.5 | 100.00 % | 20.6 | 2.32 | 110.2 (101.2-148.1) | 1.04 | 528.3 | 3.02 |
| 4 | 2,717 | 679.3 | 100.00 % | 18.1 | 2.24 | 117.6 (107.5-145.5) | 1.11 | 535.5 | 3.01 |
| 8 | 5,430 | 678.8 | 100.00 % | 16.5 | 2.22 | 132.9 (107.2-154.9) | 1.26 | 540.2 | 3.01 |
| 16 | 10,842 | 677.7 | 100.00 % | 16.0 | 2.20 | 128.3 (112.2-147.6) | 1.21 | 544.2 | 3.00 |
| 32 | 21,621 | 675.6 | 100.00 % | 16.0 | 2.19 | 137.2 (131.3-164.7) | 1.30 | 555.1 | 3.01 |
| 64 | 42,999 | 671.9 | 100.00 % | 15.7 | 2.17 | 163.4 (144.7-178.3) | 1.54 | 572.3 | 3.00 |

Goodput is linear in devices (per device within 1.2 % of one device's, every
request met). The Python work per request is nearly flat: 520.6 function
calls per request at 1 device, 572.3 at 64 (1.10x), with the fleet's own
part (routing and its bookkeeping) at 3.0 calls per request at every size;
the calls that are added come with smaller batches (mean 2.48 at 1 device,
2.17 at 64: more batches, so more dispatching, per request). The wall time
per request grows more than the calls do, 1.54x from 1 to 64 devices at
the median (1.04x-1.30x up to 32): the same work costs more with 64
schedulers' state in one process (per call, under cProfile: the predictor's
learner update 19.8 against 24.9 µs, asyncio's ``Handle.__init__`` 0.86
against 1.23 µs, 1 against 64 devices; the README has the details), and up to
16 devices each point's range overlaps one device's (at 32 and 64 it does not).
Before ``keep_executions`` became the fleet's total, each of the 64 devices
kept 100,000 executions; and before every point sent the same number of
requests (1 device ran 3,435, 64 ran 218,041), the wall cost per request
grew with the length of the run too.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from aiosched import simtime
from aiosched.fleet import Fleet
from aiosched.loadgen import Workload, build_report, run_open_loop
from aiosched.loadgen.workload import Schedule

MODEL = "resnet50"
PEAK_RPS = 848.0  # one sim device, 2 lanes, max batch 8 (README, `aiosched compare`)
LANES = 2
MAX_BATCH = 8
DEVICES = (1, 2, 4, 8, 16, 32, 64)

Row = dict[str, Any]


def first(schedule: Schedule, requests: int) -> Schedule:
    """The first ``requests`` sends of ``schedule``; the window ends where the next would."""
    if len(schedule) <= requests:
        raise ValueError(f"the schedule has {len(schedule)} sends, fewer than {requests}")
    return Schedule(
        schedule.offsets[:requests],
        schedule.model_index[:requests],
        schedule.deadlines_s[:requests],
        schedule.models,
        float(schedule.offsets[requests]),
        schedule.config,
    )


def point(
    devices: int,
    fraction: float,
    requests: int,
    deadline_s: float,
    seed: int,
    profile: bool = False,
) -> Row:
    """One fleet of ``devices`` sent ``requests`` at ``devices * fraction * PEAK_RPS``/s;
    with ``profile``, the calls per request instead of the wall time."""
    rate = devices * fraction * PEAK_RPS
    workload = Workload.parse(MODEL, str(deadline_s * 1e3))
    # More virtual time than the mean needs, then cut: the same count at every point.
    duration = requests / rate * 1.2
    while len(long := workload.schedule("poisson", rate, duration, seed)) <= requests:
        duration *= 1.5
    schedule = first(long, requests)
    times: dict[str, float] = {}
    profiler = cProfile.Profile() if profile else None

    async def main() -> Row:
        t0 = time.perf_counter()
        async with Fleet.sim(devices, lanes=LANES, seed=seed) as fleet:
            fleet.register(MODEL, max_batch_size=MAX_BATCH)
            await fleet.ready()
            t1 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            result = await run_open_loop(fleet.infer, schedule)
            if profiler is not None:
                profiler.disable()
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
    row: Row = {
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
    if profiler is not None:
        row.update(call_counts(profiler, sent))
    return row


def call_counts(profiler: cProfile.Profile, sent: int) -> Row:
    """Function calls per request: all of them, and those into :mod:`aiosched.fleet`."""
    fleet_dir = os.path.join("aiosched", "fleet") + os.sep
    calls = fleet_calls = 0
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, nc, *_rest) in stats.items():
        calls += nc
        if fleet_dir in filename:
            fleet_calls += nc
    return {
        "calls_per_request": round(calls / sent, 1),
        "fleet_calls_per_request": round(fleet_calls / sent, 2),
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


def summarise(devices: int, runs: list[Row], profiled: Row | None) -> Row:
    """A point's runs: the first run's figures (virtual time makes them the same in
    every run), the median and range of the wall cost, and the profiled counts."""
    walls = [r["us_per_request"] for r in runs]
    row = dict(runs[0])
    row.update(
        devices=devices,
        us_per_request=round(statistics.median(walls), 1),
        us_per_request_min=min(walls),
        us_per_request_max=max(walls),
        us_per_request_runs=walls,
        same_in_every_run=all(r["goodput_rps"] == runs[0]["goodput_rps"] for r in runs),
    )
    if profiled is not None:
        row["calls_per_request"] = profiled["calls_per_request"]
        row["fleet_calls_per_request"] = profiled["fleet_calls_per_request"]
    return row


def table(rows: list[Row]) -> str:
    base = rows[0]
    lines = [
        "| n | goodput/s | per device | met | p99 ms | batch | µs/req (range) | x 1 "
        "| calls/req | in fleet |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        calls = r.get("calls_per_request")
        fleet_calls = r.get("fleet_calls_per_request")
        lines.append(
            f"| {r['devices']} | {r['goodput_rps']:,.0f} | {r['goodput_per_device']:.1f} "
            f"| {r['attainment'] * 100:.2f} % | {r['p99_ms']:.1f} | {r['mean_batch']:.2f} "
            f"| {r['us_per_request']:.1f} ({r['us_per_request_min']:.1f}-"
            f"{r['us_per_request_max']:.1f}) "
            f"| {r['us_per_request'] / base['us_per_request']:.2f} "
            f"| {'-' if calls is None else f'{calls:.1f}'} "
            f"| {'-' if fleet_calls is None else f'{fleet_calls:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default=",".join(map(str, DEVICES)))
    ap.add_argument("--requests", type=int, default=40_000, help="sent at every point")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per point")
    ap.add_argument(
        "--profile-requests",
        type=int,
        default=10_000,
        help="requests of the one profiled run per point (0: no profiled run)",
    )
    ap.add_argument("--fraction", type=float, default=0.8, help="of one device's peak, 848/s")
    ap.add_argument("--deadline-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.devices.split(",") if c.strip()]
    if args.requests < 1 or args.repeat < 1 or args.profile_requests < 0 or not counts:
        ap.error("need --requests >= 1, --repeat >= 1, --profile-requests >= 0 and devices")
    deadline_s = args.deadline_ms / 1e3
    runs: dict[int, list[Row]] = {n: [] for n in counts}
    for r in range(args.repeat):
        for n in counts:  # in turn: a slow spell of the VM falls on every point
            row = run_point(n, args.fraction, args.requests, deadline_s, args.seed)
            runs[n].append(row)
            print(
                f"run {r + 1}/{args.repeat}, {n} devices: {row['sent']} sent, goodput "
                f"{row['goodput_rps']:,.0f}/s, attainment {row['attainment'] * 100:.2f} %, "
                f"{row['us_per_request']:.1f} µs/request, serve {row['serve_s']} s wall",
                file=sys.stderr,
            )
    rows = []
    for n in counts:
        profiled = None
        if args.profile_requests:
            profiled = run_point(
                n, args.fraction, args.profile_requests, deadline_s, args.seed, True
            )
            print(
                f"profiled, {n} devices: {profiled['calls_per_request']} calls/request, "
                f"{profiled['fleet_calls_per_request']} in aiosched.fleet",
                file=sys.stderr,
            )
        rows.append(summarise(n, runs[n], profiled))
    print(table(rows))
    if args.json:
        keys = ("requests", "repeat", "profile_requests", "fraction", "deadline_ms", "seed")
        config = {k: getattr(args, k) for k in keys}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"config": config, "rows": rows}, f, indent=2, allow_nan=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
