"""``python -m nst_jax``: the ``nst-jax`` command."""

import sys

from nst_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
