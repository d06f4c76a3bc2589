"""Send lag of the open-loop driver on a real clock, against a zero-cost target.

The lag of a send is when the target was actually called minus when it was
meant to be. For each rate this runs ``--duration`` seconds of arrivals
against ``async def infer(m, x, d): return x`` on uvloop (when importable) and
prints the p50, p99 and maximum lag in milliseconds. Target: p99 <= 1.5 ms.

    .venv/bin/python benchmarks/loadgen_lag.py                 # 1k, 5k, 10k requests/s
    .venv/bin/python benchmarks/loadgen_lag.py --sender loop   # asyncio timers only
    .venv/bin/python benchmarks/loadgen_lag.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from aiosched.clock import PerfClock
from aiosched.loadgen import ModelLoad, OpenLoopDriver, Workload, build_report


async def infer(model: str, x: Any, deadline: float) -> Any:
    return x


def _busy_cpu_s() -> float | None:
    """CPU seconds all processes have used (Linux ``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _loop_factory(use_uvloop: bool) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def measure(
    rate: float,
    duration: float,
    arrival: str,
    sender: str,
    spin_s: float,
    seed: int,
    use_uvloop: bool,
) -> dict[str, Any]:
    workload = Workload((ModelLoad("m", 1.0, 1.0),))
    schedule = workload.schedule(arrival, rate, duration, seed)
    loop_name, factory = _loop_factory(use_uvloop)

    async def main() -> dict[str, Any]:
        driver = OpenLoopDriver(
            infer,
            schedule,
            clock=PerfClock(),
            sender=sender,  # type: ignore[arg-type]
            spin_s=spin_s,
        )
        report = build_report(await driver.run())
        return {
            "rate": rate,
            "arrival": arrival,
            "loop": loop_name,
            "sender": driver.sender,
            "sent": report["requests"]["sent"],
            "completed": report["requests"]["completed"],
            "achieved_rps": report["achieved_rps"],
            "send_lag_ms": report["send_lag_ms"],
            "latency_ms": {k: report["latency_ms"][k] for k in ("p50", "p99", "max")},
        }

    busy0, own0, wall0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        row = runner.run(main())
    busy1, own1, wall = _busy_cpu_s(), _own_cpu_s(), time.perf_counter() - wall0
    # Lag on a 2-core machine depends on what else runs: report the other processes' CPU use.
    row["own_cpus"] = round((own1 - own0) / wall, 2)
    row["other_cpus"] = (
        round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 2)
        if busy0 is not None and busy1 is not None
        else None
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,5000,10000", help="requests/s, comma-separated")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per rate")
    parser.add_argument(
        "--arrival", default="poisson", help="arrival spec (poisson, constant, ...)"
    )
    parser.add_argument("--sender", choices=("auto", "loop", "thread"), default="auto")
    parser.add_argument("--spin-us", type=float, default=200.0, help="thread sender spin window")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per rate (each is printed)")
    parser.add_argument("--no-uvloop", action="store_true", help="use the asyncio loop")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    rows = [
        measure(
            float(r),
            args.duration,
            args.arrival,
            args.sender,
            args.spin_us / 1e6,
            args.seed + k,
            not args.no_uvloop,
        )
        for r in args.rates.split(",")
        for k in range(args.repeat)
    ]
    if args.json:
        out = {
            "benchmark": "loadgen_lag",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "duration_s": args.duration,
            "results": rows,
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"send lag, zero-cost target, {args.duration:g} s per rate, {args.arrival} arrivals, "
        f"{os.cpu_count()} CPUs (own cpu, others: CPUs busy with this run, with other processes)"
    )
    head = ("rate/s", "loop", "sender", "sent", "p50 ms", "p99 ms", "max ms", "own cpu", "others")
    print(" ".join(f"{h:>8}" for h in head))
    for row in rows:
        lag = row["send_lag_ms"]
        print(
            f"{row['rate']:>8.0f} {row['loop']:>8} {row['sender']:>8} {row['sent']:>8} "
            f"{lag['p50']:>8.3f} {lag['p99']:>8.3f} {lag['max']:>8.3f} "
            f"{row['own_cpus']:>8} {row['other_cpus']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
