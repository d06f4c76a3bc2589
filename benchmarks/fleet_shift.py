"""Load shift on a sim fleet: adaptive placement against two placements fixed by hand.

Eight simulated devices (2 lanes each) serve two models of different cost
from the sim catalogue: ``resnet50`` (A, about 1.5 ms of device time per
request at full batches, 50 ms deadline) and ``vgg19`` (B, about 4 ms, 100 ms
deadline). The offered load is open-loop Poisson whose mix changes every
``--phase`` virtual seconds. Loads are given in *devices' worth*: one device's
worth of A is 848/s (its measured peak, the README's ``compare`` search), of
B 313/s (scaled by the ratio of their full-batch costs: an estimate).

| phase | A, devices' worth | B, devices' worth |
| --- | --- | --- |
| A hot | 6 | 0.5 |
| B hot | 0.5 | 6 |
| both | 3 | 3 |
| A hot again | 6 | 0.5 |

Three placements of the same fleet get the same requests:

- **adaptive**: the Fleet's default rebalancing (every 0.5 s), each model
  starting on ``replicas=2`` devices;
- **default**: the Fleet as it comes: every model registered on every
  device, and the default rebalancing (which may shrink a model's
  replicas, and grow them back);
- **static by hand**: no rebalancing, A on devices 0-3 and B on 4-7, what a
  user who placed by hand for an even mix gets when the mix shifts;
- **static everywhere**: no rebalancing, both models on every device: the
  reference, which real devices may not afford in memory (every model's
  weights on every device).

Per phase and placement: goodput (requests that met their deadline per
second of the phase, by send time) and attainment (met per sent); for the
adaptive run, each model's replicas over time and the replicas grown and
shrunk; and the accounting per model from the fleet's snapshot: sent =
completed + rejected + failed + cancelled, nothing lost.

    python benchmarks/fleet_shift.py [--phase 4] [--seed 1] [--json PATH]

Measured on the 2-core development VM (``python benchmarks/fleet_shift.py
--json out.json`` under the machine lock, defaults: 4 s phases, 65,624
requests per placement); virtual time, so these figures do not depend on
the machine's speed (the replicas are looked at once a virtual second):

| phase | placement | goodput/s (A, B) | attainment A | attainment B | attainment all |
| --- | --- | --- | --- | --- | --- |
| A hot | adaptive | 4,900 (4,750, 150) | 92.9 % | 100.0 % | 93.1 % |
| A hot | default | 5,264 (5,114, 150) | 100.0 % | 100.0 % | 100.0 % |
| A hot | static by hand | 3,646 (3,495, 150) | 68.3 % | 100.0 % | 69.2 % |
| A hot | static everywhere | 5,264 (5,114, 150) | 100.0 % | 100.0 % | 100.0 % |
| B hot | adaptive | 1,923 (438, 1,486) | 100.0 % | 77.3 % | 81.5 % |
| B hot | default | 2,359 (438, 1,922) | 100.0 % | 100.0 % | 100.0 % |
| B hot | static by hand | 1,697 (438, 1,260) | 100.0 % | 65.5 % | 71.9 % |
| B hot | static everywhere | 2,359 (438, 1,922) | 100.0 % | 100.0 % | 100.0 % |
| both | adaptive | 3,516 (2,564, 953) | 100.0 % | 100.0 % | 100.0 % |
| both | default | 3,516 (2,564, 953) | 100.0 % | 100.0 % | 100.0 % |
| both | static by hand | 3,516 (2,564, 952) | 100.0 % | 100.0 % | 100.0 % |
| both | static everywhere | 3,516 (2,564, 953) | 100.0 % | 100.0 % | 100.0 % |
| A hot again | adaptive | 5,266 (5,104, 162) | 100.0 % | 100.0 % | 100.0 % |
| A hot again | default | 5,266 (5,104, 162) | 100.0 % | 100.0 % | 100.0 % |
| A hot again | static by hand | 3,628 (3,465, 162) | 67.9 % | 100.0 % | 68.9 % |
| A hot again | static everywhere | 5,266 (5,104, 162) | 100.0 % | 100.0 % | 100.0 % |

| t (s) | A replicas | B replicas |
| --- | --- | --- |
| 0 | 2: 0,1 | 2: 2,3 |
| 1 ... 4 | 7: 0,1,7,5,6,4,3 | 1: 2 |
| 5 | 7: 0,1,7,5,6,4,3 | 4: 2,6,5,4 |
| 6 ... 16 | 7: 0,1,7,5,6,4,3 | 6: 2,6,5,4,0,1 |

| placement | model | sent | completed (met) | rejected | failed | cancelled | lost |
| --- | --- | --- | --- | --- | --- | --- | --- |
| adaptive | resnet50 | 52,876 | 51,427 (51,418) | 1,449 | 0 | 0 | 0 |
| adaptive | vgg19 | 12,748 | 11,015 (11,005) | 1,733 | 0 | 0 | 0 |
| default | resnet50 | 52,876 | 52,876 (52,876) | 0 | 0 | 0 | 0 |
| default | vgg19 | 12,748 | 12,748 (12,748) | 0 | 0 | 0 | 0 |
| static by hand | resnet50 | 52,876 | 39,878 (39,846) | 12,998 | 0 | 0 | 0 |
| static by hand | vgg19 | 12,748 | 10,101 (10,099) | 2,647 | 0 | 0 | 0 |
| static everywhere | resnet50 | 52,876 | 52,876 (52,876) | 0 | 0 | 0 | 0 |
| static everywhere | vgg19 | 12,748 | 12,748 (12,748) | 0 | 0 | 0 | 0 |

Replicas grown / shrunk: adaptive 10 / 1 (the others none). Wall: adaptive
10.0 s, default 9.0 s, static by hand 9.0 s, static everywhere 10.1 s.

The default (every model on every device, rebalancing on) moved nothing
here: with both models everywhere, no device's load ever called for a grow,
and no replica could go while the others were busy. It meets what "static
everywhere" meets, in every phase.

Where adaptive (starting on 2 devices each) wins, and where it does not:

- Against the placement by hand, it wins in every phase where the mix is not
  the one the hand placed for: 93 % against 69 % of the requests met while A
  is hot, 82 % against 72 % while B is, 100 % against 69 % when A is hot
  again. In the even phase both meet everything.
- Against every model on every device it loses, only in the second or so
  after a shift: a rebalance sees a tick (0.5 s) of the new load before it
  moves, and a new replica serves only once warmed up on its device (A: 93 %
  against 100 % in its first phase; B: 77 % against 100 %, serving on 4
  replicas a second after the swap and on 6 a second later). In the phases
  after, placed, it meets everything, as everywhere does.
- It does not give devices back while they are busy: a replica is shrunk
  only when the devices left would stay under ``shrink_below`` (0.4) in
  total load, and with B hot every device is busier than that. So A keeps 7
  replicas through B's phase (it costs nothing here: the sim does not model
  memory) and B keeps 6 after it: from the first shift on, adaptive ends up
  close to "everywhere", which is what makes the last phase 100 %. On devices
  whose memory holds only some of the models that is not free, and the
  rebalance knows nothing of memory.
- Growth stops short of every device in a surge (B on 6 of 8): a busy device
  takes a hot model's part only if it ends at least 10 % cooler than the
  model's replicas (:data:`aiosched.fleet.rebalance.SPREAD_GAIN`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiosched import simtime
from aiosched.errors import DeadlineUnmeetable, Overloaded, SchedulerClosed
from aiosched.fleet import Fleet
from aiosched.loadgen import Workload, run_open_loop
from aiosched.loadgen.workload import Schedule

DEVICES = 8
LANES = 2
MAX_BATCH = 8
A, B = "resnet50", "vgg19"
DEADLINE_MS = {A: 50.0, B: 100.0}
DEVICE_RPS = {A: 848.0, B: 313.0}  # one device's worth of each (see the module doc)
PHASES: tuple[tuple[str, dict[str, float]], ...] = (
    ("A hot", {A: 6.0, B: 0.5}),
    ("B hot", {A: 0.5, B: 6.0}),
    ("both", {A: 3.0, B: 3.0}),
    ("A hot again", {A: 6.0, B: 0.5}),
)
PLACEMENTS = ("adaptive", "default", "static by hand", "static everywhere")
SAMPLE_EVERY = 1.0  # virtual seconds between two looks at the adaptive run's replicas

Row = dict[str, Any]


def shifting_schedule(phase_s: float, seed: int) -> Schedule:
    """Every phase's Poisson sends, one after another, as one schedule."""
    offsets, index, deadlines = [], [], []
    models = (A, B)
    deadline = ",".join(f"{m}={DEADLINE_MS[m]:g}" for m in models)
    for i, (_, mix) in enumerate(PHASES):
        rates = {m: mix[m] * DEVICE_RPS[m] for m in models}
        workload = Workload.parse(",".join(f"{m}:{rates[m]}" for m in models), deadline)
        part = workload.schedule(
            "poisson", rate=sum(rates.values()), duration=phase_s, seed=seed + i
        )
        offsets.append(part.offsets + i * phase_s)
        index.append(part.model_index)  # the same model order in every phase
        deadlines.append(part.deadlines_s)
    return Schedule(
        np.concatenate(offsets),
        np.concatenate(index),
        np.concatenate(deadlines),
        models,
        phase_s * len(PHASES),
    )


@dataclass
class Tally:
    """Outcomes of one model's requests sent in one phase."""

    sent: int = 0
    met: int = 0
    missed: int = 0
    rejected: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass
class Run:
    placement: str
    tallies: dict[tuple[int, str], Tally] = field(default_factory=dict)
    replicas: list[Row] = field(default_factory=list)
    accounting: dict[str, Row] = field(default_factory=dict)
    grown: int = 0
    shrunk: int = 0
    wall_s: float = 0.0


def make_fleet(placement: str) -> Fleet:
    if placement in ("adaptive", "default"):
        return Fleet.sim(DEVICES, lanes=LANES)  # the default rebalancing, every 0.5 s
    return Fleet.sim(DEVICES, lanes=LANES, rebalance_every=None)


def register(fleet: Fleet, placement: str) -> None:
    half = DEVICES // 2
    for i, model in enumerate((A, B)):
        if placement == "adaptive":
            where: dict[str, Any] = {"replicas": 2}
        elif placement == "static by hand":
            where = {"devices": list(range(i * half, (i + 1) * half))}
        else:  # default, static everywhere: on every device
            where = {}
        fleet.register(model, max_batch_size=MAX_BATCH, **where)


def run_placement(placement: str, schedule: Schedule, phase_s: float) -> Run:
    run = Run(placement)
    for p in range(len(PHASES)):
        for m in (A, B):
            run.tallies[p, m] = Tally()

    async def main() -> None:
        async with make_fleet(placement) as fleet:
            register(fleet, placement)
            await fleet.ready()
            t0 = fleet.now()

            async def target(model: str, x: Any, deadline: float) -> Any:
                sent = fleet.now()
                tally = run.tallies[min(int((sent - t0) / phase_s), len(PHASES) - 1), model]
                tally.sent += 1
                try:
                    y = await fleet.infer(model, x, deadline)
                except (DeadlineUnmeetable, Overloaded, SchedulerClosed):
                    tally.rejected += 1
                    raise
                except asyncio.CancelledError:
                    tally.cancelled += 1
                    raise
                except Exception:
                    tally.failed += 1
                    raise
                if fleet.now() - sent <= deadline:
                    tally.met += 1
                else:
                    tally.missed += 1
                return y

            async def sample() -> None:
                while True:
                    run.replicas.append(
                        {
                            "t": round(fleet.now() - t0, 3),
                            **{m: list(fleet.placement(m)) for m in (A, B)},
                        }
                    )
                    await asyncio.sleep(SAMPLE_EVERY)

            sampler = asyncio.get_running_loop().create_task(sample())
            await run_open_loop(target, schedule)
            sampler.cancel()
            snap = fleet.snapshot()
            run.grown, run.shrunk = snap.grown, snap.shrunk
            sent = schedule.counts()
            for m in (A, B):
                s = snap.models[m]
                run.accounting[m] = {
                    "sent": sent[m],
                    "submitted": s.submitted,
                    "completed": s.completed,
                    "met": s.met_deadline,
                    "rejected": s.rejected,
                    "failed": s.failed,
                    "cancelled": s.cancelled,
                    "pending": s.pending,
                }

    t = time.perf_counter()
    simtime.run(main())
    run.wall_s = round(time.perf_counter() - t, 1)
    return run


def phase_rows(runs: list[Run], phase_s: float) -> list[Row]:
    rows = []
    for p, (name, _) in enumerate(PHASES):
        row: Row = {"phase": name}
        for run in runs:
            for m in (A, B, None):
                ts = [run.tallies[p, x] for x in ((A, B) if m is None else (m,))]
                sent, met = sum(t.sent for t in ts), sum(t.met for t in ts)
                key = f"{run.placement}/{m or 'all'}"
                row[key] = {
                    "sent": sent,
                    "goodput_rps": round(met / phase_s, 1),
                    "attainment": round(met / sent, 4) if sent else None,
                }
        rows.append(row)
    return rows


def render(runs: list[Run], rows: list[Row]) -> str:
    out = [
        "| phase | placement | goodput/s (A, B) | attainment A | attainment B | attainment all |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        for run in runs:
            a, b, both = (row[f"{run.placement}/{m}"] for m in (A, B, "all"))
            out.append(
                f"| {row['phase']} | {run.placement} | {both['goodput_rps']:,.0f} "
                f"({a['goodput_rps']:,.0f}, {b['goodput_rps']:,.0f}) "
                f"| {a['attainment'] * 100:.1f} % | {b['attainment'] * 100:.1f} % "
                f"| {both['attainment'] * 100:.1f} % |"
            )
    adaptive = next(r for r in runs if r.placement == "adaptive")
    out += ["", "| t (s) | A replicas | B replicas |", "| --- | --- | --- |"]
    for s in adaptive.replicas:
        out.append(
            f"| {s['t']:.0f} | {len(s[A])}: {','.join(map(str, s[A]))} "
            f"| {len(s[B])}: {','.join(map(str, s[B]))} |"
        )
    out += [
        "",
        "| placement | model | sent | completed (met) | rejected | failed | cancelled | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        for m, acc in run.accounting.items():
            ended = acc["completed"] + acc["rejected"] + acc["failed"] + acc["cancelled"]
            out.append(
                f"| {run.placement} | {m} | {acc['sent']:,} | {acc['completed']:,} "
                f"({acc['met']:,}) | {acc['rejected']:,} | {acc['failed']} | {acc['cancelled']} "
                f"| {acc['sent'] - ended} |"
            )
    out.append("")
    out.append(
        "Replicas grown / shrunk: "
        + ", ".join(f"{r.placement} {r.grown} / {r.shrunk}" for r in runs if r.grown or r.shrunk)
        + ". Wall: "
        + ", ".join(f"{r.placement} {r.wall_s} s" for r in runs)
        + "."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", type=float, default=4.0, help="virtual seconds per phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--placements", default=",".join(PLACEMENTS))
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    chosen = [p.strip() for p in args.placements.split(",")]
    if args.phase <= 0 or not set(chosen) <= set(PLACEMENTS) or "adaptive" not in chosen:
        ap.error(f"need --phase > 0 and placements among {PLACEMENTS}, adaptive included")
    schedule = shifting_schedule(args.phase, args.seed)
    runs = []
    for placement in chosen:
        runs.append(run_placement(placement, schedule, args.phase))
        print(f"{placement}: done in {runs[-1].wall_s} s wall", file=sys.stderr)
    rows = phase_rows(runs, args.phase)
    print(render(runs, rows))
    lost = [
        (r.placement, m)
        for r in runs
        for m, acc in r.accounting.items()
        if acc["sent"] != acc["submitted"]
        or acc["pending"]
        or acc["sent"] != sum(acc[k] for k in ("completed", "rejected", "failed", "cancelled"))
    ]
    if args.json:
        data = {
            "config": {"phase_s": args.phase, "seed": args.seed, "phases": PHASES},
            "phases": rows,
            "runs": [
                {
                    "placement": r.placement,
                    "replicas": r.replicas,
                    "accounting": r.accounting,
                    "grown": r.grown,
                    "shrunk": r.shrunk,
                    "wall_s": r.wall_s,
                }
                for r in runs
            ],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
    if lost:
        print(f"requests unaccounted for: {lost}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
