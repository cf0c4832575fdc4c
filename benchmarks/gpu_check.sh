#!/usr/bin/env bash
# One bounded check of advframe's CUDA paths on a GPU machine (issue 17); also runs on a CPU.
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu-smoke   # here: tiny sizes, CUDA tests skip, timings on the CPU
#
# Phases, each under `timeout`, all inside a total budget (GPU_CHECK_BUDGET, default 450 s,
# so that the whole script ends under 8 minutes; 900 s for --cpu-smoke):
#   1. install: keep an importable CUDA torch if there is one (the GPU image's python3 has
#      one, and no registry is reachable there); else `pip install torch==$TORCH_VERSION`
#      from pip's default index with the machine's pip config set aside (on Linux x86_64
#      that index serves CUDA builds, unlike a CPU-only mirror); then the project without
#      letting pip touch torch, and torchattacks 3.5.1 (--no-deps) from $WHEELS if there,
#      else from the registry. Prints torch.__version__, torch.version.cuda and the GPU.
#   2. tests: tests/test_cuda.py (marker cuda), then the rest of the suite with what time is
#      left (pytest-xdist when present).
#   3. timings: benchmarks/bench_gpu.py (pgd-40, default eval, worst-case suite if present,
#      one pgd_at epoch), JSON and a table.
#      Then benchmarks/bench_gpu_wrn.py: WRN-28-10 PGD-10 with --batch-size auto, with and
#      without bf16 autocast, images per second against the bare loop.
# Results go to $OUT (default ./gpu_out), at most 8 files: summary.txt, install.log,
# test_cuda.log, test_suite.log, bench.log, bench_gpu.json, bench_gpu_wrn.json, nvidia-smi.txt.
set -u
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
[ "${GPU_CHECK_SMOKE:-0}" = "1" ] && SMOKE=1
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
WHEELS="${WHEELS:-tmp/wheels}"
BUDGET="${GPU_CHECK_BUDGET:-450}"
[ "$SMOKE" = 1 ] && BUDGET="${GPU_CHECK_BUDGET:-900}"  # 2 shared CPU cores are slow
START=$(date +%s)
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
phase() {  # phase NAME LOG SECONDS CMD...: run under timeout, log, record status and time
  local name=$1 log=$2 secs=$3
  shift 3
  local avail
  avail=$(left)
  if [ "$avail" -lt 20 ]; then say "phase $name: SKIPPED (budget spent)"; return 99; fi
  [ "$secs" -gt "$avail" ] && secs=$avail
  local t0=$(date +%s)
  timeout -k 10 "$secs" "$@" >>"$log" 2>&1
  local rc=$?
  local msg="rc=$rc"
  [ $rc -eq 124 ] && msg="TIMED OUT after ${secs}s"
  say "phase $name: $msg in $(( $(date +%s) - t0 ))s (limit ${secs}s, log $(basename "$log"))"
  return $rc
}

say "gpu_check start $(date -u +%FT%TZ) smoke=$SMOKE host=$(uname -m) budget=${BUDGET}s"
command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1

# ---------------------------------------------------------------- 1. install
install() {
  set -x
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "keeping the installed CUDA torch"
  elif [ "$SMOKE" = 1 ]; then
    echo "cpu smoke: keeping the installed torch"
  else
    # pip's default index, not the machine's mirrors: its Linux x86_64 torch wheels are CUDA builds
    PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --no-cache-dir --force-reinstall "torch==$TORCH_VERSION" || return 1
  fi
  "$PY" - <<'EOF' >/tmp/gpu_check_torch_pin.txt
import torch
print(f"torch=={torch.__version__}")
EOF
  if "$PY" -c "import pluggy, typer, rich, safetensors, numpy, pytest, hypothesis"; then
    # everything the project and its test extra import is there (the GPU image): no registry needed
    "$PY" -m pip install --no-deps --no-build-isolation -e . || "$PY" -m pip install --no-deps --no-build-isolation .
  else
    "$PY" -m pip install -c /tmp/gpu_check_torch_pin.txt -e ".[test]"
  fi || return 1
  if ls "$WHEELS"/torchattacks-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install --no-deps --no-index "$WHEELS"/torchattacks-*.whl
  else
    timeout 60 "$PY" -m pip install --no-deps "torchattacks==3.5.1" || echo "torchattacks not installed: its rows are skipped"
  fi
  set +x
  "$PY" - <<'EOF'
import importlib.metadata as md, torch
print("info: torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("info: device", torch.cuda.get_device_name(0), "count", torch.cuda.device_count(),
          "nccl", torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else "?")
for d in ("advframe", "torchattacks", "pytest", "pytest-xdist"):
    try:
        print("info:", d, md.version(d))
    except md.PackageNotFoundError:
        print("info:", d, "not installed")
EOF
}
export PY SMOKE TORCH_VERSION WHEELS
export -f install
phase install "$OUT/install.log" 90 bash -c install \
  || { say "install failed: see install.log"; }
grep "^info: " "$OUT/install.log" | tee -a "$SUMMARY"

# ---------------------------------------------------------------- 2. tests
phase test_cuda "$OUT/test_cuda.log" 180 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
tail -n 3 "$OUT/test_cuda.log" | sed 's/^/  test_cuda: /' | tee -a "$SUMMARY"

# ---------------------------------------------------------------- 3. timings
if [ "$SMOKE" = 1 ]; then
  phase bench "$OUT/bench.log" 400 "$PY" benchmarks/bench_gpu.py --smoke --output "$OUT/bench_gpu.json"
else
  phase bench "$OUT/bench.log" 200 "$PY" benchmarks/bench_gpu.py --large-seconds 2 --output "$OUT/bench_gpu.json"
fi
grep -E "^(pgd_at epoch|default eval|worst-case)" "$OUT/bench.log" | sed 's/^/  bench: /' | tee -a "$SUMMARY"
# WRN-28-10 PGD-10 with --batch-size auto, float32 and bf16 autocast, against the bare loop (issue 26)
if [ "$SMOKE" = 1 ]; then
  phase bench_wrn "$OUT/bench.log" 200 "$PY" benchmarks/bench_gpu_wrn.py --smoke --output "$OUT/bench_gpu_wrn.json"
else
  phase bench_wrn "$OUT/bench.log" 150 "$PY" benchmarks/bench_gpu_wrn.py --examples 4096 --output "$OUT/bench_gpu_wrn.json"
fi
grep -E "PGD-10 (float32|bf16)" "$OUT/bench.log" | sed 's/^/  bench: /' | tee -a "$SUMMARY"

# ---------------------------------------------------------------- 2b. the rest of the suite, in the time left
SUITE_ARGS=${GPU_CHECK_SUITE_ARGS:-tests}
if [ "$SMOKE" = 1 ] && [ -z "${GPU_CHECK_SUITE_ARGS:-}" ]; then
  SUITE_ARGS="tests/test_threat.py tests/test_params.py"  # the CPU smoke shows the phase works; CI runs the suite
fi
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && XDIST="-n 8"
# shellcheck disable=SC2086
phase test_suite "$OUT/test_suite.log" 100000 "$PY" -m pytest -q -rs -p no:cacheprovider -m "not cuda" $XDIST $SUITE_ARGS
tail -n 3 "$OUT/test_suite.log" 2>/dev/null | sed 's/^/  test_suite: /' | tee -a "$SUMMARY"

say "gpu_check end after $(( $(date +%s) - START ))s; files: $(ls "$OUT" | tr '\n' ' ')"
say "multi-rank NCCL remains unrun: one GPU cannot host two NCCL ranks"
