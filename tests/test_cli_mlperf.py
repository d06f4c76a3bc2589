"""``aiosched mlperf``: LoadGen drives the embedded scheduler (extra ``mlperf``).

The bridge (:class:`SchedulerSUT`) and the option checks are tested without
LoadGen; the runs through LoadGen skip without it.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from aiosched.cli import app
from aiosched.integrations.mlperf import MlperfConfig, SchedulerSUT

runner = CliRunner()


def _one_line_error(result: Any, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "multistream"], "--scenario"),
        (["--backend", "cuda"], "--backend"),
        (["--model", "nonesuch"], "nonesuch"),
        (["--duration", "0"], "--duration"),
        (["--target-qps", "inf"], "--target-qps"),
        (["--lanes", "1000"], "--lanes"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    _one_line_error(runner.invoke(app, ["mlperf", *args]), needle)


def test_without_loadgen_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # `import mlperf_loadgen` raises
    _one_line_error(runner.invoke(app, ["mlperf"]), "aiosched[mlperf]")


@dataclass
class _Sample:
    id: int
    index: int


def test_samples_issued_from_many_threads_each_complete_once() -> None:
    """LoadGen calls issue_query from its own threads: every sample is answered exactly once."""
    done: Counter[int] = Counter()
    lock = threading.Lock()
    all_done = threading.Event()
    threads, per_thread = 4, 60

    def complete(batch: list[tuple[int, bool]]) -> None:
        with lock:
            for sample_id, ok in batch:
                assert ok
                done[sample_id] += 1
            if sum(done.values()) >= threads * per_thread:
                all_done.set()

    sut = SchedulerSUT(MlperfConfig(scenario="server", lanes=2), complete)
    sut.start()
    assert sut.solo_s is not None and sut.capacity_rps is not None and sut.capacity_rps > 0
    try:

        def issue(t: int) -> None:
            for i in range(0, per_thread, 3):  # queries of three samples
                ids = [t * 1000 + i + k for k in range(3)]
                sut.issue_queries([_Sample(j, j % 7) for j in ids])

        workers = [threading.Thread(target=issue, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert all_done.wait(30), f"{sum(done.values())} of {threads * per_thread} completed"
    finally:
        sut.stop()
    assert len(done) == threads * per_thread and set(done.values()) == {1}
    assert sut.issued == sut.completed == threads * per_thread and sut.errors == 0


def test_issuing_before_start_completes_the_samples_as_errors() -> None:
    got: list[tuple[int, bool]] = []
    sut = SchedulerSUT(MlperfConfig(), got.extend)
    sut.issue_queries([_Sample(1, 0), _Sample(2, 1)])
    assert got == [(1, False), (2, False)] and sut.errors == 2


@pytest.mark.parametrize(
    ("scenario", "name", "metric"),
    [
        ("server", "Server", "Completed samples per second"),
        ("offline", "Offline", "Samples per second"),
        ("singlestream", "SingleStream", "90.0th percentile latency (ns)"),
    ],
)
def test_loadgen_runs_each_scenario_and_its_summary_is_printed(
    scenario: str, name: str, metric: str
) -> None:
    pytest.importorskip("mlperf_loadgen")
    args = ["mlperf", "--scenario", scenario, "--duration", "1", "--min-queries", "32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "MLPerf Results Summary" in out
    assert re.search(rf"Scenario\s*:\s*{name}", out), out
    assert metric in out
    assert re.search(r"Result is\s*:\s*(VALID|INVALID)", out)
    assert "99.00 percentile latency (ns)" in out
    counts = re.search(r"aiosched: (\d+) samples issued, (\d+) completed", out)
    assert counts is not None and int(counts[1]) == int(counts[2]) >= 32
    assert "0 errors" in out
