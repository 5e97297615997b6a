#!/usr/bin/env python3
"""Paint a content image in the style of another: python scripts/stylize.py --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    from nst_jax.cli import stylize_main
except KeyboardInterrupt:  # Ctrl-C while importing: nothing started, no traceback
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(stylize_main(prog="python scripts/stylize.py"))
