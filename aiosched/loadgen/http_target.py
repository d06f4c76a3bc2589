"""``aiosched loadtest --target http://HOST:PORT``: the load over HTTP, measured at the client.

The protocol is ``examples/fastapi_app.py``'s. The URL is either

- a base URL (``http://127.0.0.1:8000``, or with a path prefix): each request
  is ``POST {url}/infer/{model}``, and ``GET {url}/models`` describes the
  models served (``{name: {"input_shape": [...], "dtype": ...}}``);
- or a template with ``{model}`` in it (``http://host/v1/{model}/predict``),
  used as is; nothing describes the models, so it needs ``--models`` and
  ``--input-shape``.

The body is ``{"x": ...}``, a random input of the model's shape (nested
lists, made once per model from seed 0), the header ``X-Deadline-Ms`` the
request's deadline budget when it is sent. ``--input-shape`` gives every
model's shape (for a server that does not describe its models, or to send
a model it does not describe). The models default to all those described.

Latency is from the intended send time (open loop) or the actual send
(closed loop) to the response, at the client. A 2xx response is completed
(met if in time); 429 and 503 are rejected (their ``Retry-After`` is counted,
not obeyed: an open loop does not back off); any other status, and any
connection error or timeout, is failed. ``config.http.statuses`` counts
every response by status (``connect_error``, ``timeout`` and
``transport_error`` for those without one), in total and per model.

One :class:`httpx.AsyncClient` sends everything; its pool holds up to
``concurrency`` connections in a closed loop, and in an open loop twice the
requests the rate keeps in flight at the longest deadline (at least 8, at
most :data:`MAX_CONNECTIONS`). ``--warmup S`` (default :data:`DEFAULT_WARMUP_S`)
sends for S seconds first, uncounted: the connections are open and the
server warm when the measured run starts (:mod:`aiosched.loadgen.warmup`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from aiosched.errors import AioschedError, DeadlineUnmeetable, InvalidConfig, Overloaded
from aiosched.loadgen.closed_loop import ClosedLoopDriver, in_warmup
from aiosched.loadgen.driver import OpenLoopDriver, Progress
from aiosched.loadgen.report import build_report
from aiosched.loadgen.result import LoadResult, RequestCounts
from aiosched.loadgen.trace import load_trace
from aiosched.loadgen.warmup import warmup_section
from aiosched.loadgen.workload import DEFAULT_DEADLINE_MS, Schedule, Workload

if TYPE_CHECKING:
    import httpx

    from aiosched.loadgen.harness import LoadtestConfig

__all__ = [
    "DEFAULT_WARMUP_S",
    "MAX_CONNECTIONS",
    "REFUSED_OPTIONS",
    "Endpoint",
    "HttpStatusError",
    "HttpTarget",
    "parse_shape",
    "require_httpx",
    "run_http_loadtest",
]

DEFAULT_WARMUP_S = 2.0
MAX_CONNECTIONS = 1024
REFUSED_OPTIONS: Mapping[str, str] = {
    "backend": "--backend",
    "policy": "--policy",
    "predictor": "--predictor",
    "lanes": "--lanes",
    "max_batch_size": "--max-batch-size",
    "slo_attainment": "--slo-attainment",
    "step_duration": "--step-duration",
    "timeline_path": "--timeline",
    "metrics_port": "--metrics-port",
    "metrics_addr": "--metrics-addr",
}
"""Options of the embedded scheduler, meaningless for a remote server (parameter: flag)."""

_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 5.0


class HttpStatusError(AioschedError):
    """The server answered with a status that is neither success nor a rejection."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def require_httpx() -> None:
    """Raise :class:`InvalidConfig` naming the extra when httpx is not installed."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise InvalidConfig("--target http needs httpx: pip install 'aiosched[http]'") from None


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``infer`` has ``{model}`` in it; ``models`` describes them."""

    url: str
    infer: str
    models: str | None

    @classmethod
    def parse(cls, target: str) -> Endpoint | None:
        """The endpoint of an ``http(s)://`` target; ``None`` for any other target."""
        if not target.startswith(("http://", "https://")):
            return None
        parts = urlsplit(target)
        if not parts.hostname:
            raise InvalidConfig(f"--target {target!r} has no host")
        try:
            parts.port  # noqa: B018 (it raises on a bad port)
        except ValueError as exc:
            raise InvalidConfig(f"--target {target!r}: {exc}") from None
        if "{model}" in target:
            try:
                target.format(model="m")
            except (KeyError, IndexError, ValueError):
                raise InvalidConfig(
                    f"--target {target!r}: the only placeholder a URL takes is {{model}}"
                ) from None
            return cls(target, target, None)
        if "{" in target or "}" in target:
            raise InvalidConfig(f"--target {target!r}: the only placeholder is {{model}}")
        base = target.rstrip("/")
        return cls(target, base + "/infer/{model}", base + "/models")

    def infer_url(self, model: str) -> str:
        return self.infer.format(model=model)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/"


def parse_shape(text: str) -> tuple[int, ...]:
    """``--input-shape``: ``"16"``, ``"3x224x224"`` or ``"3,224,224"`` -> a tuple of sizes."""
    items = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(s) for s in items)
    except ValueError:
        raise InvalidConfig(
            f"--input-shape must be sizes like 16 or 3x224x224, got {text!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise InvalidConfig(f"--input-shape sizes must be >= 1, got {text!r}")
    if math.prod(shape) > 10_000_000:
        raise InvalidConfig(f"--input-shape {text!r} is over 10 million values per request")
    return shape


class HttpTarget:
    """Sends one request per call and counts its status (see the module docstring).

    The call is a load generator target: ``await target(model, body, deadline)``
    with the encoded body and the deadline budget in seconds. Requests a
    closed loop sends during its warm-up are counted apart.
    """

    def __init__(self, client: httpx.AsyncClient, endpoint: Endpoint) -> None:
        self._client = client
        self._endpoint = endpoint
        self._urls: dict[str, str] = {}
        self.statuses: dict[str, Counter[str]] = {}
        """Per model: responses by status (or the error's kind), of the measured requests."""
        self.warmup_statuses: Counter[str] = Counter()
        self.retry_after = 0
        """Measured responses that carried ``Retry-After``."""

    def reset(self) -> None:
        """Forget every status (after an open loop's warm-up run)."""
        self.statuses.clear()
        self.retry_after = 0

    async def __call__(self, model: str, body: Any, deadline: float) -> None:
        import httpx

        url = self._urls.get(model)
        if url is None:
            url = self._urls[model] = self._endpoint.infer_url(model)
        # A budget already spent is sent as the least the server takes (it may refuse it).
        ms = max(deadline * 1000.0, 0.001)
        headers = {"Content-Type": "application/json", "X-Deadline-Ms": f"{ms:.3f}"}
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            self._count(model, "timeout")
            raise
        except httpx.ConnectError:
            self._count(model, "connect_error")
            raise
        except httpx.TransportError:
            self._count(model, "transport_error")
            raise
        status = response.status_code
        self._count(model, str(status), "Retry-After" in response.headers)
        if 200 <= status < 300:
            return
        if status == 429:
            raise Overloaded(f"{model}: HTTP 429")
        if status == 503:
            raise DeadlineUnmeetable(f"{model}: HTTP 503")
        raise HttpStatusError(status)

    def _count(self, model: str, key: str, retry_after: bool = False) -> None:
        if in_warmup():
            self.warmup_statuses[key] += 1
            return
        self.statuses.setdefault(model, Counter())[key] += 1
        self.retry_after += retry_after

    def section(self) -> dict[str, Any]:
        """The statuses for ``config.http``: the total, and per model."""
        total: Counter[str] = Counter()
        for counts in self.statuses.values():
            total.update(counts)
        return {
            "statuses": dict(sorted(total.items())),
            "per_model_statuses": {m: dict(sorted(c.items())) for m, c in self.statuses.items()},
            "retry_after": self.retry_after,
        }


async def _describe(client: httpx.AsyncClient, endpoint: Endpoint) -> dict[str, Any] | None:
    """``GET {url}/models`` (``None`` where it is not there); fails if nothing answers."""
    import httpx

    probe = endpoint.models or endpoint.origin
    try:
        response = await client.get(probe)
    except httpx.HTTPError as exc:
        raise InvalidConfig(
            f"nothing answers at {endpoint.url} ({type(exc).__name__}: {exc or 'no detail'})"
        ) from None
    if endpoint.models is None or response.status_code != 200:
        return None
    try:
        described = response.json()
    except ValueError:
        return None
    if not isinstance(described, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("input_shape"), (list, type(None)))
        for v in described.values()
    ):
        return None
    return described


def _shapes(
    described: Mapping[str, Any] | None, names: tuple[str, ...], shape: tuple[int, ...] | None
) -> dict[str, tuple[int, ...]]:
    if shape is not None:
        return dict.fromkeys(names, shape)
    if described is None:
        raise InvalidConfig(
            "the server does not describe its models (GET /models); give --input-shape"
        )
    missing = [n for n in names if described.get(n, {}).get("input_shape") is None]
    if missing:
        raise InvalidConfig(
            f"the server does not describe the input of {', '.join(missing)} (it describes "
            f"{', '.join(sorted(described)) or 'nothing'}); give --input-shape to send anyway"
        )
    return {n: tuple(int(s) for s in described[n]["input_shape"]) for n in names}


def _workload(cfg: LoadtestConfig, described: Mapping[str, Any] | None) -> Workload:
    if cfg.trace is not None:
        return Workload.for_trace(
            load_trace(cfg.trace), cfg.deadline, default_deadline_ms=DEFAULT_DEADLINE_MS
        )
    models = cfg.models
    if models is None:
        if not described:
            raise InvalidConfig("the server does not describe its models; give --models")
        models = ",".join(described)
    return Workload.parse(models, cfg.deadline, default_deadline_ms=DEFAULT_DEADLINE_MS)


def _bodies(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        name: json.dumps({"x": rng.standard_normal(shape).astype(np.float32).tolist()}).encode()
        for name, shape in shapes.items()
    }


def _pool_size(cfg: LoadtestConfig, workload: Workload, rate: float | None) -> int:
    if cfg.concurrency is not None:
        return min(cfg.concurrency, MAX_CONNECTIONS)
    longest = max(m.deadline_s for m in workload.models)
    in_flight = (rate or 0.0) * longest
    return int(min(MAX_CONNECTIONS, max(8, math.ceil(2 * in_flight))))


async def run_http_loadtest(
    cfg: LoadtestConfig,
    url: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    on_start: Callable[[Schedule, int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 1.0,
    on_result: Callable[[LoadResult], None] | None = None,
) -> dict[str, Any]:
    """Drive ``cfg``'s load at the server at ``url``; the JSON report.

    ``cfg`` has a fixed rate (or a trace) or a concurrency; its ``warmup``
    seconds run first, uncounted. ``on_start(schedule, pool)`` is called
    before the measured run (the schedule of a closed loop is empty: its
    window and models).
    """
    require_httpx()
    import httpx

    endpoint = Endpoint.parse(url)
    if endpoint is None:
        raise InvalidConfig(f"not an http(s) URL: {url!r}")
    if cfg.mode not in ("fixed", "closed") and cfg.trace is None:
        raise InvalidConfig("--target http needs --rate R (requests/s) or --concurrency N")
    timeout = httpx.Timeout(_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout) as probe:
        described = await _describe(probe, endpoint)
    workload = _workload(cfg, described)
    bodies = _bodies(_shapes(described, workload.names, input_shape))
    schedule: Schedule | None = None
    warmup: Schedule | None = None
    if cfg.mode != "closed":
        if cfg.trace is not None:
            trace = load_trace(cfg.trace)
            schedule = workload.replay(trace, duration=cfg.duration)
            if cfg.warmup > 0:  # the trace's first seconds
                warmup = workload.replay(trace, duration=cfg.warmup)
        else:
            schedule = workload.schedule(cfg.arrival, _rate(cfg), cfg.duration, cfg.seed)
            if cfg.warmup > 0:
                rate = schedule.offered_rps
                warmup = workload.schedule(cfg.arrival, rate, cfg.warmup, cfg.seed + 1)
    pool = _pool_size(cfg, workload, None if schedule is None else schedule.offered_rps)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    warm: RequestCounts | None = None
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        target = HttpTarget(client, endpoint)
        driver: OpenLoopDriver | ClosedLoopDriver
        if schedule is None:
            plan = cfg.closed_loop()
            driver = ClosedLoopDriver(
                target,
                workload,
                plan,
                make_input=bodies.__getitem__,
                on_progress=on_progress,
                progress_interval=progress_interval,
            )
            if on_start is not None:
                on_start(driver.schedule, pool)
            result = await driver.run()
            warm = driver.warmup_counts
        else:
            if warmup is not None:
                warm_result = await OpenLoopDriver(
                    target, warmup, make_input=bodies.__getitem__
                ).run()
                warm = warm_result.total().counts
                target.warmup_statuses.update(_merged(target.statuses))
                target.reset()
            driver = OpenLoopDriver(
                target,
                schedule,
                make_input=bodies.__getitem__,
                on_progress=on_progress,
                progress_interval=progress_interval,
            )
            if on_start is not None:
                on_start(schedule, pool)
            result = await driver.run()
    if on_result is not None:
        on_result(result)
    return build_report(result, config=_config(cfg, endpoint, driver, target, pool, warm))


def _rate(cfg: LoadtestConfig) -> float:
    if cfg.rate is None:
        raise InvalidConfig("--target http needs --rate R (requests/s) or --concurrency N")
    return cfg.rate


def _merged(per_model: Mapping[str, Counter[str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for counts in per_model.values():
        out.update(counts)
    return out


def _config(
    cfg: LoadtestConfig,
    endpoint: Endpoint,
    driver: OpenLoopDriver | ClosedLoopDriver,
    target: HttpTarget,
    pool: int,
    warm: RequestCounts | None,
) -> dict[str, Any]:
    schedule = driver.schedule
    config: dict[str, Any] = {
        **asdict(cfg),
        "target": endpoint.url,
        # the server's own settings: unknown from here
        "backend": None,
        "lanes": None,
        "policy": None,
        "predictor": None,
        "max_batch_size": None,
        "models": schedule.config.get("models"),
        "models_option": cfg.models,
        "rate": schedule.offered_rps if isinstance(driver, OpenLoopDriver) else None,
        "rate_requested": cfg.rate,
        "rate_mode": cfg.mode,
        "mode": "open",
        "http": {
            "url": endpoint.url,
            "infer_url": endpoint.infer,
            "connections": pool,
            **target.section(),
        },
    }
    if isinstance(driver, ClosedLoopDriver):
        config.update(driver.plan.config())
        config["max_in_flight"] = driver.max_in_flight
    warmup = warmup_section(cfg.warmup, warm, scheduler_warmup=False)
    warmup["statuses"] = dict(sorted(target.warmup_statuses.items()))
    config["warmup"] = warmup
    return config
