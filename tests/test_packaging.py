"""Packaging: the extras, and what happens when an optional one is missing."""

from __future__ import annotations

import logging
import sys
import tomllib
from pathlib import Path

import pytest

import aiosched
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.errors import InvalidConfig
from aiosched.telemetry.nvml import NvmlSampler
from aiosched.telemetry.prometheus import PrometheusExporter

MODELS = {"a": SimModel(base=0.004, per_item=0.001, noise=0.0)}

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_nvml_is_an_extra_not_a_dependency() -> None:
    project = _project()
    deps = project["dependencies"]
    extras = project["optional-dependencies"]
    assert isinstance(deps, list) and isinstance(extras, dict)
    assert not any(d.startswith("nvidia-ml-py") for d in deps)
    assert any(d.startswith("nvidia-ml-py") for d in extras["cuda"])
    assert not any(d.startswith("looptime") for d in extras["dev"])


def test_the_license_is_an_spdx_expression() -> None:
    assert _project()["license"] == "Apache-2.0"


def test_a_missing_pynvml_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    sampler = NvmlSampler()
    with caplog.at_level(logging.WARNING, logger="aiosched"):
        assert not sampler.start()
    sampler.close()
    assert "aiosched[cuda]" in caplog.text


@pytest.mark.sim
async def test_a_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)

    async with aiosched.Scheduler(SimBackend(lanes=1, models=MODELS)) as sched:
        with pytest.raises(InvalidConfig, match=r"aiosched\[prometheus\]"):
            PrometheusExporter(sched)


def test_loadtest_without_prometheus_client_fails_before_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from aiosched.cli import app

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    args = ["loadtest", "--backend", "sim", "--rate", "300", "--duration", "2"]
    result = CliRunner().invoke(app, [*args, "--metrics-port", "9464"])
    assert result.exit_code == 2
    assert "aiosched[prometheus]" in result.output


def test_names_and_submodules_load_on_first_use() -> None:
    import aiosched

    assert aiosched.scheduler.DEFAULT_PREDICTOR == "overlap:quantile=0.9"
    assert aiosched.Scheduler is aiosched.scheduler.Scheduler
    assert set(aiosched.__all__) <= set(dir(aiosched))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = aiosched.nope  # type: ignore[attr-defined]
