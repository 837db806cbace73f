#!/usr/bin/env bash
# One prepared GPU check for a short lease: engine figures for K = 1, 8, 32 and the automatic K,
# a 51x51 seed-VGG surface's wall time, and the largest difference to a CPU surface.
# Uses the machine's own torch; lossland runs from src/ without installing.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 290 python3 benchmarks/gpu_check.py "$@"
