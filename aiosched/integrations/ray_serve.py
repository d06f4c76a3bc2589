"""aiosched inside Ray Serve: each replica embeds one Scheduler for its device.

Ray Serve places the replicas over the cluster, routes calls to them and
scales their number; inside each replica aiosched batches earliest deadline
first, runs batches side by side on the device's lanes and rejects early
what cannot meet its deadline. Needs the extra ``ray`` (``pip install
'aiosched[ray]'``); this module imports Ray only when a function here needs
it, so it imports without Ray.

::

    # python this_file.py  (a local Ray instance with 2 CPUs; about 20 s)
    import asyncio, torch, ray
    from ray import serve
    from aiosched.integrations.ray_serve import AioschedClient, aiosched_deployment

    ray.init(num_cpus=2)
    app = aiosched_deployment(["tiny_mlp"], backend="cpu", lanes=1, num_replicas=2)
    serve.run(app, name="aiosched")      # returns once every replica has warmed up

    async def main():
        client = AioschedClient.for_app("aiosched")
        reply = await client.call("tiny_mlp", torch.randn(16), deadline=0.1)  # seconds
        print(reply.ok, reply.output, reply.replica)
        y = await client.infer("tiny_mlp", torch.randn(16), deadline=0.1)  # or raise

    asyncio.run(main())
    serve.shutdown(); ray.shutdown()

``models`` is a list of :data:`aiosched.models.ZOO` names, or a mapping of
names to :class:`ServedModel` (a factory that builds the model *in the
replica*, with ``register``'s settings) or to bare factories.

**Deadlines travel with the request.** :class:`AioschedClient` turns the
budget into an absolute wall-clock time (``time.time() + deadline``) when it
sends; the replica gives its scheduler what is left on arrival, so the time
in Ray's router queue and in transit is charged to the request, and a
request whose deadline passed on the way is refused without running. Across
machines the clocks' skew adds to that (keep them synchronised, NTP).

**Outcomes are typed.** A replica answers with a :class:`Reply`: the output,
or the name of the aiosched error (``DeadlineUnmeetable``, ``DeadlineExceeded``,
``Overloaded``, ``ModelError``, ``SchedulerClosed``, ...).
:meth:`AioschedClient.infer` raises that error's class on the caller's side;
Serve's own back-pressure (every replica at ``max_ongoing_requests`` and the
router's queue full) becomes :class:`~aiosched.errors.Overloaded` too. Anything
else (a replica that died) stays Ray's exception.

**Lifetime.** The replica's constructor is ``async``: Serve awaits it on the
replica's event loop (the one its methods run on), so the scheduler starts
there and the models warm up before the replica takes traffic. On a graceful
shutdown (``serve.delete``, ``serve.shutdown``, scaling down) Serve drains the
calls in flight and then calls the replica's ``__del__`` on that loop and
awaits it, its one shutdown hook: the scheduler finishes what is queued and
stops its lanes. ``check_health`` fails when the scheduler is closed or has no
lane left, so Serve replaces the replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidConfig
from ._replica import AioschedReplica, ModelsArg, Reply, ServedModel

__all__ = [
    "AioschedClient",
    "AioschedReplica",
    "Reply",
    "ServedModel",
    "aiosched_deployment",
]

DEFAULT_MAX_ONGOING = 256
"""Calls in flight per replica. Serve's default (5) would cap every batch at 5; the
scheduler does its own admission, so the replica takes what Serve routes to it."""


class _ServeReplica(AioschedReplica):
    """The class Serve deploys: :class:`AioschedReplica` with an async constructor."""

    async def __init__(  # type: ignore[misc]
        self,
        models: ModelsArg,
        *,
        backend: str = "cpu",
        lanes: int | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
    ) -> None:
        # Serve awaits an async constructor on the replica's user event loop, where
        # its methods will run: the Scheduler must start on that loop.
        AioschedReplica.__init__(
            self, models, backend=backend, lanes=lanes, scheduler_options=scheduler_options
        )
        await self.start()

    async def aclose(self) -> None:
        await super().aclose()
        # Serve writes this logger to the replica's log file: the trace that the hook ran.
        snap = self.scheduler.snapshot()
        logging.getLogger("ray.serve").info(
            "aiosched replica %s: scheduler closed (%d completed, %d rejected)",
            self.name,
            snap.total("completed"),
            snap.total("rejected"),
        )


def _actor_options(backend: str, lanes: int | None) -> dict[str, Any]:
    if backend in ("cuda", "auto"):
        return {"num_gpus": 1}  # Ray sets CUDA_VISIBLE_DEVICES: "cuda" is this replica's GPU
    return {"num_cpus": lanes or 1}  # the cpu backend runs a lane per core


def aiosched_deployment(
    models: ModelsArg,
    *,
    backend: str = "cpu",
    lanes: int | None = None,
    num_replicas: int | str | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING,
    name: str = "Aiosched",
    deployment_options: Mapping[str, Any] | None = None,
    **scheduler_options: Any,
) -> Any:
    """A Serve application (``serve.run(...)`` it) of replicas that each run a Scheduler.

    ``backend``, ``lanes`` and ``scheduler_options`` (``policy=``,
    ``predictor=``, ``best_effort=``, ...) configure each replica's
    :class:`~aiosched.Scheduler`. ``num_replicas`` (an int, or ``"auto"`` for
    Serve's autoscaling), ``ray_actor_options`` (default: ``lanes`` CPUs on
    the cpu backend, one GPU on cuda), ``max_ongoing_requests`` and any other
    ``serve.deployment`` option in ``deployment_options`` (say
    ``autoscaling_config``) go to Serve.
    """
    from ray import serve

    if backend == "sim":
        raise InvalidConfig("the sim backend runs in virtual time; serve cpu or cuda")
    options: dict[str, Any] = dict(deployment_options or {})
    if num_replicas is not None:
        options["num_replicas"] = num_replicas
    options.setdefault("max_ongoing_requests", max_ongoing_requests)
    options.setdefault(
        "ray_actor_options",
        dict(ray_actor_options) if ray_actor_options else _actor_options(backend, lanes),
    )
    deployment = serve.deployment(name=name, **options)(_ServeReplica)
    return deployment.bind(
        models, backend=backend, lanes=lanes, scheduler_options=scheduler_options
    )


class AioschedClient:
    """Calls an aiosched deployment through its Serve handle, deadlines included.

    ``handle`` is a ``DeploymentHandle`` (``serve.run`` returns one;
    :meth:`for_app` gets one by application name). Use it from async code.
    """

    def __init__(self, handle: Any) -> None:
        from ray.serve.exceptions import BackPressureError

        self._handle = handle
        self._backpressure: type[BaseException] = BackPressureError

    @classmethod
    def for_app(cls, app_name: str = "default") -> AioschedClient:
        """The client of the running application ``app_name`` (``serve.get_app_handle``)."""
        from ray import serve

        return cls(serve.get_app_handle(app_name))

    async def call(self, model: str, x: Any, deadline: float | None = None) -> Reply:
        """One call with a budget of ``deadline`` seconds from now; the replica's :class:`Reply`."""
        sent = time.time()
        deadline_at = None if deadline is None else sent + deadline
        try:
            reply: Reply = await self._handle.infer.remote(model, x, deadline_at, sent_at=sent)
        except self._backpressure as exc:  # Serve refused it before any replica saw it
            return Reply(error="Overloaded", message=f"{model}: {exc}", replica="")
        return reply

    async def infer(self, model: str, x: Any, deadline: float | None = None) -> Any:
        """The output, or the replica's aiosched error raised here (a loadgen target)."""
        return (await self.call(model, x, deadline)).unwrap()

    async def describe(self) -> dict[str, Any]:
        """One replica's models (input shape, dtype, largest batch) and settings."""
        info: dict[str, Any] = await self._handle.describe.remote()
        return info

    async def stats(self) -> dict[str, Any]:
        """One replica's scheduler snapshot as plain data (whichever replica Serve picks)."""
        snap: dict[str, Any] = await self._handle.stats.remote()
        return snap
