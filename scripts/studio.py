#!/usr/bin/env python3
"""The studio, a local web app: python scripts/studio.py --help."""

import sys  # a builtin module: nothing to interrupt

try:  # Ctrl-C while starting up: nothing started yet, so no traceback either
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nst_jax.cli import studio_main
except KeyboardInterrupt:
    print("interrupted: stopped before the run started; nothing saved", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":
    sys.exit(studio_main(prog="python scripts/studio.py"))
