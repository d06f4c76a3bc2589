"""Packaging: the extras, and what happens when an optional one is missing."""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from pathlib import Path

import pytest

import aiosched
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.errors import InvalidConfig
from aiosched.models import tiny_mlp, torchvision_model
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


def test_torchvision_is_an_extra_not_a_dependency() -> None:
    project = _project()
    deps, extras = project["dependencies"], project["optional-dependencies"]
    assert isinstance(deps, list) and isinstance(extras, dict)
    assert not any(d.startswith("torchvision") for d in deps)
    assert any(d.startswith("torchvision") for d in extras["vision"])


def test_the_license_is_an_spdx_expression_with_its_text() -> None:
    project = _project()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert not any("License ::" in c for c in project["classifiers"])  # type: ignore[attr-defined]


# Optional modules a test imports (or skips without) -> the distribution providing each.
_PROVIDERS = {
    "prometheus_client": "prometheus-client",
    "matplotlib": "matplotlib",
    "mlperf_loadgen": "mlcommons-loadgen",
    "ray": "ray",
    "fastapi": "fastapi",
    "httpx": "httpx",
    "torchvision": "torchvision",
}


def _test_extra() -> set[str]:
    """The distributions the ``test`` extra installs, following ``aiosched[...]`` references."""
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    out: set[str] = set()
    todo = ["test"]
    while todo:
        for req in extras[todo.pop()]:
            m = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", req)
            assert m is not None, req
            if m.group(1) == "aiosched":
                todo += [e.strip() for e in (m.group(2) or "").split(",")]
            else:
                out.add(m.group(1).lower())
    return out


def test_the_test_extra_installs_every_optional_module_the_tests_use() -> None:
    used = set()
    for path in [*(ROOT / "tests").glob("*.py"), *(ROOT / "examples").glob("*.py")]:
        text = path.read_text()
        used |= set(re.findall(r"importorskip\(\"([A-Za-z0-9_]+)", text))
        used |= set(re.findall(r"^\s*(?:from|import) ([A-Za-z0-9_]+)", text, re.MULTILINE))
    optional = used & set(_PROVIDERS)
    assert {"prometheus_client", "matplotlib", "mlperf_loadgen", "ray", "fastapi"} <= optional
    installed = _test_extra()
    assert {_PROVIDERS[m] for m in optional} <= installed
    assert {"pytest", "hypothesis", "mypy", "ruff"} <= installed
    assert not installed & {"bentoml", "nvidia-ml-py"}  # the bench and cuda extras stay out


def test_a_missing_torchvision_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `import torchvision` (and its already imported submodule) raise ImportError
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(InvalidConfig, match=r"pip install 'aiosched\[vision\]'"):
        torchvision_model("resnet18")
    model, shape = torchvision_model("tiny_mlp")  # the tiny models need no torchvision
    assert shape == (16,) and type(model) is type(tiny_mlp())


@pytest.mark.parametrize(
    "args",
    [
        ["loadtest", "--backend", "cpu", "--models", "resnet18", "--duration", "1"],
        ["compare", "--backend", "cpu", "--models", "resnet18", "--rates", "5/s"],
        ["profile", "--backend", "cpu", "--models", "squeezenet1_1", "--batch-sizes", "1"],
        ["mlperf", "--backend", "cpu", "--model", "resnet18", "--scenario", "offline"],
    ],
    ids=lambda a: a[0],
)
def test_commands_without_torchvision_fail_in_one_line_before_running(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    from typer.testing import CliRunner

    from aiosched.cli import app

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    last = result.output.splitlines()[-1]  # loadtest may say what it was about to do first
    assert last.startswith("error: ") and "pip install 'aiosched[vision]'" in last
    assert result.output.count("error") == 1 and "Traceback" not in result.output


def test_a_missing_pynvml_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    sampler = NvmlSampler()
    with caplog.at_level(logging.WARNING, logger="aiosched"):
        assert not sampler.start()
    sampler.close()
    assert "pip install 'aiosched[cuda]'" in caplog.text


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
