"""A Prometheus exporter for a running :class:`~aiosched.Scheduler` (extra ``prometheus``).

::

    async with aiosched.Scheduler("cpu") as sched, PrometheusExporter(sched) as exporter:
        exporter.serve(9464)                       # http://127.0.0.1:9464/metrics
        ...

It observes the scheduler only through its public API. A task on the
scheduler's loop polls :meth:`~aiosched.Scheduler.snapshot` and the finished
executions in ``sched.timeline.history`` every ``interval`` seconds (and once
more when it stops); a scrape, on the HTTP server's thread, reads the latest
immutable snapshot and thread-safe histograms, never the scheduler itself.

Metrics (prefix ``aiosched_``; ``model`` label on all but the lane and the
scheduler-wide predictor gauges):

- ``requests_total{outcome}``: met, missed, rejected, failed, cancelled;
  ``requests_submitted_total``
- ``queue_depth``, ``requests_in_flight`` (gauges)
- ``batch_size``: histogram of the batches run (from the snapshot: exact)
- ``request_latency_seconds``: histogram of every completed request's latency
  (arrival to result), from the scheduler's own record;
  ``request_latency_quantile_seconds{quantile}`` (0.5, 0.9, 0.99, 0.999) and
  ``request_latency_mean_seconds`` from the same record
- ``queue_wait_seconds``: histogram of each request's wait, from its arrival to
  the dispatch of the batch that first ran it (requests that never ran are not
  in it); ``queue_wait_quantile_seconds{quantile}``
- ``infer_call_seconds``: histogram of the ``infer`` calls made through
  :meth:`PrometheusExporter.instrument` (call to return, as the caller sees it)
- ``execution_seconds``: histogram of batch run times
- ``predictor_abs_error_ratio``: histogram of ``|predicted - measured| /
  measured`` per execution; ``predictor_mape``, ``predictor_p95_ape`` (gauges,
  the scheduler's running figures)
- ``lanes``, ``lanes_busy``, ``lanes_stuck`` (gauges)

The two per-request histograms come from the scheduler's log-spaced buckets
(2 % wide; see :attr:`aiosched.LatencySummary.buckets`), carried by the
snapshot as cumulative counts at :data:`~aiosched.telemetry.snapshot.HISTOGRAM_BOUNDS`
(100 us to 10 s): a count at ``le=b`` may include values up to 2 % above ``b``.

The HTTP server binds 127.0.0.1 unless told otherwise: the metrics name the
models a service runs and its load, which is nobody else's business.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import importlib
import math
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..errors import InvalidConfig
from .snapshot import HISTOGRAM_BOUNDS, LatencySummary, SchedulerSnapshot

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["DEFAULT_ADDR", "PrometheusExporter", "require_prometheus"]

DEFAULT_ADDR = "127.0.0.1"

_OUTCOMES = (
    ("met", "met_deadline"),
    ("missed", "missed_deadline"),
    ("rejected", "rejected"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
)
_QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p999"))
_BATCH_BUCKETS = tuple(float(1 << k) for k in range(11))  # 1 .. 1024
_ERROR_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def require_prometheus() -> Any:
    """The ``prometheus_client`` module, or :class:`InvalidConfig` naming the extra to install."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise InvalidConfig(
            "the Prometheus exporter needs prometheus-client: pip install 'aiosched[prometheus]'"
        ) from None


class _Exporter(abc.ABC):
    """What both exporters share: ``async with`` (start, then stop), the ``/metrics``
    server, and :meth:`instrument`. A subclass sets ``_prom``, ``_calls`` (the
    ``infer_call_seconds`` histogram) and ``_server = _thread = None``, and
    defines :meth:`start`, :meth:`stop` and :meth:`_now` (its front's clock)."""

    _prom: Any
    _calls: Any
    _server: Any
    _thread: Any
    registry: Any

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def _now(self) -> float: ...

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def serve(self, port: int, addr: str = DEFAULT_ADDR) -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the port bound
        (``port=0`` picks a free one)."""
        if self._server is not None:
            raise RuntimeError("the exporter is already serving")
        if not 0 <= port <= 65535:
            raise InvalidConfig(f"port must be 0..65535, got {port}")
        server, thread = self._prom.start_http_server(port, addr=addr, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    def close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)

    def instrument(
        self, infer: Callable[[str, Any, float], Awaitable[Any]]
    ) -> Callable[[str, Any, float], Awaitable[Any]]:
        """``infer`` timed into ``infer_call_seconds`` (calls that return a result).

        Optional: ``request_latency_seconds`` covers every request without it.
        """
        now, histogram = self._now, self._calls

        @functools.wraps(infer)
        async def timed(model: str, x: Any, deadline: float) -> Any:
            start = now()
            result = await infer(model, x, deadline)
            histogram.labels(model).observe(now() - start)
            return result

        return timed


class PrometheusExporter(_Exporter):
    """Exports one scheduler's figures to Prometheus (see the module docstring).

    ``registry`` is a ``prometheus_client.CollectorRegistry`` (a new one
    by default, so that several exporters never collide; pass
    ``prometheus_client.REGISTRY`` to share the process-wide one).
    ``interval`` is the polling period in seconds of the scheduler's clock.
    """

    def __init__(
        self,
        sched: Scheduler,
        *,
        registry: Any = None,
        interval: float = 1.0,
        namespace: str = "aiosched",
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise InvalidConfig(f"interval must be > 0 seconds, got {interval!r}")
        prom = require_prometheus()
        self._prom = prom
        self._sched = sched
        self.interval = float(interval)
        self.namespace = namespace
        self.registry: Any = registry if registry is not None else prom.CollectorRegistry()
        self._snapshot: SchedulerSnapshot | None = None
        self._last_execution = 0
        self._task: asyncio.Task[None] | None = None
        self._server: Any = None
        self._thread: Any = None
        ns = namespace
        self._calls: Any = prom.Histogram(
            f"{ns}_infer_call_seconds",
            "infer() calls made through the exporter's instrument(): call to return, seconds",
            ["model"],
            buckets=HISTOGRAM_BOUNDS,
            registry=None,
        )
        self._execution: Any = prom.Histogram(
            f"{ns}_execution_seconds",
            "batch run time on a lane, seconds",
            ["model"],
            buckets=HISTOGRAM_BOUNDS,
            registry=None,
        )
        self._error: Any = prom.Histogram(
            f"{ns}_predictor_abs_error_ratio",
            "|predicted - measured| / measured batch run time, per execution",
            ["model"],
            buckets=_ERROR_BUCKETS,
            registry=None,
        )
        self.registry.register(self)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start polling on the running loop (the scheduler's); idempotent."""
        if self._task is None:
            self.poll()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aiosched-prometheus"
            )

    async def stop(self) -> None:
        """Stop polling (after one last poll) and the HTTP server, if any; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.poll()
        self.close_server()

    def _now(self) -> float:
        return self._sched.now()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll()

    # ------------------------------------------------------------ observing

    def poll(self) -> None:
        """Take a snapshot and record the executions finished since the last poll.

        Call it on the scheduler's loop (the polling task does).
        """
        sched = self._sched
        self._snapshot = sched.snapshot()
        history = sched.timeline.history
        new = []
        for e in reversed(history):
            if e.id <= self._last_execution:
                break
            new.append(e)
        if new:
            self._last_execution = new[0].id
        for e in reversed(new):
            if e.warmup or not e.ok:
                continue
            latency = e.latency
            self._execution.labels(e.model).observe(latency)
            if latency > 0 and math.isfinite(e.predicted):
                self._error.labels(e.model).observe(abs(e.predicted - latency) / latency)

    @property
    def snapshot(self) -> SchedulerSnapshot | None:
        """The latest snapshot polled (``None`` before :meth:`start` or :meth:`poll`)."""
        return self._snapshot

    # ------------------------------------------------------------ collecting

    def describe(self) -> list[Any]:
        return []  # families are named at collect time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """Called by ``prometheus_client`` on a scrape (any thread)."""
        core = importlib.import_module("prometheus_client.core")
        ns = self.namespace
        yield from self._calls.collect()
        yield from self._execution.collect()
        yield from self._error.collect()
        snap = self._snapshot
        if snap is None:
            return
        requests = core.CounterMetricFamily(
            f"{ns}_requests", "requests resolved, by outcome", labels=["model", "outcome"]
        )
        submitted = core.CounterMetricFamily(
            f"{ns}_requests_submitted", "requests submitted", labels=["model"]
        )
        queue = core.GaugeMetricFamily(f"{ns}_queue_depth", "requests queued", labels=["model"])
        in_flight = core.GaugeMetricFamily(
            f"{ns}_requests_in_flight", "requests running on a lane", labels=["model"]
        )
        batch = core.HistogramMetricFamily(f"{ns}_batch_size", "batch sizes run", labels=["model"])
        quantiles = core.GaugeMetricFamily(
            f"{ns}_request_latency_quantile_seconds",
            "the scheduler's request latency percentiles, arrival to result",
            labels=["model", "quantile"],
        )
        mean = core.GaugeMetricFamily(
            f"{ns}_request_latency_mean_seconds",
            "the scheduler's mean request latency, arrival to result",
            labels=["model"],
        )
        latency = core.HistogramMetricFamily(
            f"{ns}_request_latency_seconds",
            "completed requests' latency, arrival to result, seconds (the scheduler's record)",
            labels=["model"],
        )
        wait = core.HistogramMetricFamily(
            f"{ns}_queue_wait_seconds",
            "requests' wait from arrival to the dispatch of the batch that first ran them",
            labels=["model"],
        )
        wait_quantiles = core.GaugeMetricFamily(
            f"{ns}_queue_wait_quantile_seconds",
            "the scheduler's queue-wait percentiles, arrival to first dispatch",
            labels=["model", "quantile"],
        )
        for name, m in snap.models.items():
            for outcome, field in _OUTCOMES:
                requests.add_metric([name, outcome], float(getattr(m, field)))
            submitted.add_metric([name], float(m.submitted))
            queue.add_metric([name], float(m.queue_depth))
            in_flight.add_metric([name], float(m.in_flight))
            batch.add_metric([name], *_batch_buckets(m.batch_sizes))
            latency.add_metric([name], *_le_buckets(m.latency))
            wait.add_metric([name], *_le_buckets(m.queue_wait))
            if m.latency.count:
                for q, field in _QUANTILES:
                    quantiles.add_metric([name, q], float(getattr(m.latency, field)))
                mean.add_metric([name], float(m.latency.mean))
            if m.queue_wait.count:
                for q, field in _QUANTILES:
                    wait_quantiles.add_metric([name, q], float(getattr(m.queue_wait, field)))
        yield from (requests, submitted, queue, in_flight, batch, quantiles, mean)
        yield from (latency, wait, wait_quantiles)
        lanes = snap.lanes
        yield core.GaugeMetricFamily(f"{ns}_lanes", "lanes on the device", value=len(lanes))
        yield core.GaugeMetricFamily(
            f"{ns}_lanes_busy", "lanes running a batch", value=sum(1 for x in lanes if x.busy)
        )
        yield core.GaugeMetricFamily(
            f"{ns}_lanes_stuck",
            "lanes the watchdog gave up on",
            value=sum(1 for x in lanes if x.stuck),
        )
        for key, what in (("predictor_mape", "mean"), ("predictor_p95_ape", "95th percentile")):
            value = float(getattr(snap, key))
            if math.isfinite(value):
                yield core.GaugeMetricFamily(
                    f"{ns}_{key}",
                    f"the predictor's running {what} absolute percentage error (a ratio)",
                    value=value,
                )


def _le_buckets(summary: LatencySummary) -> tuple[list[tuple[str, float]], float]:
    """A summary's cumulative buckets as ``le`` buckets (+Inf: everything), and the sum."""
    counts = dict(summary.buckets)
    buckets = [(str(bound), float(counts.get(bound, 0))) for bound in HISTOGRAM_BOUNDS]
    buckets.append(("+Inf", float(summary.count)))
    return buckets, float(summary.total)


def _batch_buckets(sizes: Any) -> tuple[list[tuple[str, float]], float]:
    """``{size: count}`` -> cumulative ``le`` buckets (1, 2, 4, .. 1024, +Inf) and the sum."""
    buckets: list[tuple[str, float]] = []
    for bound in _BATCH_BUCKETS:
        buckets.append((str(bound), float(sum(n for s, n in sizes.items() if s <= bound))))
    total = float(sum(sizes.values()))
    buckets.append(("+Inf", total))
    return buckets, float(sum(s * n for s, n in sizes.items()))
