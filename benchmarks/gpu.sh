#!/usr/bin/env bash
# The prepared device run (benchmarks/gpu.py): device, CUDA tests, correctness against float64, timings, Muon step.
#   benchmarks/gpu.sh              on a GPU: writes benchmarks/results/bench_<device>.csv, under 8 minutes
#   benchmarks/gpu.sh --dry-run    on a CPU: the same code on tiny shapes, into a temporary directory
# Needs only the checkout (it goes on PYTHONPATH) and the image's torch/triton: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu.py "$@"
