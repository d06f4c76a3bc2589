"""Hypothesis, widened (issue 10): random interleavings of requests and operations.

Besides requests (with or without a deadline, with an input that makes its
batch raise or hang, cancelled through ``asyncio.wait_for`` or
``task.cancel``), an example may register a model while serving, make calls
that are invalid (unknown or unhashable model name, bad deadline), drift the
device, break lanes, unregister a model (draining or not, cancelling the caller,
or joined by a second call), and close the scheduler any number of times,
concurrently, with or without ``drain`` or a timeout, and cancel some of those
``aclose()`` calls; calls after the first close must be refused. Any policy,
and several predictors.

Invariant: every call ends exactly once, with its own output or a typed
aiosched error (or, where its caller cancelled it, ``CancelledError``), and
the scheduler's counters (and the final counters ``unregister`` returned for the
models that left) account for every call that got in. Each example runs
in virtual time under a guard: a call still waiting :data:`GUARD_S` virtual
seconds after the last operation fails the example instead of hanging it
(unless it waits by design: see the guard).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import aiosched
from aiosched import simtime
from aiosched.backends.sim import Drift, SimBackend, SimModel

GUARD_S = 120.0  # virtual seconds: far past any legitimate wait in these examples

REJECTIONS = (
    aiosched.DeadlineUnmeetable,
    aiosched.Overloaded,
    aiosched.SchedulerClosed,
    aiosched.ModelUnregistered,
)
FAILURES = (aiosched.ModelError, aiosched.LaneFailed)


def poisoned(x: object) -> bool:
    return isinstance(x, int) and x < 0


def hangs(x: object) -> bool:
    return isinstance(x, str)


def truth(scale: float = 1.0) -> dict[str, SimModel]:
    return {
        "a": SimModel(0.004 * scale, 0.002 * scale, noise=0.1, fails=poisoned, hangs=hangs),
        "b": SimModel(0.010 * scale, 0.004 * scale, noise=0.1, fails=poisoned, hangs=hangs),
        "c": SimModel(0.006 * scale, 0.003 * scale, noise=0.1, fails=poisoned, hangs=hangs),
    }


@dataclass(frozen=True)
class Infer:
    model: str
    budget: float | None
    poison: str | None  # "fails": the batch raises; "hangs": it never returns
    cancel: tuple[str, float] | None  # ("wait_for" | "task", after seconds)


@dataclass(frozen=True)
class Invalid:
    model: Any
    deadline: Any


@dataclass(frozen=True)
class Register:
    warmup: bool


@dataclass(frozen=True)
class DriftOp:
    speed: float
    scale: float  # the models' new ground truth: latencies times this
    delay: float


@dataclass(frozen=True)
class Close:
    drain: bool | None
    timeout: float | None
    cancel_after: float | None


@dataclass(frozen=True)
class Unregister:
    model: str
    drain: bool
    cancel_after: float | None  # cancel the caller; a second caller then waits for the end
    twice: bool  # a second caller joins in any case


Op = Infer | Invalid | Register | DriftOp | Close | Unregister

# (wait_for with a timeout of 0 cancels the call before it starts: asyncio's doing)
cancels = st.tuples(st.sampled_from(["wait_for", "task"]), st.floats(0.0, 0.05, exclude_min=True))
infers = st.builds(
    Infer,
    model=st.sampled_from(["a", "a", "b", "c"]),
    budget=st.none() | st.floats(0.002, 0.2),
    poison=st.sampled_from([None, None, None, None, None, "fails", "fails", "hangs"]),
    cancel=st.integers(0, 2).flatmap(lambda k: cancels if k == 0 else st.none()),
)
invalids = st.builds(
    Invalid,
    model=st.sampled_from(["zzz", "", 3, None, ("a",), ["a"], {"a": 1}]),
    deadline=st.sampled_from([0.05, None]),
) | st.builds(
    Invalid,
    model=st.just("a"),
    deadline=st.sampled_from([-1.0, 0.0, -0.0, math.nan, math.inf, -math.inf, True, "1", [1]]),
)
others: st.SearchStrategy[Op] = st.one_of(
    invalids,
    st.builds(Register, warmup=st.booleans()),
    st.builds(
        DriftOp,
        speed=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
        scale=st.sampled_from([0.5, 1.0, 3.0]),
        delay=st.floats(0.0, 0.05),
    ),
    st.builds(
        Close,
        drain=st.none() | st.booleans(),
        timeout=st.none() | st.floats(0.0, 0.1),
        cancel_after=st.none() | st.floats(0.0, 0.05),
    ),
    st.builds(
        Unregister,
        model=st.sampled_from(["a", "c", "c"]),
        drain=st.booleans(),
        cancel_after=st.none() | st.floats(0.0, 0.05),
        twice=st.booleans(),
    ),
)
# Mostly requests: one operation in four is something else.
ops: st.SearchStrategy[Op] = st.integers(0, 3).flatmap(lambda k: others if k == 0 else infers)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.floats(0.0, 0.2), ops), min_size=1, max_size=40),
    lanes=st.integers(1, 3),
    fail_lanes=st.just({}) | st.dictionaries(st.integers(0, 2), st.floats(0.0, 0.3), max_size=3),
    policy=st.sampled_from(["edf", "fifo", "sequential"]),
    predictor=st.sampled_from(["overlap:quantile=0.9", "solo", "ewma", "oracle"]),
    best_effort=st.booleans(),
    max_queue=st.integers(1, 50),
    seed=st.integers(0, 3),
)
def test_any_interleaving_resolves_every_call_once(
    plan: list[tuple[float, Op]],
    lanes: int,
    fail_lanes: dict[int, float],
    policy: str,
    predictor: str,
    best_effort: bool,
    max_queue: int,
    seed: int,
) -> None:
    fail_lanes = {lane: at for lane, at in fail_lanes.items() if lane < lanes}
    models = truth()
    plan = sorted(plan, key=lambda p: p[0])

    async def main() -> None:
        backend = SimBackend(lanes=lanes, models=models, seed=seed, fail_lanes=fail_lanes)
        sched = aiosched.Scheduler(
            backend, policy=policy, predictor=predictor, best_effort=best_effort
        )
        await sched.start()
        sched.register("a", models["a"], max_batch_size=4, max_queue=max_queue)
        sched.register("b", models["b"], max_batch_size=8, max_queue=max_queue, warmup=False)
        registered = {"a", "b"}
        # Models being unregistered, with the call that started it (it may have left already:
        # its caller learns that a step later).
        leaving: dict[str, Unregister] = {}
        unregistered: set[str] = set()
        finals: dict[int, aiosched.ModelSnapshot] = {}  # what unregister() returned, by id
        closing = False  # an aclose() has been called: every later call is refused
        t0 = sched.now()
        loop = asyncio.get_running_loop()
        # An exception in a loop callback (the scheduler's completion handlers) is a bug
        # that asyncio would only log.
        loop_errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: loop_errors.append(context))
        # Per call: (what it was, whether it should get in, its outcome)
        calls: list[tuple[Infer | Invalid, bool, object]] = []
        closes: list[tuple[Close, object]] = []

        async def infer(i: int, op: Infer) -> None:
            x: object = -i - 1 if op.poison == "fails" else f"hang{i}" if op.poison else i
            entered: list[bool] = []

            async def call() -> Any:
                # Runs in the same step as infer()'s checks: what it sees, infer() sees.
                entered.append(not closing and op.model in registered)
                return await sched.infer(op.model, x, op.budget)

            outcome: object
            try:
                if op.cancel is None:
                    outcome = ("result", await call())
                elif op.cancel[0] == "wait_for":
                    outcome = ("result", await asyncio.wait_for(call(), op.cancel[1]))
                else:
                    task = loop.create_task(call())
                    loop.call_later(op.cancel[1], task.cancel)
                    outcome = ("result", await task)
            except (asyncio.CancelledError, TimeoutError):
                outcome = "cancelled"
            except aiosched.AioschedError as exc:
                outcome = exc
            assert len(entered) == 1, "the call never started"
            calls.append((op, entered[0], outcome))
            if isinstance(outcome, tuple):
                assert outcome[1] == x, f"call {i} got another's output: {outcome[1]!r}"

        async def invalid(op: Invalid) -> None:
            refused = closing
            try:
                out: object = await sched.infer(op.model, 0, op.deadline)
            except aiosched.AioschedError as exc:
                out = exc
            calls.append((op, False, out))
            if refused:
                assert isinstance(out, aiosched.SchedulerClosed), out
            elif op.model == "a" and "a" in registered:
                assert isinstance(out, aiosched.InvalidInput), out
            else:
                assert isinstance(out, aiosched.UnknownModel), out

        async def close(op: Close) -> None:
            nonlocal closing
            me = asyncio.current_task()
            assert me is not None
            if op.cancel_after is not None:
                loop.call_later(op.cancel_after, me.cancel)
            closing = True  # in the same step as aclose() starts closing
            try:
                await sched.aclose(drain=op.drain, timeout=op.timeout)
                out: object = None
            except asyncio.CancelledError:
                assert op.cancel_after is not None
                out = "cancelled"
            closes.append((op, out))

        def register(op: Register) -> None:
            try:
                sched.register("c", models["c"], max_batch_size=4, warmup=op.warmup)
            except aiosched.SchedulerClosed:
                assert closing
            except aiosched.InvalidConfig:
                assert "c" in registered or "c" in leaving  # registered twice, or leaving
            else:
                assert not closing and "c" not in registered
                registered.add("c")
                leaving.pop("c", None)  # it had left

        async def unregister(op: Unregister, first: bool) -> None:
            name = op.model
            refused = closing
            takes = not closing and name in registered
            may_have_left = name in leaving
            if first:
                if takes:
                    registered.discard(name)
                    leaving[name] = op
                    unregistered.add(name)
                me = asyncio.current_task()
                assert me is not None
                if op.cancel_after is not None:
                    loop.call_later(op.cancel_after, me.cancel)
            try:
                # Runs in the same step as the checks above, up to its first wait.
                final = await sched.unregister(name, drain=op.drain)
            except asyncio.CancelledError:
                assert first and op.cancel_after is not None
                event("unregister: caller cancelled")
                return
            except aiosched.SchedulerClosed:
                assert refused
                event("unregister: refused, closing")
                return
            except aiosched.UnknownModel:
                assert not takes and not refused
                event("unregister: unknown model")
                return
            finally:
                if first and leaving.get(name) is op:
                    del leaving[name]
            assert not refused and (takes or may_have_left or not first)
            assert final.name == name and final.pending == 0
            assert final.queue_depth == 0 and final.in_flight == 0
            finals[id(final)] = final
            event("unregister: left, " + ("with requests" if final.submitted else "without"))

        def drift(op: DriftOp) -> None:
            at = sched.now() - backend.started_at + op.delay
            backend.add_drift([Drift(at, speed=op.speed, models=truth(op.scale))])

        tasks: dict[asyncio.Task[None], Op] = {}
        for i, (at, op) in enumerate(plan):
            await asyncio.sleep(max(0.0, t0 + at - sched.now()))
            if isinstance(op, Infer):
                tasks[loop.create_task(infer(i, op))] = op
            elif isinstance(op, Invalid):
                tasks[loop.create_task(invalid(op))] = op
            elif isinstance(op, Close):
                tasks[loop.create_task(close(op))] = op
            elif isinstance(op, Register):
                register(op)
            elif isinstance(op, Unregister):
                tasks[loop.create_task(unregister(op, True))] = op
                if op.twice or op.cancel_after is not None:
                    tasks[loop.create_task(unregister(op, False))] = op
            else:
                drift(op)
        await asyncio.sleep(0)  # every call made so far has been tried

        # The guard: in virtual time, a stranded call would otherwise hang the example.
        _, waiting = await asyncio.wait(tasks, timeout=GUARD_S) if tasks else (set(), set())
        if waiting:
            # One state waits by design: while every live lane is stuck in a hung batch
            # (the sim's last for hours), nothing runs until one comes back, or the close.
            # Meanwhile EDF (and sequential) still reject a request at its deadline; a
            # request with no deadline waits, and so does any under best_effort (never
            # rejected) or fifo (which rejects the expired only when a batch forms).
            # Anything else still waiting is stranded.
            lanes_now = sched.snapshot().lanes
            all_stuck = all(lane.stuck or not lane.alive for lane in lanes_now)
            # An unregistration waits for what of its model is queued.
            for task in waiting:
                op = tasks[task]
                assert all_stuck, f"stranded: {op} still waiting after {GUARD_S} s"
                if isinstance(op, Unregister):
                    continue
                assert isinstance(op, Infer) and op.cancel is None, (
                    f"stranded: {op} still waiting after {GUARD_S} s; lanes {lanes_now}"
                )
                may_wait = op.budget is None or best_effort or policy == "fifo"
                assert may_wait, f"stranded: {op} never rejected"
        await asyncio.wait_for(sched.aclose(), GUARD_S)
        if waiting:
            _, stranded = await asyncio.wait(waiting, timeout=GUARD_S)
            assert not stranded, f"{len(stranded)} calls still waiting after the close"
        for task in tasks:
            task.result()  # an assertion inside a call fails the example here
        assert sched.closed
        assert not loop_errors, [(c["message"], c.get("exception")) for c in loop_errors]
        assert all(out is None or out == "cancelled" for _, out in closes)
        # Infer after close: refused at once, typed.
        try:
            await sched.infer("a", 0, 0.1)
            raise AssertionError("infer after close did not raise")
        except aiosched.SchedulerClosed:
            pass

        snap = sched.snapshot()
        assert not sched.timeline.in_flight
        results = cancels = settled_errors = 0
        for op, gets_in, out in calls:
            if not gets_in:
                refusals = aiosched.SchedulerClosed | aiosched.UnknownModel | aiosched.InvalidInput
                assert isinstance(out, refusals), (op, out)
                if not isinstance(out, aiosched.SchedulerClosed):
                    known = ("a", "b")
                    assert (
                        isinstance(op, Invalid) or op.model not in known or op.model in unregistered
                    )
                continue
            assert isinstance(op, Infer)
            if out == "cancelled":
                assert op.cancel is not None, f"{op} was cancelled by nobody"
                cancels += 1
            elif isinstance(out, aiosched.ModelError):
                assert op.poison, f"a good input failed: {out!r}"
                settled_errors += 1
            elif isinstance(out, REJECTIONS + FAILURES):
                settled_errors += 1
            else:
                assert isinstance(out, tuple) and out[0] == "result", (op, out)
                assert not op.poison, "a poisoned input returned a result"
                results += 1
            if isinstance(out, aiosched.DeadlineUnmeetable) and best_effort:
                # best_effort turns rejection off, except for a deadline already past
                assert isinstance(out, aiosched.DeadlineExceeded), out

        got_in = sum(1 for _, gets_in, _ in calls if gets_in)

        def total(counter: str) -> int:
            return snap.total(counter) + sum(getattr(f, counter) for f in finals.values())

        done_counts = {k: total(k) for k in ("completed", "rejected", "failed", "cancelled")}
        assert total("submitted") == got_in, "a call got in uncounted, or counted twice"
        assert sum(done_counts.values()) == got_in, "a request was lost or counted twice"
        for m in snap.models.values():
            assert m.pending == 0 and m.queue_depth == 0 and m.in_flight == 0
            assert m.completed == m.met_deadline + m.missed_deadline
        assert not leaving and not set(snap.models) & (unregistered - registered)
        # A cancel can land after its request was settled: the caller sees the cancel,
        # the counters the outcome.
        late_cancels = cancels - done_counts["cancelled"]
        assert late_cancels >= 0
        assert done_counts["completed"] >= results
        assert done_counts["rejected"] + done_counts["failed"] >= settled_errors
        settled_then_cancelled = (done_counts["completed"] - results) + (
            done_counts["rejected"] + done_counts["failed"] - settled_errors
        )
        assert settled_then_cancelled == late_cancels

    simtime.run(main())
