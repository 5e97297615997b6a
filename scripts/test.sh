#!/usr/bin/env bash
# Set up (venv, install, weights) and run the test suite: the default, fast part, on 2
# workers (pytest-xdist). Extra arguments go to pytest (e.g. -m slow for the integration
# tests, -m "slow or not slow" for everything, -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${NST_TEST_WORKERS:-2}" "$@"
