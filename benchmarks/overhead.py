"""Scheduler overhead per request, against the floor of bare asyncio futures.

A zero-cost model (it returns its inputs) on the cpu backend's lane threads,
max batch 32, real clock, uvloop when installed. ``clients`` tasks each await
``requests`` calls one after another, so batches fill as they would under
load. The floor is the same clients awaiting bare futures that one server
task resolves in batches of 32: what any asyncio batcher must pay.

    python benchmarks/overhead.py [--json] [--clients 256] [--requests 200] [--predictor solo]
        [--learn-gap 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiosched
from aiosched.backends.cpu import CpuBackend
from aiosched.models import identity
from aiosched.scheduler import DEFAULT_PREDICTOR


async def scheduler_run(
    clients: int, requests: int, lanes: int, predictor: str, learn_gap: float | None = None
) -> float:
    kw = {} if learn_gap is None else {"learn_gap": learn_gap}
    async with aiosched.Scheduler(CpuBackend(lanes=lanes), predictor=predictor, **kw) as sched:
        sched.register("zero", identity, max_batch_size=32)

        async def client(i: int) -> None:
            for j in range(requests):
                await sched.infer("zero", j, deadline=60.0)

        await asyncio.gather(*(client(i) for i in range(8)))  # warm the code paths
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - t0
        snap = sched.snapshot()
        assert snap.models["zero"].completed == (8 + clients) * requests
        return elapsed


async def floor_run(clients: int, requests: int) -> float:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[int]] = []
    wake = asyncio.Event()
    done = False

    async def server() -> None:
        while not done:
            await wake.wait()
            wake.clear()
            while pending:
                batch = pending[:32]
                del pending[:32]
                for f in batch:
                    f.set_result(0)
                await asyncio.sleep(0)

    async def client(i: int) -> None:
        for _ in range(requests):
            f: asyncio.Future[int] = loop.create_future()
            pending.append(f)
            if not wake.is_set():
                wake.set()
            await f

    task = loop.create_task(server())
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    done = True
    wake.set()
    await task
    return elapsed


async def main(args: argparse.Namespace) -> dict[str, float | int | str]:
    n = args.clients * args.requests
    floors, scheds = [], []
    for _ in range(args.repeats):
        floors.append(await floor_run(args.clients, args.requests) / n * 1e6)
        elapsed = await scheduler_run(
            args.clients, args.requests, args.lanes, args.predictor, args.learn_gap
        )
        scheds.append(elapsed / n * 1e6)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {
        "us_per_request": round(min(scheds), 2),
        "floor_us_per_request": round(min(floors), 2),
        "us_per_request_runs": [round(x, 2) for x in scheds],
        "floor_us_per_request_runs": [round(x, 2) for x in floors],
        "requests_per_run": n,
        "clients": args.clients,
        "max_batch_size": 32,
        "lanes": args.lanes,
        "predictor": args.predictor,
        "learn_gap": args.learn_gap,
        "loop": loop,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument(
        "--predictor", default=DEFAULT_PREDICTOR, help="the scheduler's (default: its own)"
    )
    ap.add_argument(
        "--learn-gap", type=float, default=None, help="Scheduler(learn_gap=...), seconds"
    )
    a = ap.parse_args()
    result = aiosched.run(main(a), use_uvloop=not a.no_uvloop)
    if a.json:
        json.dump(result, sys.stdout)
        print()
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
