"""The NVML sampler against a fake NVML module: values flow, failures switch it off, it stops."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from aiosched.telemetry.nvml import METRICS, NvmlSampler


class NVMLError(Exception):
    pass


class FakeNvml:
    """The part of pynvml the sampler uses, with values a test can change."""

    NVML_CLOCK_SM = 1

    def __init__(self, fail_init: bool = False, no_power: bool = False) -> None:
        self.fail_init = fail_init
        self.no_power = no_power
        self.util = 40
        self.inits = 0
        self.shutdowns = 0
        self.handles: list[Any] = []

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self.handles.append(("index", index))
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        self.handles.append(("uuid", uuid))
        return ("handle", uuid)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return SimpleNamespace(gpu=self.util, memory=self.util // 2)

    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        if self.no_power:
            raise NVMLError("Not Supported")
        return 250_500  # milliwatts

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        return SimpleNamespace(used=3 << 30, total=141 << 30)


def test_samples_flow_to_latest_and_the_thread_stops() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(device=0, interval=0.005, nvml=nvml)
    assert sampler.latest() == {}
    assert sampler.start() and sampler.enabled
    try:
        assert sampler.wait_for(1, timeout=10.0)
        first = dict(sampler.latest())
        assert first == {
            "sm_util_pct": 40.0,
            "mem_util_pct": 20.0,
            "sm_clock_mhz": 1980.0,
            "power_w": 250.5,
            "mem_used_mib": 3072.0,
            "mem_total_mib": 141 * 1024.0,
        }
        assert set(first) == set(METRICS)
        nvml.util = 90
        # A sample taken after the change: its value shows in latest().
        assert sampler.wait_for(sampler.samples + 2, timeout=10.0)
        assert sampler.latest()["sm_util_pct"] == 90.0
    finally:
        sampler.close()
    assert not sampler.enabled and nvml.shutdowns == 1
    count = sampler.samples
    sampler.close()  # idempotent
    assert nvml.shutdowns == 1 and sampler.samples == count
    assert not sampler.start()  # a closed sampler stays closed


def test_a_uuid_selects_the_device_by_uuid() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(device="GPU-1234", interval=1.0, nvml=nvml)
    assert sampler.start()
    sampler.close()
    assert nvml.handles == [("uuid", "GPU-1234")]


def test_an_unsupported_metric_is_left_out() -> None:
    sampler = NvmlSampler(nvml=FakeNvml(no_power=True))
    assert sampler.start()
    try:
        assert sampler.wait_for(1, timeout=10.0)
        assert "power_w" not in sampler.latest() and "sm_util_pct" in sampler.latest()
    finally:
        sampler.close()


def test_nvml_failing_to_initialise_leaves_the_sampler_off() -> None:
    nvml = FakeNvml(fail_init=True)
    sampler = NvmlSampler(nvml=nvml)
    assert not sampler.start() and not sampler.enabled
    assert sampler.latest() == {}
    assert nvml.shutdowns == 0  # init never succeeded: nothing to shut down
    sampler.close()


def test_a_missing_pynvml_leaves_the_sampler_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    sampler = NvmlSampler()
    assert not sampler.start() and sampler.latest() == {}
    sampler.close()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        NvmlSampler(interval=0)


def test_the_cuda_backend_reports_and_stops_its_sampler() -> None:
    import asyncio

    from aiosched.backends.cuda import CudaBackend

    backend = CudaBackend()
    assert backend.telemetry() == {}
    sampler = backend.sampler = NvmlSampler(interval=0.005, nvml=FakeNvml())
    assert sampler.start() and sampler.wait_for(1, timeout=10.0)
    assert backend.telemetry()["sm_clock_mhz"] == 1980.0
    asyncio.run(backend.aclose())
    assert not sampler.enabled and backend.sampler is None
    asyncio.run(backend.aclose())  # idempotent


class _NoUuidNvml(FakeNvml):
    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        self.handles.append(("uuid", uuid))
        raise NVMLError("Not Found")


def test_the_backend_falls_back_to_the_index_when_nvml_knows_no_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiosched.backends import cuda

    nvml = _NoUuidNvml()
    monkeypatch.setattr(
        cuda, "NvmlSampler", lambda device, interval: NvmlSampler(device, interval, nvml=nvml)
    )
    sampler = cuda.CudaBackend()._start_sampler(0, "GPU-1234")
    assert sampler is not None and sampler.enabled
    sampler.close()
    assert nvml.handles == [("uuid", "GPU-1234"), ("index", 0)]
    assert nvml.shutdowns == 2  # the failed attempt shut its NVML session down too
