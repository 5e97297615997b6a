"""[I/O] Where weights live: the per-user cache, the search order, the fetch hint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nst_jax.weights.errors import WeightsError


def fetch_command() -> str:
    """How the user runs the fetcher: the script in a checkout, else the installed command."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "fetch_weights.py"
    return "python scripts/fetch_weights.py" if script.is_file() else "nst-jax fetch-weights"


def fetch_hint() -> str:
    return f"fetch weights with: {fetch_command()}"


WEIGHTS_ENV = "NST_JAX_WEIGHTS"
WEIGHT_NAMES = ("vgg19.h5", "vgg16.h5")


def cache_dir() -> Path:
    """The per-user weights folder: ``$NST_JAX_WEIGHTS`` if set, else the platform's
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows) + ``nst_jax/weights``. Nothing is created."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nst_jax" / "weights"


def search_dirs() -> list[Path]:
    """Where weights are looked for, in order: ``./weights``, the checkout's ``weights/``
    (when the package runs from a source tree), then :func:`cache_dir`."""
    checkout = Path(__file__).resolve().parents[2]
    dirs = [Path.cwd() / "weights"]
    if (checkout / "pyproject.toml").is_file():  # running from a source tree, not a wheel
        dirs.append(checkout / "weights")
    dirs.append(cache_dir())
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def default_fetch_dir() -> Path:
    """Where the fetcher writes: ``./weights`` when it exists (a checkout), else the cache."""
    here = Path.cwd() / "weights"
    return Path("weights") if here.is_dir() else cache_dir()


def find_weights(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` if given, else the first ``vgg19.h5`` or ``vgg16.h5`` in :func:`search_dirs`.

    Raises:
      WeightsError: none found; the message lists where it looked and how to fetch.
    """
    if explicit:
        return Path(explicit)
    dirs = search_dirs()
    for d in dirs:
        for name in WEIGHT_NAMES:
            if (d / name).is_file():
                return d / name
    raise WeightsError(f"no weights found (looked for {' or '.join(WEIGHT_NAMES)} in "
                       f"{', '.join(str(d) for d in dirs)}); {fetch_hint()}")
