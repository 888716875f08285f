#!/usr/bin/env bash
# CPU benchmark: `trainer bench` against the same model and loop in PyTorch eager
# (bench/pytorch_reference.py), same config, same thread count. Prints one JSON line each.
#   bench/cpu.sh [CONFIG] [THREADS] [extra bench flags, e.g. --seq-len 256 --micro-batch-size 4]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
config=${1:-configs/trainer/tiny.toml}
threads=${2:-$(nproc)}
shift $(( $# > 2 ? 2 : $# ))
cargo build -q -p trainer --release
bin="$CARGO_TARGET_DIR/release/trainer"
"$bin" bench --config "$config" --device cpu --threads "$threads" --steps 10 --warmup 2 --json "$@"
"$JIELONG_PYTHON" bench/pytorch_reference.py --config "$config" --device cpu --threads "$threads" \
    --steps 10 --warmup 2 "$@"
