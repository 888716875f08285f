#!/usr/bin/env bash
# GPU benchmark of the ~125M preset (bf16 compute, fp32 master weights, seq 1024), sized to
# finish well within 8 minutes on an H200 once the trainer is built: `trainer bench` then the
# PyTorch eager reference, each printing tokens/s, MFU and peak memory as JSON.
#   bench/gpu.sh [MICRO_BATCH] [GRAD_ACCUM]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
micro=${1:-16}
accum=${2:-4}
config=configs/trainer/gpt-125m.toml
cargo build -q -p trainer --release
bin="$CARGO_TARGET_DIR/release/trainer"
"$bin" info --device cuda

# nvidia-smi sees the caching allocator's reservation: an upper bound of the peak.
mem_log=$(mktemp)
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$mem_log" &
smi=$!
trap 'kill $smi 2>/dev/null || true' EXIT
timeout 240 "$bin" bench --config "$config" --device cuda --seq-len 1024 \
    --micro-batch-size "$micro" --grad-accum "$accum" --warmup 3 --steps 15 --json
kill $smi 2>/dev/null || true
echo "{\"impl\": \"trainer\", \"peak_gpu_mib_nvidia_smi\": $(sort -n "$mem_log" | tail -1)}"
timeout 180 "$JIELONG_PYTHON" bench/pytorch_reference.py --config "$config" --device cuda \
    --seq-len 1024 --micro-batch-size "$micro" --grad-accum "$accum" --warmup 3 --steps 15
