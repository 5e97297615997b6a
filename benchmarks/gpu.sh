#!/usr/bin/env bash
# Run the benchmark suite on a GPU (or TPU) machine and write JSON under benchmarks/results/.
# Random weights of the real shapes: no weights file needed. Usage: bash benchmarks/gpu.sh
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
"$PY" benchmarks/bench_step.py --arch vgg16 vgg19 --sizes 256 512 1024 2048 --repeats 10 --chunk 10 \
  --json "$OUT/bench_step-$DEV-$DATE.json"
"$PY" benchmarks/bench_grid.py --points 16 --size 256 --iters 100 --json "$OUT/bench_grid-$DEV-$DATE.json"
