#!/usr/bin/env bash
# The benchmark suite on a GPU (or TPU) machine; JSON under benchmarks/results/ with the
# date and the device name. Random weights of the real shapes: no weights file needed.
#   bash benchmarks/gpu.sh            # ~10 minutes on one H200 (most of it compilation)
# What it answers (issue 7's GPU targets):
#   * bench_step: s/step, GFLOP/s, memory for VGG19 at 512/1024/2048 px (2048 "fits and
#     runs"), Adam and L-BFGS, f32 and bf16 (bf16 >= 1.8x f32?); 500 L-BFGS iterations
#     at 512 px = 500 x the lbfgs row's s/step (target <= 3 s; both the fused and the
#     single-step path are timed);
#   * bench_grid: a 16-point alpha/beta grid at 256 px, vmapped vs 16 runs (>= 4x?).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! "$PY" -c 'import jax; assert jax.devices()[0].platform in ("gpu", "cuda", "rocm", "tpu")' 2>/dev/null; then
  "$PY" -m pip install --quiet -e . "jax[cuda12]"
fi
DEV=$("$PY" -c 'import jax; d = jax.devices()[0]; print(d.device_kind.replace(" ", "_"))')
DATE=$(date +%Y-%m-%d)
OUT=benchmarks/results
mkdir -p "$OUT"
"$PY" benchmarks/bench_step.py --arch vgg19 --sizes 512 1024 2048 --optimizers adam lbfgs \
  --precisions f32 bf16 --repeats 20 --chunk 10 --json "$OUT/bench_step-$DEV-$DATE.json"
"$PY" benchmarks/bench_grid.py --points 16 --size 256 --iters 100 --json "$OUT/bench_grid-$DEV-$DATE.json"
