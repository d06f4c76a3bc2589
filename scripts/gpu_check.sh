#!/usr/bin/env bash
# Check aiosched on a CUDA machine in about eight minutes, leaving logs and JSON in OUTDIR.
#
#   scripts/gpu_check.sh OUTDIR          on the GPU machine (no network needed)
#   scripts/gpu_check.sh --fetch-wheels  beforehand, on a machine with network
#
# The GPU machine has torch, numpy, rich, typer, uvloop, nvidia-ml-py, pytest and
# hypothesis but no network. The other test and run-time dependencies travel as
# wheels in .whl/ at the repository root (ignored by git; name it in the device
# tool's `carry`): --fetch-wheels downloads them for CPython 3.12 on x86-64. The
# project itself runs from the checkout through PYTHONPATH, so nothing is built.
#
# Steps, each under `timeout`, in order, carrying on past failures:
#   env           nvidia-smi, torch and CUDA versions (fails if torch sees no GPU)
#   pytest-cuda   the tests marked `cuda`
#   profile       `aiosched profile` on torchvision models if the command exists, else
#                 a built-in loop: latency and throughput against batch size (Fig. 2)
#   loadtest      a 60-second `aiosched loadtest --backend cuda`, if the command exists
#   pytest-quick  the rest of the suite (not cuda, not slow) with whatever time is left
# OUTDIR gets env.log, pytest-cuda.log, profile.log, profile.json, loadtest.log,
# loadtest.json, pytest-quick.log and summary.txt (eight files: the device tool
# brings back at most eight). Exits non-zero if any step failed.
#
# Environment: PYTHON (default python3), AIOSCHED_WHEELS (default ROOT/.whl),
# GPU_CHECK_BUDGET (seconds for all steps, default 480), GPU_CHECK_MODELS and
# GPU_CHECK_BATCH_SIZES (comma-separated, for the profile), PROFILE_DEVICE (default
# cuda; `cpu` tries the built-in profile loop on a machine without a GPU).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${AIOSCHED_WHEELS:-$ROOT/.whl}
# The dev versions these tests run with here; hdrhistogram has a compiled part, hence cp312.
WHEEL_PINS=(pytest-asyncio==1.5.0 hdrhistogram==0.10.8)
MODELS=${GPU_CHECK_MODELS:-resnet50,mobilenet_v3_small,vit_b_16}
BATCH_SIZES=${GPU_CHECK_BATCH_SIZES:-1,2,4,8,16,32}

usage() {
    echo "usage: $0 OUTDIR | --fetch-wheels" >&2
    exit 2
}

fetch_wheels() {
    mkdir -p "$WHEELS" || exit 1
    if [[ $WHEELS == "$ROOT/.whl" ]]; then
        # Ignored locally, so the wheels travel only when carried and are never committed.
        local exclude
        exclude=$(cd "$ROOT" && git rev-parse --path-format=absolute --git-path info/exclude) || exit 1
        mkdir -p "$(dirname "$exclude")"
        grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
    fi
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$WHEELS" "${WHEEL_PINS[@]}"
}

if [[ ${1:-} == --fetch-wheels ]]; then
    fetch_wheels
    exit
fi
[[ $# -eq 1 && -n $1 && $1 != -* ]] || usage

OUTDIR=$1
mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$ROOT" || exit 1
BUDGET=${GPU_CHECK_BUDGET:-480}
START=$SECONDS
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
FAILED=()
export PYTHONUNBUFFERED=1 # a step killed at its limit still leaves its output in the log

note() {
    printf '%s\n' "$*" | tee -a "$SUMMARY"
}

# step NAME LIMIT LOG COMMAND...: run COMMAND for at most LIMIT seconds (less if the
# budget is nearly spent), appending its output to LOG, and record how it went.
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 15)); then
        note "skip  $name: the ${BUDGET}s budget is spent"
        return 0
    fi
    ((limit > left)) && limit=$left
    local shown="$*"
    shown=${shown%%$'\n'*} # an inline script is logged by its first line
    printf '$ %s\n' "$shown" >>"$log"
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
    local took=$((SECONDS - t0))
    if ((rc == 0)); then
        note "ok    $name (${took}s)"
    else
        local why="exit $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${limit}s"
        note "FAIL  $name ($why, ${took}s): see $(basename "$log")"
        FAILED+=("$name")
    fi
    return "$rc"
}

# -- set-up: wheels into a private site folder, the checkout on the path ----------

note "aiosched gpu check, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s"

SITE=${TMPDIR:-/tmp}/aiosched-gpu-site
ENV_LOG=$OUTDIR/env.log
: >"$ENV_LOG"
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}" >>"$ENV_LOG" 2>&1 ||
        note "warn  installing wheels from $WHEELS failed (see env.log)"
else
    note "warn  no wheels in $WHEELS: tests needing pytest-asyncio or hdrhistogram fail"
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# A pytest-asyncio newer than the machine's pytest stops every pytest run; better without it.
if ! "$PY" -m pytest --version >>"$ENV_LOG" 2>&1; then
    rm -rf "$SITE"/pytest_asyncio "$SITE"/pytest_asyncio-*.dist-info
    note "warn  pytest would not start with the carried pytest-asyncio; removed it"
fi
AIOSCHED=("$PY" -c 'import sys; from aiosched.cli import main; sys.argv[0] = "aiosched"; main()')
has_command() {
    "${AIOSCHED[@]}" "$1" --help >/dev/null 2>&1
}

# -- the steps --------------------------------------------------------------------

read -r -d '' TORCH_INFO <<'PYEOF'
import platform
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
print(f"cuDNN {torch.backends.cudnn.version()}")
assert torch.cuda.is_available(), "torch sees no CUDA GPU"
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"{p.multi_processor_count} SMs, uuid {p.uuid}")
try:
    import pynvml
    pynvml.nvmlInit()
    print(f"NVML driver {pynvml.nvmlSystemGetDriverVersion()}")
except Exception as exc:
    print(f"NVML unavailable: {exc!r}")
PYEOF

read -r -d '' PROFILE_LOOP <<'PYEOF'
"""Per model and batch size: solo latency of one synchronous batch, and throughput (Fig. 2)."""
import json
import statistics
import sys
import time

import torch

from aiosched.models import torchvision_model

out, names, sizes, device = sys.argv[1], sys.argv[2], sys.argv[3], torch.device(sys.argv[4])
cuda = device.type == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
rows = []
for name in names.split(","):
    model, shape = torchvision_model(name)
    model = model.to(device)
    for b in (int(s) for s in sizes.split(",")):
        row = {"model": name, "batch_size": b}
        try:
            x = torch.randn(b, *shape, device=device)
            times = []
            with torch.inference_mode():
                for _ in range(3):
                    model(x)
                sync()
                while len(times) < 200 and (len(times) < 10 or sum(times) < 0.3):
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    times.append(time.perf_counter() - t0)
            p50 = statistics.median(times)
            row.update(runs=len(times), p50_ms=p50 * 1e3, mean_ms=statistics.fmean(times) * 1e3,
                       max_ms=max(times) * 1e3, throughput=b / p50)
            print(f"{name:20s} b={b:3d} {p50 * 1e3:9.2f} ms {b / p50:10.1f}/s", flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {exc}".splitlines()[0]
            print(f"{name:20s} b={b:3d} out of memory", flush=True)
        rows.append(row)
    del model
    if cuda:
        torch.cuda.empty_cache()
info = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__}
with open(out, "w") as f:
    json.dump({**info, "source": "gpu_check.sh built-in loop", "rows": rows}, f, indent=2)
PYEOF

step nvidia-smi 30 "$ENV_LOG" nvidia-smi
step torch 60 "$ENV_LOG" "$PY" -c "$TORCH_INFO"
step aiosched-version 60 "$ENV_LOG" "${AIOSCHED[@]}" version

step pytest-cuda 180 "$OUTDIR/pytest-cuda.log" \
    "$PY" -m pytest -m cuda -v -rs -p no:cacheprovider tests

builtin_profile() {
    step "$1" 180 "$OUTDIR/profile.log" "$PY" -c "$PROFILE_LOOP" "$OUTDIR/profile.json" \
        "$MODELS" "$BATCH_SIZES" "${PROFILE_DEVICE:-cuda}"
}
if has_command profile; then
    # The figures matter more than which code made them: a failed command still gets them.
    step profile 180 "$OUTDIR/profile.log" "${AIOSCHED[@]}" profile --backend cuda \
        --models "$MODELS" --batch-sizes "$BATCH_SIZES" --json "$OUTDIR/profile.json" ||
        builtin_profile profile-builtin
else
    echo "no 'aiosched profile' command: the built-in loop runs instead" >>"$OUTDIR/profile.log"
    builtin_profile profile
fi

if has_command loadtest; then
    step loadtest 150 "$OUTDIR/loadtest.log" "${AIOSCHED[@]}" loadtest --backend cuda \
        --duration 60 --no-live --json "$OUTDIR/loadtest.json"
else
    note "skip  loadtest: no 'aiosched loadtest' command yet"
fi

step pytest-quick 600 "$OUTDIR/pytest-quick.log" \
    "$PY" -m pytest -q -rs -m "not cuda and not slow" -p no:cacheprovider tests

note "done in $((SECONDS - START))s; failed: ${FAILED[*]:-none}"
((${#FAILED[@]} == 0))
