"""Microseconds per ``predict`` and per ``learn``, for every registered predictor.

The executions come from recorded sim traces (six models, two to four
lanes), so the predictors see realistic co-locations. Each execution in
turn is learnt (timed), then a dispatch beside what it was dispatched beside
is predicted twice: *cold*, the first call at that state right after a
learn (with a fresh in-flight tuple, as after every start or finish), and
*warm*, a repeat for another batch size (how the EDF policy bisects a batch
size). Predict figures are split by the number in flight (1, 2, 3).
Budgets: predict <= 10 us, learn <= 50 us.

    python benchmarks/predictors.py [--json] [--repeat 3] [--only overlap,solo]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from collections.abc import Sequence
from dataclasses import replace

from aiosched.experiments.predictors import PredictorsConfig, record
from aiosched.predict import PREDICTORS, Predictor, StaticPredictor
from aiosched.timeline import Execution

PREDICT_BUDGET_US = 10.0
LEARN_BUDGET_US = 50.0


LANES = ((2, 300.0), (3, 300.0), (4, 400.0))


def _traces() -> dict[int, list[Execution]]:
    """Executions from 2-, 3- and 4-lane sim runs, each in finish order."""
    out: dict[int, list[Execution]] = {}
    for lanes, rate in LANES:
        config = PredictorsConfig(lanes=lanes, rate=rate, duration=4.0, drift=False)
        trace, _ = record(config)
        out[lanes] = sorted(trace, key=lambda e: e.end)
    return out


def _calibration() -> float:
    """Microseconds for ``sum(range(1000))``: to scale these figures between machines."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def _cycle(predictor: Predictor, trace: Sequence[Execution]) -> dict[str, float]:
    """Per execution: learn it, then predict a dispatch beside what it was dispatched beside.

    The predict right after a learn is the costly case (whatever the learn
    invalidated is recomputed); a second predict at the same state, for
    another batch size, is what bisecting a batch size costs.
    """
    learn = 0.0
    cold: dict[int, list[float]] = {1: [], 2: [], 3: []}
    warm: dict[int, list[float]] = {1: [], 2: [], 3: []}
    clock = time.perf_counter
    for e in trace:
        t0 = clock()
        predictor.learn(e)
        learn += clock() - t0
        n = len(e.at_dispatch)
        if n not in cold:
            continue
        running = tuple(replace(r) for r in e.at_dispatch)  # a fresh tuple, as after a start
        t0 = clock()
        predictor.predict(e.model, e.batch_size, running, e.start)
        t1 = clock()
        predictor.predict(e.model, e.batch_size + 1, running, e.start)
        t2 = clock()
        cold[n].append(t1 - t0)
        warm[n].append(t2 - t1)
    row = {"learn_us": learn / len(trace) * 1e6}
    for n in (1, 2, 3):
        if cold[n]:
            row[f"predict_{n}_cold_us"] = sum(cold[n]) / len(cold[n]) * 1e6
            row[f"predict_{n}_warm_us"] = sum(warm[n]) / len(warm[n]) * 1e6
    return row


def measure(repeat: int, only: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    traces = _traces()
    results: dict[str, dict[str, float]] = {}
    for name, factory in PREDICTORS.items():
        if only and name not in only:
            continue
        best: dict[str, float] = {}
        for _ in range(repeat):
            row: dict[str, float] = {}
            predict: dict[str, list[float]] = {}
            for lanes, trace in traces.items():
                predictor = factory()
                if isinstance(predictor, StaticPredictor):
                    predictor.fit(trace)
                cycle = _cycle(predictor, trace)
                row[f"learn_{lanes}lanes_us"] = cycle.pop("learn_us")
                for k, v in cycle.items():
                    predict.setdefault(k, []).append(v)
            row.update({k: sum(v) / len(v) for k, v in predict.items()})
            best = {k: min(v, best.get(k, v)) for k, v in row.items()}
        results[name] = best
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--only", default="", help="comma-separated predictor names (default all)")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(PREDICTORS))
    if unknown:
        parser.error(f"unknown predictors: {', '.join(unknown)} (known: {', '.join(PREDICTORS)})")
    calibration = _calibration()
    results = measure(args.repeat, only)
    if args.json:
        out = {
            "budget_us": {"predict": PREDICT_BUDGET_US, "learn": LEARN_BUDGET_US},
            "calibration_us": calibration,
            "predictors": results,
        }
        print(json.dumps(out, indent=2))
        return 0
    columns = [f"learn_{lanes}lanes_us" for lanes, _ in LANES] + [
        f"predict_{n}_{k}_us" for n in (1, 2, 3) for k in ("cold", "warm")
    ]
    print("microseconds per call (best of runs); predict_N: N executions in flight")
    print(f"{'predictor':10s}" + "".join(f"{c.removesuffix('_us'):>15s}" for c in columns))
    for name, row in results.items():
        cells = "".join(f"{row[c]:15.2f}" if c in row else f"{'-':>15s}" for c in columns)
        print(f"{name:10s}{cells}")
    print(f"budgets: predict <= {PREDICT_BUDGET_US:g} us, learn <= {LEARN_BUDGET_US:g} us")
    print(f"calibration: sum(range(1000)) takes {calibration:.1f} us on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
