"""Packaging: the extras, and what happens when an optional one is missing."""

from __future__ import annotations

import logging
import sys
import tomllib
from pathlib import Path

import pytest

from aiosched.telemetry.nvml import NvmlSampler

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
