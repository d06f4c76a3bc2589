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

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .prometheus import PrometheusExporter, _Exporter, require_prometheus
from .snapshot import HISTOGRAM_BOUNDS

if TYPE_CHECKING:
    from ..fleet import Fleet

__all__ = ["FleetExporter"]


class FleetExporter(_Exporter):
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

    def start(self) -> None:
        """Start polling every device on the running loop (the fleet's); idempotent."""
        for exporter in self._devices:
            exporter.start()

    async def stop(self) -> None:
        """Stop polling (after one last poll of each device) and the HTTP server; idempotent."""
        for exporter in self._devices:
            await exporter.stop()
        self.close_server()

    def _now(self) -> float:
        return self._fleet.now()

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
