"""``aiosched loadtest --devices``: a fleet of sim devices through typer's runner (virtual time)."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from aiosched import simtime
from aiosched.cli import _fleet, app
from aiosched.cli._fleet import render_devices
from aiosched.cli._live_fleet import fleet_plain_line
from aiosched.cli.loadtest import _run
from aiosched.fleet import Fleet, FleetSnapshot
from aiosched.loadgen import REPORT_KEYS, Progress, Workload, run_open_loop
from aiosched.loadgen.fleet_load import FleetOptions
from aiosched.loadgen.harness import LoadtestConfig, run_loadtest
from aiosched.loadgen.timelinefile import read_timeline

runner = CliRunner()

SIM4 = ["sim:0", "sim:1", "sim:2", "sim:3"]


def _loadtest(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["loadtest", "--backend", "sim", *args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(out.read_text())
    return report, result.output


def _check_accounting(report: dict[str, Any]) -> None:
    r = report["requests"]
    assert r["sent"] == r["completed"] + r["rejected"] + r["failed"] + r["cancelled"]
    assert r["completed"] == r["met_deadline"] + r["missed_deadline"]
    devices = report["fleet"]["devices"]
    # Every request sent went to exactly one device, and came back from it.
    assert sum(d["submitted"] for d in devices) == r["sent"]
    assert sum(d["completed"] for d in devices) == r["completed"]
    assert sum(d["rejected"] for d in devices) == r["rejected"]


def test_four_sim_devices_run_and_the_report_has_the_fleet(tmp_path: Path) -> None:
    report, output = _loadtest(tmp_path, "--devices", "4", "--rate", "1200", "--duration", "3")
    assert tuple(report) == (*REPORT_KEYS, "fleet")
    _check_accounting(report)
    config, fleet = report["config"], report["fleet"]
    assert config["devices"] == SIM4 and config["replicas"] is None
    assert config["rebalance_every_s"] == 0.5  # the fleet's own default, stated
    assert [d["label"] for d in fleet["devices"]] == SIM4
    assert all(d["submitted"] > 0 for d in fleet["devices"])  # the load is spread
    models = {"resnet50", "yolov8n", "vit_b16"}
    assert set(fleet["placement"]) == models
    for name, labels in fleet["placement"].items():
        assert labels and set(labels) <= set(SIM4)
        assert all(name in d["models"] for d in fleet["devices"] if d["label"] in labels)
    assert fleet["grown"] >= 0 and fleet["shrunk"] >= 0
    assert fleet["placement_over_time"][0] == {"t_s": 0.0, "placement": {m: SIM4 for m in models}}
    words = " ".join(output.split())  # lines wrap with the terminal
    assert "4 sim devices (sim:0, sim:1, sim:2, sim:3), 2 lanes each" in words
    assert "per device" in words and "replicas at the end: resnet50" in words


def test_four_devices_at_four_times_the_rate_give_about_four_times_the_goodput(
    tmp_path: Path,
) -> None:
    # 600/s is past one sim device's peak (it rejects some): the fleet's goodput must scale.
    one, _ = _loadtest(tmp_path, "--rate", "600", "--duration", "3")
    four, _ = _loadtest(tmp_path, "--devices", "4", "--rate", "2400", "--duration", "3")
    assert one["requests"]["rejected"] > 0
    assert 3.6 <= four["goodput_rps"] / one["goodput_rps"] <= 4.4


def test_one_replica_each_grows_under_load_and_off_never_moves(tmp_path: Path) -> None:
    args = ["--devices", "4", "--replicas", "1", "--models", "resnet50", "--duration", "3"]
    report, _ = _loadtest(tmp_path, *args, "--rate", "700")
    _check_accounting(report)
    fleet = report["fleet"]
    assert report["config"]["replicas"] == 1
    assert fleet["placement_over_time"][0]["placement"] == {"resnet50": ["sim:0"]}
    assert fleet["grown"] >= 1 and len(fleet["placement"]["resnet50"]) > 1

    still, _ = _loadtest(tmp_path, *args, "--rate", "700", "--rebalance-every", "off")
    assert still["config"]["rebalance_every_s"] is None
    assert still["fleet"]["grown"] == still["fleet"]["shrunk"] == 0
    assert still["fleet"]["placement"] == {"resnet50": ["sim:0"]}
    assert len(still["fleet"]["placement_over_time"]) == 1
    assert [d["submitted"] > 0 for d in still["fleet"]["devices"]] == [True, False, False, False]


def test_closed_loop_on_a_fleet(tmp_path: Path) -> None:
    report, _ = _loadtest(tmp_path, "--devices", "2", "--concurrency", "8", "--duration", "2")
    _check_accounting(report)
    assert report["config"]["mode"] == "closed" and report["config"]["max_in_flight"] == 8
    assert report["config"]["devices"] == ["sim:0", "sim:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "0"], "from 1 to"),
        (["--devices", "-2"], "from 1 to"),
        (["--devices", "65"], "from 1 to 64"),
        (["--devices", "foo"], "'foo' is not a device"),
        (["--devices", "cuda:0,cuda:0"], "cuda:0 is given twice"),
        (["--devices", "cuda:0,gpu1"], "'gpu1' is not a device"),
        (["--devices", "cuda:0", "--backend", "sim"], "--backend sim"),
        (["--devices", "2", "--backend", "cuda"], "torch sees 0 CUDA GPU(s)"),
        (["--devices", "cuda:0,cuda:2"], "there is no cuda:0"),
        (["--devices", "2", "--replicas", "3"], "at most the 2 devices"),
        (["--devices", "2", "--rebalance-every", "0"], "--rebalance-every"),
        (["--devices", "2", "--rebalance-every", "soon"], "'soon' is not a"),
        (["--devices", "2", "--rebalance-every", "1us"], "at least 10 ms"),
        (["--replicas", "2"], "give --devices N too"),
        (["--rebalance-every", "100"], "give --devices N too"),
        (["--devices", "2", "--target", "http://127.0.0.1:9"], "embedded target"),
        (["--devices", "2", "--target", "ray-serve:app", "--rate", "5"], "embedded target"),
    ],
)
def test_bad_devices_and_refused_combinations_exit_2_with_one_line(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fleet, "_gpus", lambda: 0)  # as on a machine without a GPU
    result = runner.invoke(app, ["loadtest", "--duration", "1", "--rate", "10", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_device_table_and_the_live_view_fit_80_columns(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    cfg = LoadtestConfig(backend="sim", duration=2.0, rate=1200.0)
    report, snap, _ = _run(cfg, console, True, fleet=FleetOptions(("sim",) * 4))
    assert isinstance(snap, FleetSnapshot) and snap.closed
    text = out.getvalue()
    final = text[text.rindex("offered ") :]  # the last screen drawn
    assert "…" not in final and max(len(line) for line in final.splitlines()) <= 80
    assert "4 devices" in final and "replicas" in final
    for label in SIM4:
        assert label in final
    for model in report["fleet"]["placement"]:
        assert model in final

    table = io.StringIO()
    Console(file=table, width=80, color_system=None).print(render_devices(report))
    drawn = table.getvalue()
    assert "…" not in drawn and max(len(line) for line in drawn.splitlines()) <= 80
    for d in report["fleet"]["devices"]:
        assert d["label"] in drawn and str(d["submitted"]) in drawn
        assert str(d["completed"]) in drawn and str(d["met_deadline"]) in drawn
        if len(d["models"]) == 3:
            assert "all 3" in drawn  # every model: said short, to fit
        else:
            assert all(m in drawn for m in d["models"])
        assert f"{d['goodput_rps']:.1f}" in drawn


@pytest.mark.sim
async def test_the_plain_line_names_devices_and_replicas() -> None:
    cfg = LoadtestConfig(backend="sim", duration=1.0, rate=400.0)
    seen: list[tuple[Progress, Any]] = []
    fleet = FleetOptions(("sim", "sim"), replicas=1)
    await run_loadtest(cfg, on_progress=lambda p, s: seen.append((p, s)), fleet=fleet)
    progress, snap = seen[-1]
    assert isinstance(snap, FleetSnapshot)
    line = fleet_plain_line(progress, snap, 400.0)
    assert "on 2 devices" in line and "replicas resnet50=" in line and "since start:" in line
    assert f"rebalance so far: grown {snap.grown}, shrunk {snap.shrunk}" in line


def test_prometheus_metrics_of_a_fleet_carry_a_device_label() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    parser = pytest.importorskip("prometheus_client.parser")
    from aiosched.telemetry.prometheus_fleet import FleetExporter

    schedule = Workload.parse("resnet50:3,vit_b16:1", "50").schedule("poisson", 1500.0, 2.0, 5)

    async def main() -> tuple[str, FleetSnapshot]:
        async with Fleet.sim(3) as fleet:
            for name in ("resnet50", "vit_b16"):
                fleet.register(name, max_batch_size=8)
            await fleet.ready()
            async with FleetExporter(fleet, interval=0.25) as exporter:
                await run_open_loop(
                    exporter.instrument(fleet.infer), schedule, make_input=lambda m: 0.0
                )
            text = prometheus_client.generate_latest(exporter.registry).decode()
            return text, fleet.snapshot()

    text, snap = simtime.run(main())
    completed: dict[tuple[str, str], float] = {}
    calls: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "aiosched_requests_total" and s.labels["outcome"] in ("met", "missed"):
                key = (s.labels["device"], s.labels["model"])
                completed[key] = completed.get(key, 0.0) + s.value
            if s.name == "aiosched_infer_call_seconds_count":
                assert "device" not in s.labels  # the fleet's own calls: it picks the device
                calls[s.labels["model"]] = s.value
    assert {device for device, _ in completed} == {"sim:0", "sim:1", "sim:2"}
    for i, label in enumerate(snap.labels):
        for name, m in snap.devices[i].models.items():
            assert completed[(label, name)] == m.completed
    for name, m in snap.models.items():
        assert calls[name] == m.completed > 0
    assert text.count("# TYPE aiosched_lanes_busy gauge") == 1  # one family, not one per device


def test_loadtest_on_a_fleet_serves_metrics() -> None:
    pytest.importorskip("prometheus_client")
    args = ["loadtest", "--backend", "sim", "--devices", "2", "--rate", "300", "--duration", "2"]
    result = runner.invoke(app, [*args, "--metrics-port", "0"])
    assert result.exit_code == 0, result.output
    assert "metrics on http://127.0.0.1:" in result.output


def test_the_timeline_of_a_fleet_numbers_lanes_across_devices(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    args = ["--devices", "3", "--rate", "900", "--duration", "2", "--timeline", str(path)]
    report, output = _loadtest(tmp_path, *args)
    rows = read_timeline(path)
    assert "lane = device x 2 + the device's lane" in " ".join(output.split())
    assert len(rows) == report["batches"]["count"]
    assert {r.lane for r in rows} == set(range(6))  # 3 devices x 2 lanes, all busy at times
    assert sorted(r.id for r in rows) == list(range(1, len(rows) + 1))
    by_id = {r.id: r for r in rows}
    pairs = [(r, by_id[i]) for r in rows for i in r.beside]
    assert pairs
    for r, peer in pairs:  # beside: on the same device, and both ways
        assert r.lane // 2 == peer.lane // 2 and r.lane != peer.lane
        assert r.id in peer.beside


@pytest.mark.sim
async def test_ctrl_c_on_a_fleet_stops_sending_drains_every_device_and_reports() -> None:
    cfg = LoadtestConfig(backend="sim", duration=20.0, rate=800.0)

    def interrupt_soon(front: object, schedule: object) -> None:
        asyncio.get_running_loop().call_later(2.0, signal.raise_signal, signal.SIGINT)

    fleet = FleetOptions(("sim",) * 3)
    report, snap = await run_loadtest(cfg, on_start=interrupt_soon, handle_sigint=True, fleet=fleet)
    assert report["config"]["stopped_early"] is True
    _check_accounting(report)
    assert 0 < report["requests"]["sent"] < 800 * 20 * 0.5
    assert report["requests"]["cancelled"] == 0  # drained, not dropped
    assert isinstance(snap, FleetSnapshot) and snap.closed
    assert all(m.pending == 0 for d in snap.devices for m in d.models.values())
