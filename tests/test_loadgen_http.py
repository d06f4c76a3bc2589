"""``aiosched loadtest --target http://...`` against the fastapi example under uvicorn."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import aiosched
from aiosched.cli import app
from aiosched.errors import InvalidConfig
from aiosched.loadgen.http_target import Endpoint, parse_shape

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
runner = CliRunner()


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("aiosched_example_http", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the example's annotations through it
    spec.loader.exec_module(module)
    return module


class Server:
    """The example app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.app = _example().create_app("cpu", lanes=1)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="uvicorn-test"
        )

    def __enter__(self) -> Server:
        self.thread.start()
        limit = time.monotonic() + 60
        while not self.server.started:  # the lifespan warms the model up first
            if not self.thread.is_alive() or time.monotonic() > limit:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


def _loadtest(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["loadtest", *args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(out.read_text())
    r = report["requests"]
    assert r["sent"] == r["completed"] + r["rejected"] + r["failed"] + r["cancelled"]
    assert r["completed"] == r["met_deadline"] + r["missed_deadline"]
    return report


def test_rate_run_counts_every_request_and_maps_404_to_failed(
    server: Server, tmp_path: Path
) -> None:
    report = _loadtest(
        tmp_path,
        *("--target", server.url, "--models", "tiny_mlp,nope", "--input-shape", "16"),
        *("--rate", "60", "--duration", "1", "--warmup", "0.5", "--deadline", "2000"),
    )
    c, r = report["config"], report["requests"]
    assert c["target"] == server.url and c["mode"] == "open" and c["backend"] is None
    http = c["http"]
    assert http["statuses"] == {"200": r["completed"], "404": r["failed"]}
    assert r["completed"] > 0 and r["failed"] > 0 and r["rejected"] == r["cancelled"] == 0
    assert http["per_model_statuses"]["nope"] == {
        "404": report["per_model"]["nope"]["requests"]["sent"]
    }
    assert c["warmup"]["seconds"] == 0.5 and c["warmup"]["requests"]["sent"] > 0
    assert sum(c["warmup"]["statuses"].values()) == c["warmup"]["requests"]["sent"]


def test_a_full_queue_is_rejected_with_retry_after(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sched = server.app.state.scheduler
    real = sched.infer
    calls = [0]

    async def half_full(model: str, x: Any, deadline: float) -> Any:
        calls[0] += 1
        if calls[0] % 2:
            await asyncio.sleep(0)
            raise aiosched.Overloaded(f"{model}: the queue is full")
        return await real(model, x, deadline=deadline)

    monkeypatch.setattr(sched, "infer", half_full)
    report = _loadtest(
        tmp_path, "--target", server.url, "--rate", "40", "--duration", "1", "--warmup", "0"
    )
    r, http = report["requests"], report["config"]["http"]
    assert r["rejected"] == http["statuses"]["429"] == http["retry_after"] > 0
    assert r["completed"] == http["statuses"]["200"] > 0


def test_closed_loop_over_http(server: Server, tmp_path: Path) -> None:
    report = _loadtest(
        tmp_path, "--target", server.url, "--concurrency", "2", "--duration", "1", "--warmup", "0"
    )
    c, r = report["config"], report["requests"]
    assert c["mode"] == "closed" and c["concurrency"] == 2 and 1 <= c["max_in_flight"] <= 2
    assert c["http"]["connections"] == 2
    assert r["completed"] == c["http"]["statuses"]["200"] > 0 and report["achieved_rps"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lanes", "3"], "--lanes is the server's setting"),
        (["--policy", "fifo"], "--policy is the server's setting"),
        (["--timeline", "t.csv"], "--timeline is the server's setting"),
        ([], "give --rate R or --concurrency N"),
    ],
)
def test_embedded_options_are_refused_with_one_line(args: list[str], message: str) -> None:
    # refused before anything is sent: no server needed
    result = runner.invoke(app, ["loadtest", "--target", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert message in result.output


def test_nothing_listening_exits_2_with_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = runner.invoke(app, ["loadtest", "--target", f"http://127.0.0.1:{port}", "--rate", "5"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "nothing answers at" in result.output


def test_without_httpx_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    result = runner.invoke(app, ["loadtest", "--target", "http://127.0.0.1:9", "--rate", "5"])
    assert result.exit_code == 2 and "pip install 'aiosched[http]'" in result.output


def test_urls_and_shapes() -> None:
    e = Endpoint.parse("https://h:8/v1/")
    assert e is not None and e.infer_url("m") == "https://h:8/v1/infer/m"
    assert e.models == "https://h:8/v1/models"
    t = Endpoint.parse("http://h/{model}/predict")
    assert t is not None and t.infer_url("m") == "http://h/m/predict" and t.models is None
    assert Endpoint.parse("embedded") is None
    for bad in ("http://", "http://h/{x}", "http://h:99999"):
        with pytest.raises(InvalidConfig):
            Endpoint.parse(bad)
    assert parse_shape("3x224x224") == parse_shape("3,224,224") == (3, 224, 224)
    with pytest.raises(InvalidConfig):
        parse_shape("0x3")
