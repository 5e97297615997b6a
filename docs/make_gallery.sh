#!/usr/bin/env bash
# Regenerate the feature gallery in docs/gallery/ (one image per feature family, 256 px).
# Run from the repository root after `bash scripts/setup.sh`. ~10 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
C=examples/content_chelsea.png
S=examples/style_swirls.png
M=examples/style_mosaic.png
run() { "$PY" scripts/stylize.py "$@" --size 256 --overwrite --quiet; }
run $C $S --optimizer lbfgs --iters 150 -o docs/gallery/lbfgs.png
run $C $S $M --style-weights 0.5,0.5 --iters 250 -o docs/gallery/blend.png
run $C $S --preserve-color luminance --iters 250 -o docs/gallery/luminance.png
run $C $S --preserve-color histogram --iters 250 -o docs/gallery/histogram.png
run $C $S --scales 2 --iters 150 --avg-decay 0.9 --tol 1e-3 -o docs/gallery/coarse_to_fine.png
# regions (README "Regions"): swirls in the sky, the mosaic on the rest, one run per style statistic;
# benchmarks/bench_regions.py measures these very images
R=examples/content_rocket.jpg
for loss in gram meancov w2; do
  run $R "$S:examples/mask_rocket_sky.png" $M --style-loss $loss --iters 300 -o docs/gallery/regions_$loss.png
done
