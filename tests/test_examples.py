"""Smoke tests: each example runs (fastapi and httpx are optional: skipped without them)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import aiosched

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"aiosched_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the example's annotations through it
    spec.loader.exec_module(module)
    return module


README = EXAMPLES.parent / "README.md"


def test_basic(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_load("basic").main())
    out = capsys.readouterr().out
    assert "mobilenet_v3_small" in out and "squeezenet1_1" in out


def test_the_readme_example_runs_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert out.startswith("class ") and out.rstrip().endswith("1 met"), out


def test_custom_model(capsys: pytest.CaptureFixture[str]) -> None:
    example = _load("custom_model")
    counts = aiosched.run(example.main(40))
    assert sum(counts.values()) == 40
    out = capsys.readouterr().out
    assert "refused:" in out and "40 requests" in out


@pytest.fixture
def service() -> Any:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    example = _load("fastapi_app")
    # Entering runs the lifespan (scheduler up, warm-up done); leaving closes the scheduler.
    with TestClient(example.create_app("cpu", lanes=1)) as client:
        yield client


def test_fastapi_infers_with_a_deadline_from_the_header(service: Any) -> None:
    body = {"x": [0.1] * 16}
    r = service.post("/infer/tiny_mlp", json=body, headers={"X-Deadline-Ms": "500"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny_mlp" and len(r.json()["y"]) == 4
    r = service.post("/infer/tiny_mlp", json=body)  # the default deadline
    assert r.status_code == 200, r.text
    assert service.get("/stats").json()["tiny_mlp"]["completed"] >= 2


def test_fastapi_maps_refusals_to_statuses(service: Any) -> None:
    body = {"x": [0.1] * 16}
    # a deadline no run can meet is refused at once, with Retry-After
    r = service.post("/infer/tiny_mlp", json=body, headers={"X-Deadline-Ms": "0.000001"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert service.post("/infer/nope", json=body).status_code == 404
    assert service.post("/infer/tiny_mlp", json={"x": [0.1] * 3}).status_code == 400
    r = service.post("/infer/tiny_mlp", json=body, headers={"X-Deadline-Ms": "-5"})
    assert r.status_code == 400
    r = service.post("/infer/tiny_mlp", json=body, headers={"X-Deadline-Ms": "soon"})
    assert r.status_code == 422


def test_fastapi_answers_a_full_queue_with_429(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sched = service.app.state.scheduler

    async def full(model: str, x: Any, deadline: float) -> Any:
        await asyncio.sleep(0)
        raise aiosched.Overloaded(f"{model}: the queue is full")

    monkeypatch.setattr(sched, "infer", full)
    r = service.post("/infer/tiny_mlp", json={"x": [0.1] * 16})
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
