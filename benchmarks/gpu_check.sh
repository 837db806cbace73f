#!/usr/bin/env bash
# One prepared GPU check for a short lease: engine figures for K = 1, 8, 32 and the automatic K,
# a 51x51 seed-VGG surface's wall time, the largest difference to a CPU surface, then the table
# of benchmarks/surface_speed.py on the GPU (bf16, loss-landscapes, sem_target, refine).
# Uses the machine's own torch; lossland runs from src/ without installing. The machine has no
# network: carry the data and the peer, e.g. benchmarks/.cache/fashion-mnist (the four IDX
# .gz files), benchmarks/.cache/small-all.safetensors and benchmarks/.peers (the vgg checkpoint
# is trained there, on the GPU). `benchmarks/gpu_check.sh big`: the big-model rows (issue 22).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${LOSSLAND_DATA:-}" && -d benchmarks/.cache/fashion-mnist ]]; then
    export LOSSLAND_DATA="$PWD/benchmarks/.cache/fashion-mnist"
fi
if [[ "${1:-}" == "big" ]]; then
    # Issue 22 (not run yet: no GPU lent). A Qwen2.5-1.5B-shaped decoder (random init, bf16),
    # a 51x51 surface on 4 sequences x 512 tokens (TensorScope's setting; target <= 5 min and
    # <= 12 GB), then the last-block and LoRA modes and a Qwen2.5-7B-shaped config on a 3x3 grid.
    QWEN15=(--hidden 1536 --intermediate 8960 --layers 28 --heads 12 --kv-heads 2)
    QWEN7=(--hidden 3584 --intermediate 18944 --layers 28 --heads 28 --kv-heads 4 --vocab 152064)
    timeout 420 python3 benchmarks/big_models.py llm --device cuda "${QWEN15[@]}" \
        --sequences 4 --tokens 512 --grid 51 --modes all
    timeout 300 python3 benchmarks/big_models.py llm --device cuda "${QWEN15[@]}" \
        --sequences 4 --tokens 512 --grid 3 --modes "last block,lora"
    timeout 400 python3 benchmarks/big_models.py llm --device cuda "${QWEN7[@]}" \
        --sequences 4 --tokens 512 --grid 3 --modes "last block,lora,all"
    # --shard over NCCL needs one GPU per process (not run yet): the GPT-2 shape on 2 GPUs
    GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
    if (( GPUS >= 2 )); then
        exec timeout 300 python3 benchmarks/big_models.py shard --procs 2 --device cuda
    fi
    exit 0
fi
exec timeout 420 python3 benchmarks/gpu_check.py "$@"
