#!/usr/bin/env bash
# One prepared GPU check for a short lease: engine figures for K = 1, 8, 32 and the automatic K,
# a 51x51 seed-VGG surface's wall time, the largest difference to a CPU surface, then the table
# of benchmarks/surface_speed.py on the GPU (bf16, loss-landscapes, sem_target, refine).
# Uses the machine's own torch; lossland runs from src/ without installing. The machine has no
# network: carry the data and the peer, e.g. benchmarks/.cache/fashion-mnist (the four IDX
# .gz files), benchmarks/.cache/small-all.safetensors and benchmarks/.peers (the vgg checkpoint
# is trained there, on the GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${LOSSLAND_DATA:-}" && -d benchmarks/.cache/fashion-mnist ]]; then
    export LOSSLAND_DATA="$PWD/benchmarks/.cache/fashion-mnist"
fi
exec timeout 420 python3 benchmarks/gpu_check.py "$@"
