"""Contract kits: check that your own predictor or backend keeps aiosched's contracts.

The scheduler relies on a few promises from every :class:`~aiosched.Predictor`
and every :class:`~aiosched.Backend` that types cannot express: a prediction
is always a finite, positive number of seconds; ``learn`` never mutates the
execution it is given; a backend calls ``on_done`` on the event-loop thread,
never from inside ``submit``; and so on. The two functions here check those
promises the way river's ``check_estimator`` checks an estimator: call one in
a test, and it either returns quietly or raises :class:`AssertionError` whose
message starts with the clause that broke::

    from aiosched.testing import check_backend, check_predictor

    def test_my_predictor_keeps_the_contract() -> None:
        check_predictor(MyPredictor(window=50))

    def test_my_backend_keeps_the_contract() -> None:
        check_backend(MyBackend(lanes=2))

:func:`check_predictor` works on copies (``clone()`` and pickles), so the
predictor passed in is left as it was. It learns from a short trace recorded
once per process on the simulated backend in virtual time, and finishes by
driving a real :class:`~aiosched.Scheduler` with a clone on the sim backend.

:func:`check_backend` takes a backend that has not been started, runs one
whole life of it (start, load, batches on one lane and on two at once, a
failing model, a model it cannot run, close twice) and leaves it closed. It
brings a model that doubles its input: a torch module for tensor backends
(cpu, cuda, and yours if it runs torch modules), a
:class:`~aiosched.SimModel` for the sim backend. A backend that runs
something else passes ``model=``, ``make_input=`` and ``expected=``.

Both are synchronous: they run their own event loop (a virtual-time one for
the sim backend), so call them from a plain test function, not from inside a
running loop.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import math
import pickle
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import torch

from . import simtime
from .backends.base import Backend, Completion
from .backends.sim import CATALOGUE, SimBackend, SimModel
from .errors import InvalidConfig
from .predict.base import Predictor
from .predict.profile import Profile, measure
from .spec import ModelSpec
from .timeline import Execution, Running

__all__ = ["check_backend", "check_predictor"]

_T = TypeVar("_T")

# -- predictors ------------------------------------------------------------------------

# The models of the recorded trace: three of the simulated catalogue, light to heavy, so
# that a predictor sees co-location between unlike models.
_MODELS = ("resnet50", "yolov8n", "vgg19")
_MAX_BATCH = 8
# Short enough to record in well under a second of virtual time, long enough that every
# model runs alone and beside the others at several batch sizes.
_TRACE_RATE = 200.0
_TRACE_SECONDS = 4.0
# How close a seeded predictor's guess must be to the profile's solo latency: interpolation
# and smoothing may move it, but not by more than this fraction.
_SEED_TOLERANCE = 0.35


def check_predictor(predictor: Predictor, *, learns: bool = True) -> None:
    """Raise :class:`AssertionError` unless ``predictor`` keeps the predictor contract.

    The clauses, each named in the message when it breaks:

    - *params*: ``params()`` returns the constructor's arguments, so that
      ``type(p)(**p.params())`` builds a predictor with the same ``params()``.
    - *fresh*: a clone knows no model and predicts a finite, positive latency
      for any query (a model never seen, co-runners or none).
    - *learn*: ``learn`` does not mutate the execution it is given; after a
      trace every prediction is still finite and positive.
    - *knows* (``learns=True``): after learning from a trace, the traced models
      are known.
    - *seed* (``learns=True``): after ``seed(profile)`` the profiled models are
      known and a solo prediction is within 35 % of the profile's latency
      (implement :meth:`~aiosched.Predictor.observe` to take profiles).
    - *clone*: ``clone()`` of a trained predictor is of the same type, has the
      same ``params()``, knows nothing and predicts as a fresh one does.
    - *pickle*: a pickled copy predicts and reports the same error as the
      original, and goes on learning the same way.
    - *error*: the running error comes from the base class: ``learn`` passes
      each execution through :meth:`~aiosched.Predictor.learn` (subclasses
      implement ``_learn``), so ``error().count`` is the number of served
      executions learnt.
    - *forget* (``learns=True``): after ``forget(model)`` on a trained copy the
      model is unknown and predicted alone as a fresh predictor predicts it,
      while the other models keep their predictions alone (the scheduler
      calls it when a model is unregistered); forgetting a name never seen
      is fine.
    - *repr*: ``repr(p)`` starts with the class name and ``(``.
    - *scheduler*: a clone drives a :class:`~aiosched.Scheduler` on the sim
      backend: 40 requests with ample deadlines all come back, and the
      predictor has scored its predictions.

    ``learns=False`` is for a predictor that learns nothing from traces or
    profiles (the sim ``oracle``, which reads the backend it is attached to):
    the *knows* and *seed* clauses are skipped.
    """
    if not isinstance(predictor, Predictor):
        raise AssertionError(f"not a Predictor: {type(predictor).__name__}")
    cls = type(predictor)
    params = _clause("params", lambda: predictor.params())
    rebuilt = _clause("params", lambda: cls(**params))
    _expect("params", rebuilt.params() == params, f"{cls.__name__}(**p.params()).params() differs")
    fresh = _clause("fresh", predictor.clone)
    _expect(
        "fresh",
        not fresh.knows("resnet50"),
        "clone() says it knows 'resnet50' (a clone starts untrained)",
    )
    _predictions_are_sane("fresh", fresh)

    trace = _trace()
    ordered = sorted(trace, key=lambda e: e.end)
    trained = predictor.clone()
    before = copy.deepcopy(ordered)
    _clause("learn", lambda: _learn_all(trained, ordered))
    _expect("learn", ordered == before, "learn() changed an execution it was given")
    _predictions_are_sane("learn", trained)
    if learns:
        for model in _MODELS:
            _expect("knows", trained.knows(model), f"knows({model!r}) is false after a trace")

    served = [e for e in trace if e.ok and not e.warmup]
    err = trained.error()
    _expect(
        "error",
        err.count == len(served),
        f"error().count is {err.count} after learning {len(served)} served executions; "
        "override _learn(), not learn(), so that the base class scores each prediction",
    )
    _expect(
        "error",
        err.mape >= 0 and err.mape <= err.p95_ape,
        f"error() is inconsistent: mape={err.mape}, p95_ape={err.p95_ape}",
    )

    if learns:
        seeded = predictor.clone()
        _clause("seed", lambda: seeded.seed(_profile()))
        for model in _MODELS:
            _expect(
                "seed",
                seeded.knows(model),
                f"knows({model!r}) is false after seed(profile); implement observe()",
            )
        solo = _profile().latency("vgg19", 4)
        guess = seeded.predict("vgg19", 4, (), 0.0)
        _expect(
            "seed",
            abs(guess - solo) <= _SEED_TOLERANCE * solo,
            f"after seed(profile), vgg19 at batch 4 alone is predicted {guess:.6f} s; "
            f"the profile measured {solo:.6f} s",
        )

    clone = _clause("clone", trained.clone)
    _expect(
        "clone", type(clone) is cls, f"clone() is a {type(clone).__name__}, not a {cls.__name__}"
    )
    _expect("clone", clone.params() == trained.params(), "clone() has other params()")
    _expect("clone", not clone.knows("resnet50"), "clone() of a trained predictor knows 'resnet50'")
    _expect("clone", clone.error().count == 0, "clone() of a trained predictor has an error count")
    untrained = predictor.clone()
    for query in _queries():
        _expect(
            "clone",
            clone.predict(*query) == untrained.predict(*query),
            f"clone() of a trained predictor predicts {query[:2]} unlike an untrained one",
        )

    copied = _clause("pickle", lambda: pickle.loads(pickle.dumps(trained)))
    _same_predictions("pickle", copied, trained, "a pickled copy")
    _expect("pickle", copied.error() == trained.error(), "a pickled copy reports another error()")
    extra = [e for e in _trace(rate=150.0) if e.ok and not e.warmup][:50]
    for e in sorted(extra, key=lambda e: e.end):
        copied.learn(e)
        trained.learn(e)
    _same_predictions("pickle", copied, trained, "a pickled copy, after learning more,")

    if learns:
        _forgets(trained, predictor.clone())

    text = repr(predictor)
    _expect(
        "repr", text.startswith(cls.__name__ + "("), f"repr() is {text!r}, not {cls.__name__}(...)"
    )

    _clause("scheduler", lambda: simtime.run(_drive(predictor.clone())))


def _forgets(trained: Predictor, untrained: Predictor) -> None:
    forgetful = _clause("forget", lambda: pickle.loads(pickle.dumps(trained)))
    gone, kept = _MODELS[0], _MODELS[1]
    now = 1e6  # later than the trace: what a scheduler would ask
    kept_alone = [forgetful.predict(kept, b, (), now) for b in (1, 4)]
    _clause("forget", lambda: forgetful.forget(gone))
    _clause("forget", lambda: forgetful.forget("never-seen"))
    _expect("forget", not forgetful.knows(gone), f"knows({gone!r}) after forget({gone!r})")
    for b in (1, 4):
        got, fresh = forgetful.predict(gone, b, (), now), untrained.predict(gone, b, (), now)
        _expect(
            "forget",
            got == fresh,
            f"after forget({gone!r}), {gone} at batch {b} alone is predicted {got!r}; "
            f"a fresh predictor says {fresh!r}",
        )
    again = [forgetful.predict(kept, b, (), now) for b in (1, 4)]
    _expect(
        "forget",
        again == kept_alone,
        f"forget({gone!r}) changed {kept}'s predictions alone: {kept_alone} -> {again}",
    )


def _queries() -> list[tuple[str, int, tuple[Running, ...], float]]:
    """What the dispatcher asks: alone, beside one batch, beside two, a model never seen."""
    return [
        ("resnet50", 1, (), 0.0),
        ("resnet50", 8, _running(("vgg19", 4, 0.01)), 0.0),
        ("yolov8n", 3, _running(("resnet50", 2, 0.003), ("vgg19", 8, 0.02)), 0.0),
        ("never-seen", 2, _running(("resnet50", 1, 0.002)), 0.0),
    ]


def _running(*items: tuple[str, int, float]) -> tuple[Running, ...]:
    """In flight: ``(model, batch size, seconds left)``, started at 0 on lanes 0, 1, ..."""
    return tuple(
        Running(1000 + i, model, b, i, 0.0, left) for i, (model, b, left) in enumerate(items)
    )


def _predictions_are_sane(clause: str, predictor: Predictor) -> None:
    for model, b, in_flight, now in _queries():
        try:
            value = predictor.predict(model, b, in_flight, now)
        except Exception as exc:
            raise AssertionError(f"[{clause}] predict({model!r}, {b}, ...) raised {exc!r}") from exc
        ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
        _expect(
            clause,
            ok,
            f"predict({model!r}, {b}, <{len(in_flight)} running>) returned {value!r}; "
            "predictions must be finite and positive",
        )


def _same_predictions(clause: str, a: Predictor, b: Predictor, what: str) -> None:
    for query in _queries():
        _expect(
            clause,
            a.predict(*query) == b.predict(*query),
            f"{what} predicts {query[:2]} unlike the original",
        )


def _learn_all(predictor: Predictor, executions: Sequence[Execution]) -> None:
    fit = getattr(predictor, "fit", None)
    if callable(fit):  # an offline predictor is fitted on the trace before it replays it
        fit(executions)
    for e in executions:
        predictor.learn(e)


async def _drive(predictor: Predictor) -> None:
    from .scheduler import Scheduler  # the scheduler imports the predictors: import it late

    model = SimModel(base=0.005, per_item=0.0, noise=0.0, exponent=1.0)
    backend = SimBackend(lanes=2, models={"m": model})
    async with Scheduler(backend, predictor=predictor) as sched:
        sched.register("m", max_batch_size=4)
        await sched.ready()
        results = await asyncio.gather(
            *(sched.infer("m", i, deadline=1.0) for i in range(40)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise AssertionError(
                f"[scheduler] {len(failed)} of 40 requests with 1 s deadlines on an idle "
                f"device failed, the first with {failed[0]!r}"
            )
        _expect("scheduler", results == list(range(40)), "requests got other requests' results")
        _expect(
            "scheduler",
            sched.predictor.error().count > 0,
            "the scheduler ran batches but error().count is 0",
        )


@functools.cache
def _trace(rate: float = _TRACE_RATE) -> tuple[Execution, ...]:
    """Poisson traffic over :data:`_MODELS` on a two-lane sim backend, as executions.

    Deterministic (seeded, virtual time), so it is recorded once per process.
    """
    return simtime.run(_record(rate))


async def _record(rate: float) -> tuple[Execution, ...]:
    from .loadgen.driver import run_open_loop
    from .loadgen.workload import ModelLoad, Workload
    from .scheduler import Scheduler

    workload = Workload(tuple(ModelLoad(m, 1.0, 0.1) for m in _MODELS))
    schedule = workload.schedule("poisson", rate, _TRACE_SECONDS, seed=0)
    async with Scheduler(SimBackend(lanes=2, seed=0), predictor="solo") as sched:
        for m in _MODELS:
            sched.register(m, max_batch_size=_MAX_BATCH)
        await sched.ready()
        await run_open_loop(sched.infer, schedule, make_input=lambda _: 0.0)
        return tuple(sched.timeline.history)


@functools.cache
def _profile() -> Profile:
    """Each traced model measured alone on the sim backend at every batch size."""
    specs = [ModelSpec(m, CATALOGUE[m], max_batch_size=_MAX_BATCH) for m in _MODELS]
    sizes = list(range(1, _MAX_BATCH + 1))
    return simtime.run(measure(SimBackend(lanes=1, seed=0), specs, sizes, repeats=5, warmup=1))


# -- backends --------------------------------------------------------------------------


class _Doubler(torch.nn.Module):
    """Doubles its batch after some matrix products, so that two lanes overlap in time."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.work = torch.nn.Parameter(torch.randn(size, size) / size**0.5, requires_grad=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        w: torch.Tensor = self.work
        for _ in range(40):
            w = torch.tanh(w @ self.work)
        return batch * 2 + 0 * w.sum().to(batch.device)


def _broken(batch: Any) -> Any:
    raise ValueError("a model that always raises (aiosched.testing.check_backend)")


def _tensor_input(i: int) -> Any:
    return torch.full((2,), float(i))


def _double(x: Any) -> Any:
    return x * 2


def check_backend(
    backend: Backend,
    *,
    model: ModelSpec | None = None,
    failing: ModelSpec | None = None,
    make_input: Callable[[int], Any] | None = None,
    expected: Callable[[Any], Any] | None = None,
    run: Callable[[Coroutine[Any, Any, None]], None] | None = None,
) -> None:
    """Raise :class:`AssertionError` unless ``backend`` keeps the backend contract.

    ``backend`` must not have been started; it is closed on return. The clauses,
    each named in the message when it breaks:

    - *lanes*: the constructor refuses ``lanes=0`` with
      :class:`~aiosched.InvalidConfig` (when it takes ``lanes``).
    - *submit*: ``submit`` returns before the batch completes, and ``on_done``
      is called once, on the event-loop thread.
    - *outputs*: a batch of three gives one output per input, in input
      order, each ``expected(input)``; ``start <= end <= clock.now()``.
    - *concurrency* (two lanes or more): batches on lanes 0 and 1 overlap in
      time.
    - *model errors*: a model that raises gives a :class:`~aiosched.backends.Completion`
      with the error and no outputs; ``submit`` does not raise it.
    - *load*: ``load`` refuses a model it cannot run with
      :class:`~aiosched.InvalidConfig`.
    - *unload*: ``unload(name)`` of a model loaded before, and of a name never
      loaded, does not raise, and the name then loads again and runs (the
      scheduler unloads a model when it is unregistered).
    - *aclose*: closing twice is fine.

    ``model`` is a :class:`~aiosched.ModelSpec` the backend can run,
    ``make_input(i)`` the ``i``-th input for it and ``expected(x)`` its output
    for input ``x``; ``failing`` a spec whose model raises on every batch.
    They default to a model that doubles its input (a ``SimModel`` on the
    sim backend, a torch module on any other) and float tensors of shape
    ``(2,)``. ``run`` runs a coroutine to completion: virtual time
    (:func:`aiosched.simtime.run`) for the sim backend, :func:`asyncio.run`
    otherwise.
    """
    if not isinstance(backend, Backend):
        raise AssertionError(f"not a Backend: {type(backend).__name__}")
    sim = isinstance(backend, SimBackend)
    if model is None:
        if sim:
            model = ModelSpec(
                "double",
                SimModel(0.01, 0.0, exponent=1.0, noise=0.0, output=_double),
                max_batch_size=4,
            )
        else:
            size = 2048 if backend.name == "cuda" else 256  # a few ms either way
            model = ModelSpec(
                "double", _Doubler(size), max_batch_size=4, input_shape=(2,), dtype=torch.float32
            )
    if failing is None:
        if sim:
            failing = ModelSpec("broken", SimModel(0.01, 0.0, fails=lambda _: True))
        else:
            failing = ModelSpec("broken", _broken, input_shape=(2,), dtype=torch.float32)
    make = make_input or (float if sim else _tensor_input)
    want = expected or _double
    runner: Callable[[Coroutine[Any, Any, None]], None] = run or (
        simtime.run if sim else asyncio.run
    )

    _lanes_must_be_positive(type(backend))
    runner(_one_life(backend, model, failing, make, want))


def _lanes_must_be_positive(cls: type[Backend]) -> None:
    try:
        takes_lanes = "lanes" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_lanes = False
    if not takes_lanes:
        return
    try:
        cls(lanes=0)  # type: ignore[call-arg]
    except InvalidConfig:
        return
    except Exception as exc:
        raise AssertionError(
            f"[lanes] {cls.__name__}(lanes=0) raised {exc!r}, not InvalidConfig"
        ) from exc
    raise AssertionError(f"[lanes] {cls.__name__}(lanes=0) did not raise InvalidConfig")


async def _one_life(
    backend: Backend,
    model: ModelSpec,
    failing: ModelSpec,
    make_input: Callable[[int], Any],
    expected: Callable[[Any], Any],
) -> None:
    clock = backend.default_clock(asyncio.get_running_loop())
    await backend.start(clock)
    try:
        backend.load(model)
        inputs = [make_input(i) for i in range(3)]
        c = await _run_one(backend, model, 0, inputs)
        _expect("outputs", c.error is None, f"a batch of three failed with {c.error!r}")
        _expect("outputs", c.outputs is not None, "a batch without an error has no outputs")
        assert c.outputs is not None
        _expect(
            "outputs",
            len(c.outputs) == len(inputs),
            f"{len(c.outputs)} outputs for a batch of {len(inputs)}",
        )
        for i, (x, y) in enumerate(zip(inputs, c.outputs, strict=True)):
            _expect("outputs", _equal(y, expected(x)), f"output {i} is {y!r}, not {expected(x)!r}")
        now = clock.now()
        _expect(
            "outputs",
            c.start <= c.end <= now,
            f"completion times start={c.start}, end={c.end} against clock.now()={now}",
        )

        if backend.lanes >= 2:
            a, b = await asyncio.gather(
                _run_one(backend, model, 0, [make_input(i) for i in range(4)]),
                _run_one(backend, model, 1, [make_input(i) for i in range(4)]),
            )
            _expect(
                "concurrency",
                a.error is None and b.error is None,
                f"batches on two lanes failed: {a.error!r}, {b.error!r}",
            )
            _expect(
                "concurrency",
                max(a.start, b.start) <= min(a.end, b.end),
                f"lane 0 ran [{a.start}, {a.end}] and lane 1 [{b.start}, {b.end}]: no overlap",
            )

        backend.load(failing)
        bad = await _run_one(backend, failing, 0, [make_input(i) for i in range(2)])
        _expect(
            "model errors",
            bad.outputs is None and isinstance(bad.error, Exception),
            f"a model that raises completed with outputs={bad.outputs!r}, error={bad.error!r}",
        )

        _clause("unload", lambda: backend.unload(model.name))
        _clause("unload", lambda: backend.unload("never-loaded"))
        _clause("unload", lambda: backend.load(model))
        again = await _run_one(backend, model, 0, inputs)
        _expect(
            "unload",
            again.error is None
            and again.outputs is not None
            and all(_equal(y, expected(x)) for x, y in zip(inputs, again.outputs, strict=True)),
            f"after unload and load again, a batch gave {again.outputs!r}, error {again.error!r}",
        )

        try:
            backend.load(ModelSpec("nonesuch", 42))
        except InvalidConfig:
            pass
        except Exception as exc:
            raise AssertionError(
                f"[load] load() of a model it cannot run (the int 42) raised {exc!r}, "
                "not InvalidConfig"
            ) from exc
        else:
            raise AssertionError("[load] load() accepted the int 42 as a model")
    finally:
        await backend.aclose()
    await _clause_async("aclose", backend.aclose())


async def _run_one(backend: Backend, spec: ModelSpec, lane: int, inputs: list[Any]) -> Completion:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Completion] = loop.create_future()
    caller = threading.get_ident()
    calls: list[int] = []  # the thread of each call: raising in a callback would be lost

    def on_done(c: Completion) -> None:
        calls.append(threading.get_ident())
        if len(calls) > 1:
            return
        if calls[0] != caller:
            loop.call_soon_threadsafe(done.set_result, c)
        else:
            done.set_result(c)

    try:
        backend.submit(lane, spec, inputs, on_done)
    except Exception as exc:
        raise AssertionError(
            f"[submit] submit() raised {exc!r}; errors belong in the Completion"
        ) from exc
    _expect("submit", not done.done(), "on_done was called before submit() returned")
    c = await done
    _expect("submit", calls[0] == caller, "on_done was called off the event-loop thread")
    _expect("submit", len(calls) == 1, "on_done was called twice for one batch")
    return c


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    return bool(a == b)


# -- messages --------------------------------------------------------------------------


def _expect(clause: str, ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(f"[{clause}] {message}")


def _clause(clause: str, fn: Callable[[], _T]) -> _T:
    """``fn()``; an exception from it becomes an AssertionError naming ``clause``."""
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"[{clause}] raised {exc!r}") from exc


async def _clause_async(clause: str, awaitable: Coroutine[Any, Any, None]) -> None:
    try:
        await awaitable
    except Exception as exc:
        raise AssertionError(f"[{clause}] raised {exc!r}") from exc
