"""Dispatcher cost per request at scale: many models, deep queues (sim backend, virtual time).

Three sweeps, each with the scheduler's default predictor and with ``solo``
(the cheapest), so that the predictor's share of the cost shows:

- ``models`` (same load per model): 1, 10, 100, 1000 registered sim models
  of tiny latency, each with ``--clients-per-model`` closed-loop clients
  (each awaits ``--calls`` calls one after another). The traffic per model is
  the same at every point, so what changes is only how many models the
  scheduler keeps: the scaling of the dispatcher itself.
- ``spread`` (same load in all): ``--requests`` requests spread round robin
  over the models by ``--clients`` clients in all. With more models each
  queue holds fewer requests, so batches shrink (to one at 1000 models) and
  the cost per request becomes the cost per batch: reported per batch too.
- ``queue``: 10^2 to 10^5 requests submitted at once to one model slow
  enough to keep them queued (no deadlines), then drained by the device.

Each point runs in a forked child on a fresh :func:`aiosched.simtime.run`
(virtual time: the device costs no wall time, so what is measured is the
scheduler, the predictor and asyncio). Figures: wall-clock microseconds per
request while serving (``time.perf_counter`` from the first call to the last
result: start-up, registration and shutdown are fixed costs, reported apart
as ``setup_ms``), the mean batch and the cost per batch, and the peak growth
of the child's resident memory in MiB. ``--gc-freeze`` adds the queue sweep with
``gc.freeze()`` called once the scheduler is up. Models register with
``warmup=False`` (a thousand models' warm-ups would dominate the figures);
the predictors learn from the served batches. Only the public API is used.

    python benchmarks/scale.py [--json] [--gc-freeze] [--clients-per-model 32] [--calls 8]
        [--requests 10000] [--clients 256] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimModel

MODEL_COUNTS = (1, 10, 100, 1000)
QUEUE_DEPTHS = (100, 1_000, 10_000, 100_000)
PREDICTORS = ("default", "solo")
LANES = 2
MAX_BATCH = 32

# Tiny and noise-free: the run is all scheduler. (In virtual time the latency costs no
# wall time at all; it only decides how many requests pile up between batches.)
TINY = SimModel(base=20e-6, per_item=2e-6, noise=0.0)
# Slow enough that a queue submitted at once is still deep while it drains.
SLOW = SimModel(base=2e-3, per_item=0.1e-3, noise=0.0)

Row = dict[str, Any]


def _scheduler(predictor: str) -> aiosched.Scheduler:
    if predictor == "default":
        return aiosched.Scheduler("sim", lanes=LANES)
    return aiosched.Scheduler("sim", lanes=LANES, predictor=predictor)


def models_point(models: int, per_client: int, clients: int, predictor: str) -> Row:
    """``clients`` closed-loop clients, each making ``per_client`` calls, round robin over
    ``models`` models (client ``c``'s ``j``-th call goes to model ``(c + j * clients) % M``)."""
    total = per_client * clients
    names = [f"m{i}" for i in range(models)]
    times: dict[str, float] = {}

    async def main() -> tuple[int, int]:
        t0 = time.perf_counter()
        async with _scheduler(predictor) as sched:
            for name in names:
                sched.register(name, TINY, max_batch_size=MAX_BATCH, warmup=False)
            await sched.ready()

            async def client(c: int) -> None:
                for j in range(per_client):
                    await sched.infer(names[(c + j * clients) % models], 0.0)

            t1 = time.perf_counter()
            await asyncio.gather(*(client(c) for c in range(clients)))
            times["serve"] = time.perf_counter() - t1
            snapshot = sched.snapshot()  # one: each costs O(models)
            done = sum(snapshot.models[n].completed for n in names)
            batches = sum(sum(snapshot.models[n].batch_sizes.values()) for n in names)
        times["fixed"] = time.perf_counter() - t0 - times["serve"]
        return done, batches

    done, batches = simtime.run(main())
    assert done == total, (done, total)
    serve = times["serve"]
    return {
        "models": models,
        "requests": total,
        "clients": clients,
        "us_per_request": round(serve / total * 1e6, 2),
        "mean_batch": round(total / batches, 2),
        "us_per_batch": round(serve / batches * 1e6, 2),
        "setup_ms": round(times["fixed"] * 1e3, 1),
        "wall_s": round(serve + times["fixed"], 3),
    }


def queue_point(depth: int, predictor: str, freeze: bool) -> Row:
    """``depth`` requests submitted at once to one slow model, then drained."""

    times: dict[str, float] = {}

    async def main() -> int:
        t0 = time.perf_counter()
        async with _scheduler(predictor) as sched:
            sched.register("slow", SLOW, max_batch_size=MAX_BATCH, warmup=False, max_queue=depth)
            await sched.ready()
            if freeze:
                gc.freeze()
            t1 = time.perf_counter()
            await asyncio.gather(*(sched.infer("slow", 0.0) for _ in range(depth)))
            times["serve"] = time.perf_counter() - t1
            done = sched.snapshot().models["slow"].completed
        times["fixed"] = time.perf_counter() - t0 - times["serve"]
        return done

    done = simtime.run(main())
    if freeze:
        gc.unfreeze()
    assert done == depth, (done, depth)
    return {
        "depth": depth,
        "gc_freeze": freeze,
        "us_per_request": round(times["serve"] / depth * 1e6, 2),
        "setup_ms": round(times["fixed"] * 1e3, 1),
        "wall_s": round(times["serve"] + times["fixed"], 3),
    }


# -- isolation: one forked child per point, for its own peak memory ----------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak resident size (Linux ``clear_refs``); whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _measured(point: Callable[..., Row], args: tuple[Any, ...]) -> Row:
    gc.collect()
    if _reset_peak() and (base := _status_kib("VmRSS")) is not None:
        row = point(*args)
        peak = _status_kib("VmHWM") or base
        row["peak_rss_mib"] = round((peak - base) / 1024, 1)
    else:  # no /proc: the process's lifetime peak, a bound only
        row = point(*args)
        row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _child(conn: Connection, point: Callable[..., Row], args: tuple[Any, ...]) -> None:
    try:
        conn.send(_measured(point, args))
    except BaseException as exc:  # the parent reports it; never hang it
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def isolated(point: Callable[..., Row], *args: Any) -> Row:
    if "fork" not in multiprocessing.get_all_start_methods():
        return _measured(point, args)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, point, args))
    process.start()
    send.close()
    row: Row = receive.recv()
    process.join()
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = MODEL_COUNTS[:3] if args.quick else MODEL_COUNTS
    depths = QUEUE_DEPTHS[:3] if args.quick else QUEUE_DEPTHS
    requests = args.requests // 10 if args.quick else args.requests
    out: dict[str, Any] = {
        "default_predictor": getattr(aiosched.scheduler, "DEFAULT_PREDICTOR", "default"),
        "lanes": LANES,
        "max_batch_size": MAX_BATCH,
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    calls = max(1, args.calls // 4) if args.quick else args.calls
    rows: list[Row] = []
    for predictor in PREDICTORS:
        for m in counts:
            clients = args.clients_per_model * m
            point = isolated(models_point, m, calls, clients, predictor)
            rows.append({"predictor": predictor, **point})
    out["models"] = rows
    rows = []
    for predictor in PREDICTORS:
        for m in counts:
            clients = min(args.clients, requests)
            point = isolated(models_point, m, requests // clients, clients, predictor)
            rows.append({"predictor": predictor, **point})
    out["spread"] = rows
    freezes = (False, True) if args.gc_freeze else (False,)
    rows = []
    for predictor in PREDICTORS:
        for freeze in freezes:
            for depth in depths:
                rows.append(
                    {"predictor": predictor, **isolated(queue_point, depth, predictor, freeze)}
                )
    out["queue"] = rows
    return out


def _table(rows: list[Row], key: str) -> None:
    columns = [
        key,
        "predictor",
        "gc_freeze",
        "requests",
        "us_per_request",
        "mean_batch",
        "us_per_batch",
        "setup_ms",
        "peak_rss_mib",
    ]
    columns = [c for c in columns if any(c in r for r in rows)]
    print("".join(f"{c:>16s}" for c in columns))
    for r in rows:
        if "error" in r:
            print(f"{r.get('predictor', '')!s:>16s}  error: {r['error']}")
            continue
        print("".join(f"{r.get(c, '')!s:>16s}" for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--clients-per-model", type=int, default=32, help="models sweep: clients per model"
    )
    parser.add_argument("--calls", type=int, default=8, help="models sweep: calls per client")
    parser.add_argument("--requests", type=int, default=10_000, help="spread sweep: in all")
    parser.add_argument("--clients", type=int, default=256, help="spread sweep: clients in all")
    parser.add_argument("--gc-freeze", action="store_true", help="also the queue sweep, frozen")
    parser.add_argument("--quick", action="store_true", help="smaller sweeps, for a smoke run")
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"sim backend, {LANES} lanes, max batch {MAX_BATCH}; default = {out['default_predictor']}"
    )
    print("\n(a) models, same load per model: wall us per request, peak RSS growth (MiB)")
    _table(out["models"], "models")
    print("\n(b) models, same load in all (batches shrink as models grow)")
    _table(out["spread"], "models")
    print("\n(c) deep queue, submitted at once: wall us per request, peak RSS growth (MiB)")
    _table(out["queue"], "depth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
