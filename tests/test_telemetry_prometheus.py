"""The Prometheus exporter on the sim backend (skipped without prometheus-client)."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

import aiosched
from aiosched import simtime
from aiosched.backends.sim import SimBackend, SimModel
from aiosched.errors import InvalidConfig
from aiosched.loadgen import Workload, run_open_loop

prometheus_client = pytest.importorskip("prometheus_client")
parser = pytest.importorskip("prometheus_client.parser")

from aiosched.telemetry.prometheus import PrometheusExporter  # noqa: E402

MODELS = {
    "a": SimModel(base=0.004, per_item=0.001, noise=0.0),
    "b": SimModel(base=0.008, per_item=0.002, noise=0.0),
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _run(
    serve: bool, instrument: bool = True
) -> tuple[str, str | None, aiosched.SchedulerSnapshot]:
    schedule = Workload.parse("a:3,b:1", "a=20,b=40").schedule("poisson", 1500.0, 2.0, seed=5)

    async def main() -> tuple[str, str | None, aiosched.SchedulerSnapshot]:
        scraped = None
        async with aiosched.Scheduler(SimBackend(lanes=2, models=MODELS)) as sched:
            for name in MODELS:
                sched.register(name, max_batch_size=8)
            await sched.ready()
            async with PrometheusExporter(sched, interval=0.25) as exporter:
                port = exporter.serve(0) if serve else None
                infer = exporter.instrument(sched.infer) if instrument else sched.infer
                await run_open_loop(infer, schedule, make_input=lambda m: 0.0)
                if port is not None:
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=10) as response:
                        scraped = response.read().decode()
            text = prometheus_client.generate_latest(exporter.registry).decode()
            snap = sched.snapshot()
        return text, scraped, snap

    return simtime.run(main())


def test_the_exporter_reports_what_the_snapshot_says() -> None:
    text, _, snap = _run(serve=False)
    s = _samples(text)
    for name, m in snap.models.items():
        assert s[("aiosched_requests_total", (("model", name), ("outcome", "met")))] == (
            m.met_deadline
        )
        rejected = s[("aiosched_requests_total", (("model", name), ("outcome", "rejected")))]
        assert rejected == m.rejected
        assert s[("aiosched_requests_submitted_total", (("model", name),))] == m.submitted
        assert s[("aiosched_queue_depth", (("model", name),))] == m.queue_depth
        batches = sum(m.batch_sizes.values())
        assert s[("aiosched_batch_size_count", (("model", name),))] == batches
        assert s[("aiosched_batch_size_bucket", (("le", "+Inf"), ("model", name)))] == batches
        assert s[("aiosched_batch_size_bucket", (("le", "1.0"), ("model", name)))] == (
            m.batch_sizes.get(1, 0)
        )
        # instrument(): one observation per completed request (warm-up runs are not calls)
        assert s[("aiosched_infer_call_seconds_count", (("model", name),))] == m.completed
        assert s[("aiosched_request_latency_seconds_count", (("model", name),))] == m.completed
        assert s[("aiosched_execution_seconds_count", (("model", name),))] > 0
        assert s[("aiosched_predictor_abs_error_ratio_count", (("model", name),))] > 0
        p99 = s[
            ("aiosched_request_latency_quantile_seconds", (("model", name), ("quantile", "0.99")))
        ]
        assert p99 == pytest.approx(m.latency.p99)
    assert s[("aiosched_lanes", ())] == 2
    assert s[("aiosched_lanes_busy", ())] == 0
    assert s[("aiosched_predictor_mape", ())] == pytest.approx(snap.predictor_mape)


def _histogram(
    s: dict[tuple[str, tuple[tuple[str, str], ...]], float], family: str, model: str
) -> tuple[list[tuple[float, float]], float, float]:
    """(le, cumulative count) ascending with +Inf last, the count and the sum of one histogram."""
    buckets = []
    for (name, labels), value in s.items():
        tags = dict(labels)
        if name == f"{family}_bucket" and tags["model"] == model:
            buckets.append((float(tags["le"]), value))
    key = (("model", model),)
    return sorted(buckets), s[(f"{family}_count", key)], s[(f"{family}_sum", key)]


def test_request_latency_and_queue_wait_are_histograms_of_every_request() -> None:
    text, _, snap = _run(serve=False, instrument=False)
    s = _samples(text)
    assert not any(name.startswith("aiosched_infer_call") for name, _ in s)
    for name, m in snap.models.items():
        assert m.completed > 100 and m.failed == 0
        for family, summary, count in (
            ("aiosched_request_latency_seconds", m.latency, m.completed),
            # every request that completed ran once (no failures, so no retries)
            ("aiosched_queue_wait_seconds", m.queue_wait, m.completed),
        ):
            buckets, n, total = _histogram(s, family, name)
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), (family, buckets)  # cumulative
            assert buckets[-1] == (float("inf"), count) and n == count == summary.count
            assert total == pytest.approx(summary.total)
            assert [(le, c) for le, c in buckets[:-1]] == [
                (b, float(c)) for b, c in summary.buckets
            ]
            assert 0 < counts[-2] <= count  # something under 10 s, nothing over the total
        p99 = s[("aiosched_queue_wait_quantile_seconds", (("model", name), ("quantile", "0.99")))]
        assert p99 == pytest.approx(m.queue_wait.p99)
        assert m.queue_wait.p99 < m.latency.p99  # a wait is a part of the latency


def test_the_exporter_serves_http_on_loopback() -> None:
    _, scraped, _ = _run(serve=True)
    assert scraped is not None
    assert "aiosched_requests_total" in scraped and "aiosched_batch_size_bucket" in scraped


@pytest.mark.sim
async def test_bad_settings_are_refused() -> None:
    async with aiosched.Scheduler(SimBackend(lanes=1, models=MODELS)) as sched:
        with pytest.raises(InvalidConfig):
            PrometheusExporter(sched, interval=0)
        exporter = PrometheusExporter(sched)
        with pytest.raises(InvalidConfig):
            exporter.serve(70000)


def test_loadtest_serves_metrics_while_it_runs(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from aiosched.cli import app

    args = ["loadtest", "--backend", "sim", "--rate", "300", "--duration", "2", "--no-live"]
    result = CliRunner().invoke(app, [*args, "--metrics-port", "0"])
    assert result.exit_code == 0, result.output
    assert "metrics on http://127.0.0.1:" in result.output
