#!/usr/bin/env bash
# Set up (venv, install, weights) and stylize the bundled examples (~2 minutes on a 2-core CPU).
# Extra arguments go to stylize.py (e.g. --size 512 --iters 500 -o out/big.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/stylize.py examples/content_chelsea.png examples/style_swirls.png \
  --size 256 --iters 300 "$@"
