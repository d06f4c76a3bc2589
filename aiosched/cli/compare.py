"""``aiosched compare``: several (policy, predictor) contenders on identical arrivals.

Each contender gets one warmed-up :class:`~aiosched.loadgen.harness.LoadtestSession`,
created once and reused for every rate. Rates are fractions of a measured peak
(``0.6``), or absolute requests/s (``300/s``); the peak is found by the bounded
search of :mod:`aiosched.loadgen.peak` on the session of ``--peak-of`` (the first
policy by default; ``all`` searches every contender's and takes the first's as
the base of the fractions). Every search starts from the same rate, the first
searched contender's capacity estimate, so that two contenders that behave alike
walk the same steps. At each rate one schedule is generated (same seed)
and every contender runs it, one after the other (interleaved: on a real
device a slow drift of the machine hits every contender alike). On the sim
backend everything runs in virtual time and is deterministic.

``--repeat N`` runs every rate N rounds, each with its own arrivals (seeds
``seed``..``seed+N-1``), every contender once per round in a rotating order:
on a machine whose speed drifts by tens of percent from minute to minute, one
run per contender compares the machine's moments as much as the contenders.
The table then shows goodput and attainment summed over the rounds, the median
round's p50 and p99, and how many rounds the contender's goodput was within
``TIE`` of the best of that round (``best``); each run in the JSON then also
carries its ``round``.

``--json`` writes ``{"runs": [{"policy", "predictor", "rate_rps", "report"}],
"peak_rps": {contender: rps}, "peak_steps": {contender: [step, ...]}, "config":
{...}}``; ``report`` is the ``aiosched loadtest`` report of that run. Bad options
end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..errors import AioschedError, InvalidConfig
from ..loadgen import write_report
from ..loadgen.arrivals import parse_arrival
from ..loadgen.peak import PeakResult, PeakStep
from ._choices import ARRIVALS, BACKENDS, POLICIES, PREDICTORS
from ._parse import DURATION_HELP, deadline_spec
from ._render import render_steps, terminal_console

if TYPE_CHECKING:  # the harness imports torch: at run time it is imported when a command runs
    from ..loadgen.harness import LoadtestConfig, LoadtestSession

__all__ = ["CompareSpec", "Contender", "RateSpec", "parse_rates", "register", "run_compare"]


@dataclass(frozen=True)
class RateSpec:
    """One ``--rates`` item: a fraction of the peak, or absolute requests/s (``300/s``)."""

    value: float
    absolute: bool

    @property
    def text(self) -> str:
        return f"{self.value:g}/s" if self.absolute else f"{self.value:g}"

    def rps(self, peak_rps: float | None) -> float:
        if self.absolute:
            return self.value
        if peak_rps is None:
            raise InvalidConfig(f"rate {self.text} is a fraction of a peak, and no peak was found")
        return self.value * peak_rps


def parse_rates(text: str) -> tuple[RateSpec, ...]:
    """``"0.3,0.6,300/s"`` -> rate specs; at least one, each finite and > 0."""
    out: list[RateSpec] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        absolute = item.endswith("/s")
        raw = item.removesuffix("/s").strip()
        try:
            value = float(raw)
        except ValueError:
            raise InvalidConfig(
                f"--rates: {item!r} is not a number (a fraction of the peak) or N/s"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise InvalidConfig(f"--rates: every rate must be > 0, got {item!r}")
        out.append(RateSpec(value, absolute))
    if not out:
        raise InvalidConfig("--rates: give at least one rate, e.g. 0.5,1.0 or 300/s")
    return tuple(out)


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise InvalidConfig(f"{option}: give at least one name")
    if len(set(names)) != len(names):
        raise InvalidConfig(f"{option}: a name is given twice")
    return names


@dataclass(frozen=True)
class Contender:
    policy: str
    predictor: str

    @property
    def label(self) -> str:
        return f"{self.policy}/{self.predictor}"


@dataclass(frozen=True)
class CompareSpec:
    """A whole comparison, validated (:meth:`build`) before anything runs."""

    base: LoadtestConfig
    """The shared config (backend, models, arrivals, duration, ...); policy and predictor vary."""
    contenders: tuple[Contender, ...]
    rates: tuple[RateSpec, ...]
    peak_of: tuple[Contender, ...]
    """Contenders whose peak is searched; the first is the base of the fractions."""
    step_duration: float | None = None
    peak_steps: int | None = None
    repeat: int = 1

    @classmethod
    def build(
        cls,
        base: LoadtestConfig,
        policies: str,
        predictors: str | None,
        rates: str,
        peak_of: str | None,
        *,
        step_duration: float | None = None,
        peak_steps: int | None = None,
        repeat: int = 1,
    ) -> CompareSpec:
        from ..loadgen.harness import LoadtestSession
        from ..policy import make_policy
        from ..predict import make_predictor

        pols = _names(policies, "--policies")
        for p in pols:
            make_policy(p)  # an unknown one raises InvalidConfig
        preds = _names(predictors, "--predictors") if predictors is not None else (base.predictor,)
        for p in preds:
            make_predictor(p)
        contenders = tuple(Contender(po, pr) for po in pols for pr in preds)
        specs = parse_rates(rates)
        if peak_of is None:
            chosen: tuple[Contender, ...] = (
                (contenders[0],) if any(not r.absolute for r in specs) else ()
            )
        elif peak_of == "all":
            chosen = contenders
        else:
            match = [c for c in contenders if peak_of in (c.policy, c.label)]
            if not match:
                raise InvalidConfig(
                    f"--peak-of {peak_of!r} is not a contender: give one of "
                    f"{', '.join(pols)}, a policy/predictor pair, or 'all'"
                )
            chosen = (match[0],)
        if base.trace is not None or base.arrival == "trace":
            raise InvalidConfig("compare takes an arrival process, not a trace")
        parse_arrival(base.arrival)
        if step_duration is not None and not step_duration > 0:
            raise InvalidConfig(f"--step-duration must be > 0 seconds, got {step_duration}")
        if peak_steps is not None and peak_steps < 1:
            raise InvalidConfig(f"--peak-steps must be >= 1, got {peak_steps}")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
            raise InvalidConfig(f"--repeat must be an int in 1..100, got {repeat!r}")
        LoadtestSession(base)  # unknown models, bad deadlines: raises before anything runs
        return cls(base, contenders, specs, chosen, step_duration, peak_steps, repeat)

    def config_for(self, c: Contender) -> LoadtestConfig:
        return replace(self.base, policy=c.policy, predictor=c.predictor)


def _config_section(spec: CompareSpec, backend: str, session: LoadtestSession) -> dict[str, Any]:
    from ..loadgen.harness import PEAK_SEARCH

    b = spec.base
    return {
        "backend": backend,
        "models": {
            m.name: {"share": m.share, "deadline_ms": m.deadline_s * 1000.0}
            for m in session.workload.models
        },
        "contenders": [c.label for c in spec.contenders],
        "policies": list(dict.fromkeys(c.policy for c in spec.contenders)),
        "predictors": list(dict.fromkeys(c.predictor for c in spec.contenders)),
        "rates": [r.text for r in spec.rates],
        "peak_of": [c.label for c in spec.peak_of],
        "arrival": b.arrival,
        "duration_s": b.duration,
        "seed": b.seed,
        "lanes": b.lanes,
        "max_batch_size": b.max_batch_size,
        "slo_attainment": b.slo_attainment,
        "step_duration_s": spec.step_duration
        if spec.step_duration is not None
        else PEAK_SEARCH.step_s(backend),
        "peak_max_steps": spec.peak_steps or PEAK_SEARCH.max_steps,
        "repeat": spec.repeat,
    }


async def run_compare(
    spec: CompareSpec,
    *,
    on_peak: Callable[[Contender, PeakResult], None] | None = None,
    on_step: Callable[[Contender, PeakStep], None] | None = None,
    on_run: Callable[[Contender, float, Mapping[str, Any]], None] | None = None,
    on_rate: Callable[[float, RateSpec, Sequence[tuple[Contender, Mapping[str, Any]]]], None]
    | None = None,
) -> dict[str, Any]:
    """Run the comparison; returns the ``--json`` document (see the module docstring)."""
    from ..loadgen.harness import PEAK_SEARCH, LoadtestSession, resolve_backend

    backend = resolve_backend(spec.base.backend)
    async with contextlib.AsyncExitStack() as stack:
        sessions: dict[Contender, LoadtestSession] = {}
        for c in spec.contenders:
            sessions[c] = await stack.enter_async_context(LoadtestSession(spec.config_for(c)))
        peaks: dict[str, PeakResult] = {}
        # Every search starts from one rate: the first searched contender's capacity estimate.
        # Each session's estimate comes from its own predictor, so with a start of its own a
        # policy that never consults the predictor (fifo) walked other steps under another
        # predictor and, its pass/fail being noisy near its peak, found another peak (237.7
        # against 252.5/s on the bursty three-model sim workload).
        start_rps = sessions[spec.peak_of[0]].capacity_estimate_rps if spec.peak_of else None
        for c in spec.peak_of:

            def step(s: PeakStep, c: Contender = c) -> None:
                if on_step is not None:
                    on_step(c, s)

            result = await sessions[c].find_peak(
                PEAK_SEARCH,
                start_rps=start_rps,
                step_duration=spec.step_duration,
                max_steps=spec.peak_steps,
                on_step=step,
            )
            peaks[c.label] = result
            if on_peak is not None:
                on_peak(c, result)
        base_peak: float | None = None
        if spec.peak_of:
            first = peaks[spec.peak_of[0].label]
            base_peak = first.peak_rps if first.found else None
        first_session = sessions[spec.contenders[0]]
        runs: list[dict[str, Any]] = []
        n = len(spec.contenders)
        for k, r in enumerate(spec.rates):
            if not r.absolute and base_peak is None:
                who = spec.peak_of[0].label
                raise InvalidConfig(
                    f"no rate tried met the SLO for {who}: fractions of its peak are undefined; "
                    "give absolute rates such as 100/s"
                )
            rate = r.rps(base_peak)
            done: list[tuple[Contender, Mapping[str, Any]]] = []
            for round_ in range(spec.repeat):
                # One schedule per round: identical arrivals for all within it.
                schedule = first_session.schedule(rate, seed=spec.base.seed + round_)
                # Rotate who goes first from rate to rate and round to round: on a real
                # machine the first run after the others' did measurably worse (same policy,
                # same arrivals), so a fixed order would hand one contender that handicap.
                turn = (k * spec.repeat + round_) % n
                order = spec.contenders[turn:] + spec.contenders[:turn]
                for c in order:
                    extra: dict[str, Any] = {"rate_mode": "compare", "rate_spec": r.text}
                    if base_peak is not None:
                        extra["peak_rps"] = round(base_peak, 3)
                    if spec.repeat > 1:
                        extra["round"] = round_
                    report = await sessions[c].run(schedule, config=extra)
                    run: dict[str, Any] = {
                        "policy": c.policy,
                        "predictor": c.predictor,
                        "rate_rps": round(rate, 3),
                        "report": report,
                    }
                    if spec.repeat > 1:
                        run["round"] = round_
                    runs.append(run)
                    done.append((c, report))
                    if on_run is not None:
                        on_run(c, rate, report)
            done.sort(key=lambda item: spec.contenders.index(item[0]))  # stable: rounds in order
            if on_rate is not None:
                on_rate(rate, r, done)
        config = _config_section(spec, backend, first_session)
        config["base_peak_rps"] = None if base_peak is None else round(base_peak, 3)
        config["peak_start_rps"] = None if start_rps is None else round(start_rps, 3)
        config["peaks"] = {
            label: {k: v for k, v in p.to_dict().items() if k != "steps"}
            for label, p in peaks.items()
        }
    return {
        "runs": runs,
        "peak_rps": {label: round(p.peak_rps, 3) for label, p in peaks.items()},
        "peak_steps": {label: [s.to_dict() for s in p.steps] for label, p in peaks.items()},
        "config": config,
    }


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def rate_table(
    rate: float,
    r: RateSpec,
    rows: Sequence[tuple[Contender, Mapping[str, Any]]],
    peak_of: str | None = None,
) -> Table:
    """One rate's results: a row per contender."""
    what = f"{r.value:g} x peak of {peak_of}, " if not r.absolute and peak_of else ""
    table = Table(
        title=f"{rate:.1f} requests/s ({what}latency in ms, whole runs)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("contender", overflow="fold")
    rounds: dict[Contender, list[Mapping[str, Any]]] = {}
    for c, report in rows:
        rounds.setdefault(c, []).append(report)
    repeated = any(len(v) > 1 for v in rounds.values())
    names = ["goodput/s", "attain %", "p50 ms", "p99 ms", "rejected", "late", "batch"]
    for name in [*names, "best"] if repeated else names:
        # A number is never cut to "…": its header wraps instead, and the label folds.
        table.add_column(name, justify="right", no_wrap=True, overflow="fold")
    table.caption = "late: completed after its deadline; batch: mean batch size"
    best = _best_rounds(rounds) if repeated else {}
    for c, reports in rounds.items():
        sent = sum(rep["requests"]["sent"] for rep in reports)
        met = sum(rep["requests"]["met_deadline"] for rep in reports)
        cells = [
            c.label,
            _fmt(_mean([rep["goodput_rps"] for rep in reports])),
            _fmt(100.0 * met / sent if sent else None, ".2f"),
            _fmt(_median([rep["latency_ms"]["p50"] for rep in reports])),
            _fmt(_median([rep["latency_ms"]["p99"] for rep in reports])),
            str(sum(rep["requests"]["rejected"] for rep in reports)),
            str(sum(rep["requests"]["missed_deadline"] for rep in reports)),
            _fmt(_mean([rep["batches"]["mean_size"] for rep in reports]), ".2f"),
        ]
        if repeated:
            cells.append(f"{best.get(c, 0)}/{len(reports)}")
        table.add_row(*cells)
    return table


TIE = 0.02
"""Goodputs within 2 % of a round's best count as best: closer than that is noise."""


def _best_rounds(rounds: Mapping[Contender, Sequence[Mapping[str, Any]]]) -> dict[Contender, int]:
    """How many rounds each contender's goodput was within ``TIE`` of the round's best."""
    wins: dict[Contender, int] = {}
    for i in range(max(len(v) for v in rounds.values())):
        goodput = {c: v[i]["goodput_rps"] for c, v in rounds.items() if i < len(v)}
        top = max(g for g in goodput.values() if g is not None)
        for c, g in goodput.items():
            if g is not None and g >= (1.0 - TIE) * top:
                wins[c] = wins.get(c, 0) + 1
    return wins


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _median(xs: Sequence[float | None]) -> float | None:
    vals = sorted(x for x in xs if x is not None)
    return vals[len(vals) // 2] if vals else None


def peaks_table(doc: Mapping[str, Any]) -> Table:
    table = Table(title="peaks (SLO met)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("contender", overflow="fold")
    for name in ("peak/s", "steps", "bracket"):
        table.add_column(name, justify="right", no_wrap=True, overflow="fold")
    for label, info in doc["config"]["peaks"].items():
        upper = info["upper_rps"]
        bracket = (
            f"<{upper:.1f}" if upper is not None else "no fail" if info["found"] else "none passed"
        )
        table.add_row(label, f"{info['peak_rps']:.1f}", str(len(doc["peak_steps"][label])), bracket)
    return table


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(code)


def _check_writable(path: Path) -> None:
    """Fail now, before any run, if ``path`` cannot be written (leaves no file behind)."""
    if path.is_dir():
        raise OSError(f"--json {path} is a directory")
    existed = path.exists()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write --json {path}: {exc.strerror or exc}") from None
    if not existed:
        with contextlib.suppress(OSError):
            os.unlink(path)


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        backend: Annotated[str, typer.Option(help=BACKENDS)] = "auto",
        policies: Annotated[
            str, typer.Option(help=f"comma-separated policies: {POLICIES}")
        ] = "edf,fifo,sequential",
        predictors: Annotated[
            str | None,
            typer.Option(
                help=f"comma-separated predictors: {PREDICTORS} (default: the scheduler's, "
                "overlap:quantile=0.9)"
            ),
        ] = None,
        rates: Annotated[
            str, typer.Option(help="fractions of the peak (0.5) or requests/s (300/s)")
        ] = "0.3,0.6,0.9,1.2,1.5",
        peak_of: Annotated[
            str | None,
            typer.Option(help="whose peak the fractions are of: a policy, policy/predictor, all"),
        ] = None,
        models: Annotated[
            str | None, typer.Option(help="models with optional shares: 'a:3,b:1'")
        ] = None,
        deadline: Annotated[
            str | None,
            typer.Option(help=f"one value or per model: '100,a=50' ({DURATION_HELP})"),
        ] = None,
        arrival: Annotated[str, typer.Option(help=ARRIVALS)] = "poisson",
        duration: Annotated[float, typer.Option(help="seconds of sending per run")] = 10.0,
        lanes: Annotated[int, typer.Option(help="concurrent lanes on the device")] = 2,
        max_batch_size: Annotated[int, typer.Option(help="largest batch per model")] = 8,
        seed: Annotated[int, typer.Option(help="seed of the arrivals (every run)")] = 0,
        slo_attainment: Annotated[
            float, typer.Option(help="peak: fraction of requests that must meet deadlines")
        ] = 0.99,
        step_duration: Annotated[
            float | None,
            typer.Option(help="peak search: seconds per step (default 5 real, 10 on sim)"),
        ] = None,
        peak_steps: Annotated[int | None, typer.Option(help="peak search: most steps (8)")] = None,
        repeat: Annotated[
            int, typer.Option(help="rounds per rate, each with its own arrivals (noisy machines)")
        ] = 1,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="write every run's report here")
        ] = None,
    ) -> None:
        """Run several (policy, predictor) contenders on identical arrivals at several rates."""
        from ..loadgen.harness import LoadtestConfig, resolve_backend

        console = terminal_console()
        try:
            if backend not in ("auto", "sim", "cpu", "cuda"):
                raise InvalidConfig(f"--backend must be auto, sim, cpu or cuda, got {backend!r}")
            resolved = resolve_backend(backend)
            if resolved == "cuda":
                import torch

                if not torch.cuda.is_available():
                    raise InvalidConfig("--backend cuda: torch sees no CUDA GPU here")
            base = LoadtestConfig(
                backend=resolved,
                models=models,
                rate=None,
                rate_mode="peak",
                duration=duration,
                arrival=arrival,
                deadline=deadline_spec(deadline),
                lanes=lanes,
                seed=seed,
                max_batch_size=max_batch_size,
                slo_attainment=slo_attainment,
            )
            spec = CompareSpec.build(
                base,
                policies,
                predictors,
                rates,
                peak_of,
                step_duration=step_duration,
                peak_steps=peak_steps,
                repeat=repeat,
            )
            if json_path is not None:
                _check_writable(json_path)
        except (AioschedError, OSError) as exc:
            raise _fail(str(exc)) from None
        try:
            doc = _run(spec, resolved, console)
        except AioschedError as exc:
            raise _fail(str(exc), 1) from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            typer.echo("interrupted: no report", err=True)
            raise typer.Exit(130) from None
        if doc["peak_rps"]:
            console.print(peaks_table(doc))
        if json_path is not None:
            try:
                write_report(doc, json_path)
            except OSError as exc:
                raise _fail(f"cannot write {json_path}: {exc}") from None
            console.print(f"comparison written to {json_path}")


def _run(spec: CompareSpec, backend: str, console: Console) -> dict[str, Any]:
    from .. import simtime
    from .._runtime import run

    simulated = backend == "sim"
    labels = ", ".join(c.label for c in spec.contenders)
    console.print(
        f"aiosched compare: {backend} backend, {spec.base.lanes} lanes, contenders {labels}, "
        f"rates {', '.join(r.text for r in spec.rates)}, {spec.base.duration:g} s each"
        f"{f' x {spec.repeat} rounds' if spec.repeat > 1 else ''}"
        f"{' (virtual time)' if simulated else ''}",
        highlight=False,
        soft_wrap=True,
    )
    peak_label = spec.peak_of[0].label if spec.peak_of else None

    def on_step(c: Contender, s: PeakStep) -> None:
        if not simulated:
            verdict = "ok" if s.passed else "fail"
            console.print(f"  peak of {c.label}: {s.rate_rps:.1f}/s {verdict}", highlight=False)

    def on_peak(c: Contender, result: PeakResult) -> None:
        console.print(
            render_steps(result.to_dict(), title=f"peak search of {c.label}"),
        )

    def on_run(c: Contender, rate: float, report: Mapping[str, Any]) -> None:
        if not simulated:
            console.print(
                f"  {rate:.1f}/s {c.label}: goodput {_fmt(report['goodput_rps'])}/s",
                highlight=False,
            )

    def on_rate(
        rate: float, r: RateSpec, rows: Sequence[tuple[Contender, Mapping[str, Any]]]
    ) -> None:
        console.print(rate_table(rate, r, rows, peak_label))

    coro = run_compare(spec, on_peak=on_peak, on_step=on_step, on_run=on_run, on_rate=on_rate)
    if simulated:
        return simtime.run(coro)
    return run(coro)
