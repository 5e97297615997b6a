#!/usr/bin/env bash
# Idempotent set-up: a venv in .venv, the package with its test+convert extras (video included), and the weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nst_jax needs Python >= 3.11 (as JAX does)")'
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import nst_jax, onnx, pytest, xdist, av, cv2, starlette, uvicorn, httpx2, selenium, jax2onnx, onnxruntime' 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,convert]'
fi
if ! ls weights/vgg19.h5 weights/vgg16.h5 >/dev/null 2>&1; then
  .venv/bin/python scripts/fetch_weights.py
fi
