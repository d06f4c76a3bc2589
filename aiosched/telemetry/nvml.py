"""GPU counters from NVML, sampled on a background thread.

NVML answers in tens of microseconds to a few milliseconds per query, too
slow and too variable for the event loop, so a daemon thread polls it every
``interval`` seconds and publishes an immutable mapping; readers on any
thread take the latest one without locking.

NVML is optional: ``pynvml`` comes from the nvidia-ml-py package (the extra
``aiosched[cuda]``) and is imported only when a sampler starts. Where it is
missing (a warning names the extra) or NVML fails to initialise (no driver, a
container without the library), :meth:`NvmlSampler.start` returns ``False``
and the sampler stays off, reporting nothing. A metric the device does not support is left out of
the sample rather than failing the others.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["METRICS", "NvmlSampler"]

log = logging.getLogger("aiosched")

_MIB = 1 << 20

METRICS = {
    "sm_util_pct": "percent of the last sample period in which a kernel ran (NVML 'gpu')",
    "mem_util_pct": "percent of the last sample period in which device memory was read or written",
    "sm_clock_mhz": "SM clock",
    "power_w": "board power draw",
    "mem_used_mib": "device memory in use (all processes)",
    "mem_total_mib": "device memory in total",
}
"""What a sample holds, by key; every value is a float."""

_EMPTY: Mapping[str, float] = MappingProxyType({})


def _utilisation(nvml: Any, handle: Any) -> dict[str, float]:
    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    return {"sm_util_pct": float(rates.gpu), "mem_util_pct": float(rates.memory)}


def _clock(nvml: Any, handle: Any) -> dict[str, float]:
    return {"sm_clock_mhz": float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))}


def _power(nvml: Any, handle: Any) -> dict[str, float]:
    return {"power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0}  # NVML reports mW


def _memory(nvml: Any, handle: Any) -> dict[str, float]:
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return {"mem_used_mib": info.used / _MIB, "mem_total_mib": info.total / _MIB}


_READERS: tuple[Callable[[Any, Any], dict[str, float]], ...] = (
    _utilisation,
    _clock,
    _power,
    _memory,
)


class NvmlSampler:
    """Samples one GPU's NVML counters every ``interval`` seconds on a daemon thread.

    ``device`` is an NVML index or a UUID (``"GPU-..."``); a UUID survives
    ``CUDA_VISIBLE_DEVICES`` renumbering, an index does not. ``nvml`` is
    the NVML module to use (``pynvml`` when ``None``); tests pass a fake.
    """

    def __init__(
        self,
        device: int | str = 0,
        interval: float = 0.1,
        nvml: Any | None = None,
        name: str = "aiosched-nvml",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.device = device
        self.interval = float(interval)
        self._nvml = nvml
        self._name = name
        self._handle: Any = None
        self._latest = _EMPTY
        self._samples = 0
        self._sampled = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initialised = False

    @property
    def enabled(self) -> bool:
        """Whether the sampling thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def samples(self) -> int:
        """How many samples have been taken."""
        return self._samples

    def start(self) -> bool:
        """Initialise NVML and start sampling; returns False (and stays off) where NVML is not."""
        if self._thread is not None or self._stop.is_set():
            return self.enabled
        nvml = self._nvml
        if nvml is None:
            try:
                nvml = self._nvml = importlib.import_module("pynvml")
            except ImportError:
                log.warning(
                    "aiosched: GPU telemetry is off: the pynvml module is missing "
                    "(install the extra: pip install 'aiosched[cuda]', or nvidia-ml-py)"
                )
                return False
        try:
            nvml.nvmlInit()
            self._initialised = True
            if isinstance(self.device, str):
                self._handle = nvml.nvmlDeviceGetHandleByUUID(self.device)
            else:
                self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device)
        except Exception as exc:  # NVMLError, or a missing symbol in an old library
            log.info("aiosched: NVML unavailable (%s); GPU telemetry is off", exc)
            self._shutdown()
            return False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return True

    def latest(self) -> Mapping[str, float]:
        """The most recent sample (see :data:`METRICS`); empty before the first or when off."""
        return self._latest

    def wait_for(self, samples: int, timeout: float) -> bool:
        """Block until at least ``samples`` samples were taken; False on timeout (for tests)."""
        with self._sampled:
            return self._sampled.wait_for(lambda: self._samples >= samples, timeout)

    def close(self) -> None:
        """Stop sampling, join the thread and shut NVML down; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()  # type: ignore[union-attr]

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> Mapping[str, float]:
        """Take one sample now and publish it (the thread calls this every ``interval``)."""
        values: dict[str, float] = {}
        for read in _READERS:
            # One unsupported query (power on some boards, say) must not hide the others.
            with contextlib.suppress(Exception):
                values.update(read(self._nvml, self._handle))
        sample = MappingProxyType(values)
        with self._sampled:
            self._latest = sample
            self._samples += 1
            self._sampled.notify_all()
        return sample
