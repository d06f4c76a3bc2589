"""aiosched beside Ray Serve's ``@serve.batch`` and BentoML's adaptive batcher.

Not a test: a script that prints figures (and writes them with ``--json PATH``).
It needs the ``bench`` extra (``pip install -e '.[bench]'``); ray and bentoml
are imported lazily, and a contender whose package is missing is skipped with
one line saying so.

Part 1, overhead of the batching machinery alone. A zero-cost model (identity
on the batch list), max batch 32, ``--clients`` asyncio tasks each awaiting
``--requests`` calls one after another, on uvloop when installed. Each round
measures every contender in turn (fresh instance, a short warm-up with 8
clients, then the timed run); the median and best us/request over
``--rounds`` rounds are reported, with the mean batch size the model saw.

- ``floor``: bare asyncio futures that one task resolves in batches of 32
  (as in ``benchmarks/overhead.py``): what any asyncio batcher must pay.
- ``aiosched``: ``aiosched.Scheduler(backend="cpu", lanes=2)`` with
  ``aiosched.models.identity`` registered (max batch 32, deadline 60 s): the
  batch runs on a lane thread, results come back to the loop.
- ``ray_serve_batch``: an ``async def`` method decorated with
  ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0)`` on a plain class
  instance, called in-process (no Ray cluster, no handle, no replica). Outside a
  replica, ``_BatchQueue`` fails on its one ``serve.get_replica_context()`` call,
  which only logs a warning about ``max_ongoing_requests``; that method is
  replaced by a no-op, nothing else is changed. The batch runs on the loop.
- ``bentoml_cork``: ``bentoml._internal.marshal.dispatcher.CorkDispatcher``
  (``max_latency_in_ms=60000``, BentoML's default for a batchable API;
  ``max_batch_size=32``; ``get_batch_size=lambda x: 1``; its default
  ``NonBlockSema(1)``, one batch at a time) wrapping an ``async def`` batch
  function, called in-process as BentoML's service app calls it (no server).
  The batch runs on the loop; while a batch is out, its controller polls every
  ``TICKET_INTERVAL`` (1 ms).

Part 2, goodput under open-loop Poisson load (skipped with ``--no-serve``).
``mobilenet_v3_small`` with random weights, one torch thread per replica or
lane, a 100 ms deadline, aiosched's own open-loop driver and report (latency
from the intended send time), the same schedule (seed) for both:

- ``aiosched``: the embedded ``aiosched.Scheduler("cpu", lanes=2)``, default
  policy and predictor, max batch 8, target ``sched.infer``. Runs first, before
  Ray is started, so no Ray process runs beside it.
- ``ray_serve``: a local Ray instance (``num_cpus=2``, no dashboard), Serve
  with no HTTP proxy, a deployment of 2 replicas (1 CPU each) with
  ``@serve.batch(max_batch_size=8, batch_wait_timeout_s=--ray-wait-ms)`` and
  ``max_ongoing_requests=16`` (Ray's default of 5 would cap batches at 5),
  started with ``serve.run`` and called through its handle from the driver's
  process. The batch function runs the model directly in the replica (as
  Ray's examples do); each input tensor is serialised to the replica and each
  output row back. The deadline is not passed to Ray (it has none); a late
  answer counts as a miss.

    /work/benchvenv/bin/python benchmarks/peers.py --json /tmp/peers.json
    python benchmarks/peers.py --no-serve            # part 1 only
    python benchmarks/peers.py --rates 60,120 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosched

MAX_BATCH = 32
WARM_CLIENTS = 8

Call = Callable[[int], Awaitable[Any]]


def _missing(name: str) -> str | None:
    """``None`` if ``name`` imports, else one line saying it is missing."""
    try:
        __import__(name)
    except ImportError as exc:
        return f"{name} is not installed ({exc}); pip install -e '.[bench]'"
    return None


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


# --------------------------------------------------------------- part 1


async def _drive(call: Call, clients: int, requests: int) -> float:
    """``clients`` tasks, each awaiting ``requests`` calls in turn; returns seconds."""

    async def client() -> None:
        for j in range(requests):
            await call(j)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0


async def _warm_and_time(
    call: Call, clients: int, requests: int, batches: Callable[[], int]
) -> tuple[float, int]:
    """Warm up with a few clients, then time ``clients``; returns seconds and batches run."""
    await _drive(call, WARM_CLIENTS, requests)
    before = batches()
    elapsed = await _drive(call, clients, requests)
    return elapsed, batches() - before


async def floor_run(clients: int, requests: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[int]] = []
    wake = asyncio.Event()
    done = False
    batches = 0

    async def server() -> None:
        nonlocal batches
        while not done:
            await wake.wait()
            wake.clear()
            while pending:
                batch = pending[:MAX_BATCH]
                del pending[:MAX_BATCH]
                batches += 1
                for f in batch:
                    f.set_result(0)
                await asyncio.sleep(0)

    async def call(j: int) -> int:
        f: asyncio.Future[int] = loop.create_future()
        pending.append(f)
        if not wake.is_set():
            wake.set()
        return await f

    task = loop.create_task(server())
    timed = await _warm_and_time(call, clients, requests, lambda: batches)
    done = True
    wake.set()
    await task
    return timed


async def aiosched_run(clients: int, requests: int) -> tuple[float, int]:
    from aiosched.models import identity

    async with aiosched.Scheduler(backend="cpu", lanes=2) as sched:
        sched.register("zero", identity, max_batch_size=MAX_BATCH)

        def call(j: int) -> Awaitable[Any]:
            return sched.infer("zero", j, deadline=60.0)

        def count() -> int:
            return sum(sched.snapshot().models["zero"].batch_sizes.values())

        timed = await _warm_and_time(call, clients, requests, count)
        m = sched.snapshot().models["zero"]
        assert m.completed == (WARM_CLIENTS + clients) * requests, m.completed
        return timed


def _patch_ray_batch_queue() -> None:
    from ray.serve import batching

    # The only replica-context call in _BatchQueue: a warning about max_ongoing_requests.
    batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = (  # type: ignore[method-assign]
        lambda self: None
    )


async def ray_batch_run(clients: int, requests: int) -> tuple[float, int]:
    from ray import serve

    _patch_ray_batch_queue()
    batches = 0

    class Zero:  # a fresh class per run: @serve.batch keeps one queue per decorated function
        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.0)
        async def handle(self, xs: list[int]) -> list[int]:
            nonlocal batches
            batches += 1
            return xs

    z = Zero()
    timed = await _warm_and_time(z.handle, clients, requests, lambda: batches)  # type: ignore[arg-type]
    for task in asyncio.all_tasks():  # stop this queue's batching task
        if task.get_coro().__qualname__ == "_BatchQueue._process_batches":  # type: ignore[union-attr]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return timed


async def bentoml_run(clients: int, requests: int) -> tuple[float, int]:
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    batches = 0

    def fallback() -> Any:
        raise RuntimeError("BentoML dispatcher cancelled a request (overloaded)")

    async def batch_fn(xs: Any) -> list[Any]:
        nonlocal batches
        batches += 1
        return list(xs)

    dispatcher: Any = CorkDispatcher(
        max_latency_in_ms=60000,
        max_batch_size=MAX_BATCH,
        fallback=fallback,
        get_batch_size=lambda x: 1,
    )
    call = dispatcher(batch_fn)
    try:
        return await _warm_and_time(call, clients, requests, lambda: batches)
    finally:
        dispatcher.shutdown()


async def part1(args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, Any]:
    contenders: dict[str, Callable[[int, int], Awaitable[tuple[float, int]]]] = {
        "floor": floor_run,
        "aiosched": aiosched_run,
    }
    if (why := _missing("ray.serve")) is None:
        contenders["ray_serve_batch"] = ray_batch_run
    else:
        skipped["ray_serve_batch"] = why
    if (why := _missing("bentoml")) is None:
        contenders["bentoml_cork"] = bentoml_run
    else:
        skipped["bentoml_cork"] = why
    n = args.clients * args.requests
    runs: dict[str, list[float]] = {k: [] for k in contenders}
    batch_sizes: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            elapsed, batches = await fn(args.clients, args.requests)
            runs[name].append(elapsed / n * 1e6)
            batch_sizes[name].append(n / batches if batches else 0.0)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    out: dict[str, Any] = {
        "loop": loop,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "requests_per_run": n,
        "rounds": args.rounds,
        "max_batch_size": MAX_BATCH,
        "contenders": {},
    }
    for name in contenders:
        out["contenders"][name] = {
            "us_per_request_median": round(statistics.median(runs[name]), 2),
            "us_per_request_best": round(min(runs[name]), 2),
            "us_per_request_runs": [round(x, 2) for x in runs[name]],
            "mean_batch_size": round(statistics.median(batch_sizes[name]), 1),
        }
    return out


def print_part1(p1: dict[str, Any]) -> None:
    print(
        f"part 1: batching overhead, zero-cost model, max batch {p1['max_batch_size']}, "
        f"{p1['clients']} clients x {p1['requests_per_client']} calls, {p1['rounds']} rounds "
        f"interleaved, {p1['loop']}"
    )
    print(f"  {'contender':18} {'median us/req':>14} {'best us/req':>12} {'mean batch':>11}")
    for name, c in p1["contenders"].items():
        print(
            f"  {name:18} {c['us_per_request_median']:14.2f} {c['us_per_request_best']:12.2f} "
            f"{c['mean_batch_size']:11.1f}"
        )


# --------------------------------------------------------------- part 2

MODEL = "mobilenet_v3_small"


def _schedule(rate: float, duration: float, deadline_ms: float, seed: int) -> Any:
    from aiosched.loadgen import Workload

    workload = Workload.parse(MODEL, str(deadline_ms))
    return workload.schedule("poisson", rate, duration, seed)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    req = report["requests"]
    sent = req["sent"]
    lat = report["latency_ms"]
    return {
        "offered_rps": report["offered_rps"],
        "goodput_rps": report["goodput_rps"],
        "met_pct": round(100.0 * req["met_deadline"] / sent, 1) if sent else None,
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "requests": req,
        "send_lag_p99_ms": report["send_lag_ms"]["p99"],
    }


async def aiosched_serve(rates: list[float], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    import torch

    from aiosched.loadgen import BatchStats, OpenLoopDriver, build_report
    from aiosched.models import torchvision_model

    out: dict[str, dict[str, Any]] = {}
    model, shape = torchvision_model(MODEL)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    async with aiosched.Scheduler("cpu", lanes=2) as sched:
        sched.register(MODEL, model, max_batch_size=8, input_shape=shape, dtype=torch.float32)
        await sched.ready()
        for rate in rates:
            before = dict(sched.snapshot().models[MODEL].batch_sizes)
            schedule = _schedule(rate, args.duration, args.deadline_ms, args.seed)
            driver = OpenLoopDriver(
                sched.infer,
                schedule,
                make_input=lambda m: x,
                clock=sched.clock,
                drain_timeout=args.drain_s,
            )
            result = await driver.run()
            after = sched.snapshot().models[MODEL].batch_sizes
            sizes = {b: n - before.get(b, 0) for b, n in after.items() if n - before.get(b, 0)}
            report = build_report(result, batches=BatchStats.from_sizes(sizes))
            s = _summary(report)
            s["mean_batch_size"] = report["batches"]["mean_size"]
            out[f"{rate:g}"] = s
    return out


def _ray_deployment(max_batch: int, wait_s: float) -> Any:
    from ray import serve

    @serve.deployment(
        num_replicas=2, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2 * max_batch
    )
    class MobileNet:
        def __init__(self) -> None:
            import torch

            from aiosched.models import torchvision_model

            torch.set_num_threads(1)
            self.torch = torch
            self.model, shape = torchvision_model(MODEL)
            self.x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            self.infer.set_max_batch_size(max_batch)  # type: ignore[attr-defined]
            self.infer.set_batch_wait_timeout_s(wait_s)  # type: ignore[attr-defined]
            with torch.inference_mode():
                for b in range(1, max_batch + 1):
                    self.model(torch.randn(b, *shape))

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
        async def infer(self, xs: list[Any]) -> list[tuple[Any, int]]:
            torch = self.torch
            if isinstance(xs[0], int):  # --ray-input index: the replica holds the input
                xs = [self.x] * len(xs)
            with torch.inference_mode():
                y = self.model(torch.stack(xs))
            return [(row.clone(), len(xs)) for row in y]  # each answer says its batch size

        async def __call__(self, x: Any) -> tuple[Any, int]:
            return await self.infer(x)

    return MobileNet


async def ray_serve(rates: list[float], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    import ray
    import torch
    from ray import serve

    from aiosched.clock import PerfClock
    from aiosched.loadgen import BatchStats, OpenLoopDriver, build_report

    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    out: dict[str, dict[str, Any]] = {}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        serve.start(proxy_location="Disabled", logging_config={"log_level": "ERROR"})
        app = _ray_deployment(8, args.ray_wait_ms / 1000.0).bind()
        handle = serve.run(app, name="peers", route_prefix=None)
        from aiosched.models import ZOO

        x = torch.randn(ZOO[MODEL].input_shape, generator=torch.Generator().manual_seed(0))

        send: Callable[[str], Any] = (lambda m: x) if args.ray_input == "tensor" else (lambda m: 0)
        seen: dict[int, int] = {}  # batch size -> answers that came from a batch of that size

        async def target(model: str, x: Any, deadline: float) -> Any:
            y, n = await handle.remote(x)
            seen[n] = seen.get(n, 0) + 1
            return y

        # warm the handle's router and both replicas: 3 s at the lowest rate, not counted
        warm = _schedule(min(rates), 3.0, args.deadline_ms, args.seed + 1)
        await OpenLoopDriver(target, warm, make_input=send, clock=PerfClock()).run()
        for rate in rates:
            seen.clear()
            schedule = _schedule(rate, args.duration, args.deadline_ms, args.seed)
            driver = OpenLoopDriver(
                target, schedule, make_input=send, clock=PerfClock(), drain_timeout=args.drain_s
            )
            result = await driver.run()
            sizes = {n: max(1, round(k / n)) for n, k in seen.items()}
            report = build_report(result, batches=BatchStats.from_sizes(sizes))
            s = _summary(report)
            s["mean_batch_size"] = report["batches"]["mean_size"]
            out[f"{rate:g}"] = s
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return out


def print_part2(p2: dict[str, Any]) -> None:
    print(
        f"part 2: {MODEL}, poisson, {p2['duration_s']:g} s per rate, deadline "
        f"{p2['deadline_ms']:g} ms, seed {p2['seed']}, one torch thread per lane/replica"
    )
    print(
        f"  ray: batch_wait_timeout_s {p2['ray_batch_wait_ms'] / 1000:g}, input sent as "
        f"{p2['ray_input']}; unanswered {p2['drain_s']:g} s after the window: cancelled"
    )
    print(
        f"  {'system':10} {'rate/s':>7} {'goodput/s':>10} {'met %':>6} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'batch':>6} {'rejected':>8} {'cancelled':>9}"
    )
    for system in ("aiosched", "ray_serve"):
        for rate, s in p2.get(system, {}).items():
            print(
                f"  {system:10} {rate:>7} {_f(s['goodput_rps'])} {_f(s['met_pct'], 6)} "
                f"{_f(s['p50_ms'], 8)} {_f(s['p99_ms'], 8)} {_f(s['mean_batch_size'], 6)} "
                f"{s['requests']['rejected']:8d} {s['requests']['cancelled']:9d}"
            )


def _f(x: Any, width: int = 10) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:{width}.1f}"


# ----------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> dict[str, Any]:
    skipped: dict[str, str] = {}
    result: dict[str, Any] = {
        "versions": {k: _version(k) for k in ("aiosched", "ray", "bentoml", "torch", "uvloop")},
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    p1 = await part1(args, skipped)
    result["part1"] = p1
    print_part1(p1)
    for name, why in skipped.items():
        print(f"  {name}: skipped, {why}")
    if args.no_serve:
        result["skipped"] = skipped
        return result
    rates = [float(r) for r in args.rates.split(",")]
    p2: dict[str, Any] = {
        "model": MODEL,
        "duration_s": args.duration,
        "deadline_ms": args.deadline_ms,
        "seed": args.seed,
        "ray_batch_wait_ms": args.ray_wait_ms,
        "ray_input": args.ray_input,
        "drain_s": args.drain_s,
    }
    p2["aiosched"] = await aiosched_serve(rates, args)
    if (why := _missing("ray.serve")) is not None:
        skipped["ray_serve"] = why
    else:
        try:
            p2["ray_serve"] = await ray_serve(rates, args)
        except Exception as exc:  # a sandbox where a local Ray instance cannot start
            skipped["ray_serve"] = f"failed: {type(exc).__name__}: {exc}"
    result["part2"] = p2
    result["skipped"] = skipped
    print_part2(p2)
    if "ray_serve" in skipped:
        print(f"  ray_serve: skipped, {skipped['ray_serve']}")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--requests", type=int, default=100, help="calls per client (part 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--no-serve", action="store_true", help="part 1 only")
    ap.add_argument("--rates", default="60,120,180", help="requests/s (part 2)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per rate (part 2)")
    ap.add_argument("--deadline-ms", type=float, default=100.0)
    ap.add_argument("--ray-wait-ms", type=float, default=5.0, help="batch_wait_timeout_s, ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--ray-input",
        choices=("tensor", "index"),
        default="tensor",
        help="send Ray the input tensor, or an int for which the replica uses its own copy",
    )
    ap.add_argument(
        "--drain-s", type=float, default=5.0, help="wait this long for answers after the window"
    )
    a = ap.parse_args()
    res = aiosched.run(main(a), use_uvloop=not a.no_uvloop)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2, allow_nan=False)
            f.write("\n")
