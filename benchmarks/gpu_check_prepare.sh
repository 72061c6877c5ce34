#!/usr/bin/env bash
# Builds .gpucheck/ (ignored by git) for benchmarks/gpu_check.sh, here on the CPU machine:
#   .gpucheck/acdc.tar.xz  the real ACDC set prepared by ctxseg (about 32 MB compressed)
#   .gpucheck/wheels/      Python 3.12 wheels of the test dependencies the GPU image lacks
# The whole of it must stay under the device tool's 64 MiB with the working tree.
#   bash benchmarks/gpu_check_prepare.sh [ACDC_RAW (default ../shared/data/acdc-ssl4mis)]
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=${1:-${CTXSEG_SHARED_DATA:-../shared/data}/acdc-ssl4mis}
BIN=${BIN:-.venv/bin}
mkdir -p .gpucheck/wheels
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN/ctxseg" prepare acdc --raw "$RAW" --out "$tmp/acdc"
tar -C "$tmp" -cf - acdc | xz -T2 -6 >.gpucheck/acdc.tar.xz
# Pure-Python test dependencies missing from the GPU image (monai for the loss comparisons).
"$BIN/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp -d .gpucheck/wheels "monai==$("$BIN/python" -c 'import monai; print(monai.__version__)')"
du -sh .gpucheck .gpucheck/*
