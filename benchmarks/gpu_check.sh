#!/usr/bin/env bash
# The CUDA path's proof in one short run on one GPU (< 8 minutes on an H100 / H200).
#
# Prepare here (CPU, once):   bash benchmarks/gpu_check_prepare.sh      -> .gpucheck/
# Run on the GPU machine, from the repository root, with .gpucheck/ carried along:
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Steps, each with its own time limit so that one failure cannot eat the others' time, each
# logged under $OUT (default ./gpu_check_out):
#   1. environment (nvidia-smi, torch, the GPU);
#   2. install: ctxseg from this tree (PYTHONPATH, no build), the wheels in .gpucheck/wheels
#      (the test dependencies the machine lacks) into /tmp/site; nothing is downloaded;
#   3. the tests that can run on CUDA, with CTXSEG_TEST_DEVICE=cuda       -> tests.log
#   4. training slices/s per method, fp32 against bf16 + channels-last    -> bench.txt
#   5. a timed grid: `ctxseg reproduce --parallel` on the carried ACDC store (every Table 1
#      method, one seed, a few epochs)                                     -> results.md, grid.json
#   6. the full ACDC grid's time (9 methods, 150 epochs, batch 16) estimated from step 5's
#      measured epochs                                                     -> estimate.txt
# Settings (environment): CTXSEG_GPU_DEVICE (cuda; cpu for a smoke test of this script),
# GRID_EPOCHS (3), GRID_PARALLEL (9), GRID_DATA (.gpucheck/acdc.tar.xz), GRID_METHODS (every
# Table 1 row; e.g. "unet_ce gan" for a CPU smoke test), SKIP_TESTS=1, SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
DEVICE=${CTXSEG_GPU_DEVICE:-cuda}
EPOCHS=${GRID_EPOCHS:-3}
PARALLEL=${GRID_PARALLEL:-9}
DATA=${GRID_DATA:-.gpucheck/acdc.tar.xz}
PY=${PYTHON:-python3}
read -r -a METHODS <<<"${GRID_METHODS:-}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
start=$(date +%s)
log() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$LOG"; }
status=0

log "1. environment"
{ nvidia-smi || true; $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"; } >>"$LOG" 2>&1

log "2. install (no network: this tree and the carried wheels)"
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".gpucheck/wheels/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpucheck/wheels/*.whl >>"$LOG" 2>&1 || { log "wheel install failed"; status=1; }
fi
$PY -c "import ctxseg, torch; print('ctxseg', ctxseg.__version__)" >>"$LOG" 2>&1 \
  || { log "ctxseg does not import: stop"; exit 1; }

if [[ -z "${SKIP_TESTS:-}" ]]; then
  log "3. tests on $DEVICE"
  # The modules whose tests take CTXSEG_TEST_DEVICE; the data-preparation tests are CPU-only.
  CTXSEG_TEST_DEVICE=$DEVICE timeout 150 $PY -m pytest -q -x -p no:cacheprovider \
    tests/test_device.py tests/test_trainer.py tests/test_adversarial.py tests/test_precision.py \
    tests/test_losses.py tests/test_roi.py tests/test_models.py tests/test_discriminator.py \
    >"$OUT/tests.log" 2>&1
  rc=$?; tail -3 "$OUT/tests.log" | tee -a "$LOG"; [[ $rc == 0 ]] || { log "tests: exit $rc"; status=1; }
fi

if [[ -z "${SKIP_BENCH:-}" ]]; then
  log "4. training slices/s per method, fp32 vs the fast path"
  timeout 120 $PY benchmarks/bench_precision.py --device "$DEVICE" --rounds 5 >"$OUT/bench.txt" 2>&1
  rc=$?; [[ $rc == 0 ]] || { log "bench: exit $rc"; status=1; }
fi

log "5. grid: every Table 1 method, 1 seed, $EPOCHS epochs, --parallel $PARALLEL"
store=/tmp/ctxseg-gpucheck/acdc
rm -rf /tmp/ctxseg-gpucheck && mkdir -p /tmp/ctxseg-gpucheck
if [[ -f "$DATA" ]]; then
  tar -xJf "$DATA" -C /tmp/ctxseg-gpucheck
else
  log "no $DATA: a cardiac phantom stands in"
  $PY -m ctxseg prepare phantom-cardiac --out "$store" >>"$LOG" 2>&1 || { log "no data: stop"; exit 1; }
fi
grid_start=$(date +%s)
timeout 300 $PY -m ctxseg reproduce --data "$store" --dataset acdc --seeds 0 --epochs "$EPOCHS" \
  ${METHODS[@]:+--methods "${METHODS[@]}"} --parallel "$PARALLEL" --device "$DEVICE" \
  --out /tmp/ctxseg-gpucheck/grid >"$OUT/grid.txt" 2>&1
rc=$?; grid_s=$(($(date +%s) - grid_start))
log "grid: exit $rc after $grid_s s"; [[ $rc == 0 ]] || status=1
cp /tmp/ctxseg-gpucheck/grid/results.md /tmp/ctxseg-gpucheck/grid/grid.json "$OUT/" 2>/dev/null

log "6. estimate of the full ACDC grid (9 methods x 150 epochs)"
$PY - "$grid_s" "$EPOCHS" "$PARALLEL" >"$OUT/estimate.txt" 2>&1 <<'PYEOF'
import csv, json, pathlib, sys
grid_s, epochs, parallel = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = sorted(pathlib.Path("/tmp/ctxseg-gpucheck/grid/runs").glob("*/seed0"))
per_epoch = {}
for run in runs:
    with open(run / "metrics.csv", newline="") as f:
        times = [float(r["time"]) for r in csv.DictReader(f)]
    if times:  # the first epoch pays the start-up (cuDNN autotuning): the rest is the rate
        per_epoch[run.parent.name] = sum(times[1:]) / max(len(times) - 1, 1) if len(times) > 1 else times[0]
print(f"measured in this grid ({len(runs)} runs, {parallel} at once, {epochs} epochs): "
      f"{grid_s:.0f} s wall")
for name, t in per_epoch.items():
    print(f"  {name:<28} {t:6.2f} s / epoch (running beside the others)")
if per_epoch:
    slowest = max(per_epoch.values())
    waves = -(-9 // parallel)  # the full grid's 9 methods, whatever subset ran here
    full = waves * 150 * slowest
    print(f"full grid, 9 methods x 150 epochs, {parallel} at once: about {full / 60:.1f} min "
          f"({waves} wave(s) x 150 epochs x the slowest run's {slowest:.2f} s/epoch; the "
          "goal is 10 min)")
PYEOF
cat "$OUT/estimate.txt" | tee -a "$LOG"
log "done, status $status"
exit $status
