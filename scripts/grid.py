#!/usr/bin/env python3
"""Sweep loss weights in one compiled program: python scripts/grid.py --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_jax.cli import grid_main

if __name__ == "__main__":
    sys.exit(grid_main())
