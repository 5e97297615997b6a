#!/usr/bin/env bash
# The benchmarks on a fresh GPU (or TPU) machine, as one short command:
#   bash benchmarks/gpu.sh              # ~8-10 minutes on one H200 (most of it set-up and compilation)
# Set-up: a venv in .venv-gpu (never the system Python) with nst_jax and jax[cuda12];
# then it checks that JAX really sees a GPU/TPU and stops at once if not (no silent CPU
# run). Every section has its own time limit and every row is written to the JSON as it
# finishes, so a failing or slow row costs only itself. Output: compact tables on stdout
# and JSON under benchmarks/results/ named with the device and the date.
# Random weights of the real shapes: no weights file needed.
# On a short lease: SECTIONS=quick bash benchmarks/gpu.sh (about 6 minutes, see below).
# What it answers:
#   * bench_run: VGG19 at 512 px, 500 L-BFGS iterations end to end, with and without
#     compilation (goal: <= 3 s compiled on an H200), with and without GPU command
#     buffers (--xla_gpu_enable_command_buffer=+CONVOLUTION,+WHILE; the row is skipped,
#     saying so, when this jaxlib does not know the flag: XLA aborts on unknown flags);
#   * bench_step: the --precision modes f32, highest and bf16 (VGG19 512 px, Adam);
#   * bench_step: s/step, GFLOP/s, compile time and memory for VGG19 at 512 and 2048 px,
#     Adam f32 vs bf16 (bf16 speed-up), L-BFGS f32 at 512 px (500 iterations = 500 x s/step);
#   * bench_grid: a 16-point alpha/beta grid at 256 px, vmapped vs 16 separate runs.
# Large prints and many devices, as a second short command (each under 10 minutes):
#   SECTIONS=scale bash benchmarks/gpu.sh
#   * bench_tile: VGG19 at 8192 px, whole (if it fits) and in exact 2048 px tiles;
#   * bench_shard: VGG19 at 4096 and 8192 px split by rows over every GPU present
#     (per-device XLA memory and step time against one GPU).
# Many photos, as a third (under 5 minutes):
#   SECTIONS=batch bash benchmarks/gpu.sh
#   * bench_batch: 16 photos at 256 px as one batch against 16 separate runs (photos/s).
#   SECTIONS=models bash benchmarks/gpu.sh
#   * bench_models: a trained network's apply time at 512/1024/2048 px against stylize, and
#     training images/s at crops 128/256, widths 0.5/1 (random weights: timings only).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${VENV:-.venv-gpu}
EXTRA=${NST_JAX_EXTRA:-cuda}   # 'tpu' on a TPU VM
# A machine whose $PY already runs JAX on a GPU/TPU with nst_jax's dependencies (an
# offline accelerator image, say) is used as it is: nst_jax from this checkout, nothing
# installed or fetched. Otherwise (or with USE_VENV=1) a venv as above.
if [ -z "${USE_VENV:-}" ] && timeout 120 "$PY" -c '
import flax, h5py, jax, optax, PIL
assert jax.devices()[0].platform != "cpu"' >/dev/null 2>&1; then
  VPY="$PY"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "using $PY as it is ($("$PY" -c 'import jax; print("jax", jax.__version__)'))"
else
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || { echo "error: cannot create the venv $VENV" >&2; exit 1; }
  fi
  VPY="$VENV/bin/python"
  if ! "$VPY" -c 'import nst_jax, jax; assert jax.devices()[0].platform != "cpu"' 2>/dev/null; then
    timeout 300 "$VPY" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRA]" \
      || { echo "error: installing nst_jax[$EXTRA] failed" >&2; exit 1; }
  fi
fi
if ! PLATFORM=$(timeout 120 "$VPY" -c '
import jax
d = jax.devices()[0]
assert d.platform in ("gpu", "tpu"), f"JAX sees only {d.platform}: {jax.devices()}"
print(d.platform, d.device_kind)'); then
  echo "error: JAX sees no GPU/TPU in $VENV; not running the benchmarks on CPU" >&2
  exit 1
fi
echo "device: $PLATFORM"
DEV=$(echo "$PLATFORM" | cut -d' ' -f2- | tr ' ' '_')
DATE=$(date +%Y-%m-%d)
OUT=benchmarks/results
mkdir -p "$OUT"
status=0
SECTIONS=${SECTIONS:-run,step,grid}
if [[ ",$SECTIONS," == *",quick,"* ]]; then
  # The first figures in one short lease (about 6 minutes with compilation): a whole
  # 500-iteration L-BFGS run, Adam s/step f32 vs bf16 at 512 and 2048 px, the PyTorch
  # peer on the same GPU (if torch sees it), and the vmapped grid.
  timeout 120 "$VPY" benchmarks/bench_run.py --arch vgg19 --size 512 --iters 500 --optimizer lbfgs \
    --json "$OUT/bench_run-$DEV-$DATE.json" || status=1
  timeout 150 "$VPY" benchmarks/bench_step.py --arch vgg19 --sizes 512 2048 --optimizers adam \
    --precisions f32 bf16 --repeats 5 --chunk 10 --row-timeout 70 \
    --json "$OUT/bench_step-$DEV-$DATE.json" || status=1
  if "$VPY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 100 "$VPY" benchmarks/bench_torch.py --torch-device cuda --arch vgg16 --sizes 512 1024 \
      --rounds 3 --steps 10 --json "$OUT/bench_torch-$DEV-$DATE.json" || status=1
  fi
  timeout 90 "$VPY" benchmarks/bench_grid.py --points 16 --size 256 --iters 50 \
    --json "$OUT/bench_grid-$DEV-$DATE.json" || status=1
  ls -l "$OUT"/*"$DEV-$DATE"*.json 2>/dev/null
  exit $status
fi
if [[ ",$SECTIONS," == *",run,"* ]]; then
  timeout 170 "$VPY" benchmarks/bench_run.py --arch vgg19 --size 512 --iters 500 --optimizer lbfgs \
    --json "$OUT/bench_run-$DEV-$DATE.json" || status=1
  CB="--xla_gpu_enable_command_buffer=+CONVOLUTION,+WHILE"
  if XLA_FLAGS="$CB" timeout 90 "$VPY" -c 'import jax.numpy as j; j.zeros(1).block_until_ready()' \
      >/dev/null 2>&1; then
    timeout 170 "$VPY" benchmarks/bench_run.py --arch vgg19 --size 512 --iters 500 --optimizer lbfgs \
      --xla-flags "$CB" --json "$OUT/bench_run-cmdbuf-$DEV-$DATE.json" || status=1
  else
    echo "note: this jaxlib rejects $CB; the command-buffer row is skipped"
  fi
  timeout 200 "$VPY" benchmarks/bench_step.py --arch vgg19 --sizes 512 --optimizers adam \
    --precisions f32 highest bf16 --repeats 10 --chunk 10 --row-timeout 60 \
    --json "$OUT/bench_step-precisions-$DEV-$DATE.json" || status=1
fi
if [[ ",$SECTIONS," == *",scale,"* ]]; then
  timeout 420 "$VPY" benchmarks/bench_tile.py --rows vgg19:8192:2048 vgg19:8192:0 --steps 3 \
    --timeout 200 --out "$OUT/bench_tile-$DEV-$DATE.json" || status=1
  timeout 170 "$VPY" benchmarks/bench_shard.py --arch vgg19 --sizes 4096 8192 --repeats 2 \
    --out "$OUT/bench_shard-$DEV-$DATE.json" || status=1
fi
if [[ ",$SECTIONS," == *",batch,"* ]]; then
  timeout 280 "$VPY" benchmarks/bench_batch.py --photos 16 --size 256 --iters 50 \
    --json "$OUT/bench_batch-$DEV-$DATE.json" || status=1
fi
if [[ ",$SECTIONS," == *",models,"* ]]; then
  DATA=data/photos/train   # fetched by scripts/fetch_data.py; else the bundled photos (timings only)
  if [ ! -d "$DATA" ]; then DATA=$(mktemp -d); cp examples/content_* "$DATA"/; fi
  timeout 300 "$VPY" benchmarks/bench_models.py --sections apply train --apply-sizes 512 1024 2048 \
    --weights /nonexistent --data "$DATA" --json "$OUT/bench_models-$DEV-$DATE.json" || status=1
fi
if [[ ",$SECTIONS," != *",step,"* ]]; then
  ls -l "$OUT"/*"$DEV-$DATE"*.json 2>/dev/null
  exit $status
fi
timeout 330 "$VPY" benchmarks/bench_step.py --arch vgg19 --sizes 512 2048 --optimizers adam \
  --precisions f32 bf16 --repeats 10 --chunk 10 --row-timeout 150 \
  --json "$OUT/bench_step-$DEV-$DATE.json" || status=1
timeout 120 "$VPY" benchmarks/bench_step.py --arch vgg19 --sizes 512 --optimizers lbfgs \
  --precisions f32 --repeats 10 --chunk 5 --row-timeout 110 \
  --json "$OUT/bench_step-lbfgs-$DEV-$DATE.json" || status=1
timeout 150 "$VPY" benchmarks/bench_grid.py --points 16 --size 256 --iters 50 \
  --json "$OUT/bench_grid-$DEV-$DATE.json" || status=1
ls -l "$OUT"/*"$DEV-$DATE"*.json 2>/dev/null
exit $status
