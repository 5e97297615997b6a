#!/usr/bin/env python3
"""Sweep loss weights in one compiled program: python scripts/grid.py --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    from nst_jax.cli import grid_main
except KeyboardInterrupt:  # Ctrl-C while importing: nothing started, no traceback
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(grid_main(prog="python scripts/grid.py"))
