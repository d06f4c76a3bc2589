"""A Prometheus exporter for a running :class:`~aiosched.Fleet` (extra ``prometheus``).

::

    async with aiosched.Fleet.sim(4) as fleet, FleetExporter(fleet) as exporter:
        exporter.serve(9464)                       # http://127.0.0.1:9464/metrics

Each device's scheduler is watched by a :class:`~aiosched.telemetry.prometheus.PrometheusExporter`
of its own (each polls its device on the fleet's loop); a scrape merges their
metrics, the same names, with a ``device`` label added (``device="sim:0"``),
so that one query sums them (``sum by (model) (...)``) or tells the devices
apart. ``infer_call_seconds`` is the fleet's own: the calls made through
:meth:`FleetExporter.instrument` go to the fleet, which picks the device, so
it has the ``model`` label only.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..errors import InvalidConfig
from .prometheus import DEFAULT_ADDR, PrometheusExporter, require_prometheus
from .snapshot import HISTOGRAM_BOUNDS

if TYPE_CHECKING:
    from ..fleet import Fleet

__all__ = ["FleetExporter"]


class FleetExporter:
    """Exports every device of a fleet, labelled ``device`` (see the module docstring).

    ``registry``, ``interval`` and ``namespace`` are as for
    :class:`~aiosched.telemetry.prometheus.PrometheusExporter`.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        registry: Any = None,
        interval: float = 1.0,
        namespace: str = "aiosched",
    ) -> None:
        prom = require_prometheus()
        self._prom = prom
        self._fleet = fleet
        # Each device's exporter registers in a registry of its own, never served: this
        # exporter collects from them.
        self._devices = [
            PrometheusExporter(sched, interval=interval, namespace=namespace)
            for sched in fleet.devices
        ]
        self._calls_name = f"{namespace}_infer_call_seconds"
        self._calls: Any = prom.Histogram(
            self._calls_name,
            "infer() calls made to the fleet through the exporter's instrument(): call to "
            "return, seconds",
            ["model"],
            buckets=HISTOGRAM_BOUNDS,
            registry=None,
        )
        self.registry: Any = registry if registry is not None else prom.CollectorRegistry()
        self._server: Any = None
        self._thread: Any = None
        self.registry.register(self)

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

    def start(self) -> None:
        """Start polling every device on the running loop (the fleet's); idempotent."""
        for exporter in self._devices:
            exporter.start()

    async def stop(self) -> None:
        """Stop polling (after one last poll of each device) and the HTTP server; idempotent."""
        for exporter in self._devices:
            await exporter.stop()
        self.close_server()

    def serve(self, port: int, addr: str = DEFAULT_ADDR) -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the port bound."""
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
        """``infer`` (the fleet's) timed into ``infer_call_seconds`` (calls that return)."""
        fleet, histogram = self._fleet, self._calls

        @functools.wraps(infer)
        async def timed(model: str, x: Any, deadline: float) -> Any:
            start = fleet.now()
            result = await infer(model, x, deadline)
            histogram.labels(model).observe(fleet.now() - start)
            return result

        return timed

    def describe(self) -> list[Any]:
        return []  # families are named at collect time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """Called by ``prometheus_client`` on a scrape (any thread): the devices' merged."""
        core = importlib.import_module("prometheus_client.core")
        yield from self._calls.collect()
        merged: dict[str, Any] = {}  # one family per name, whatever the number of devices
        for label, exporter in zip(self._fleet.labels, self._devices, strict=True):
            for family in exporter.collect():
                if family.name == self._calls_name:
                    continue  # unused there: the calls go through the fleet
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = core.Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for s in family.samples:
                    labels = {**s.labels, "device": label}
                    out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
        yield from merged.values()
