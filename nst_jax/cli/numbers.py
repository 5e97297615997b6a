"""[I/O] Numbers on the command line: argparse types with ranges, comma-separated lists,
style-layer specs. Every number a run cannot use is refused here, before anything is
loaded, with the range in the message."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from nst_jax.cli.errors import CliError


def _number(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s}")
    return v


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def tile_arg(s: str) -> int | str:
    """``--tile``: ``auto``, ``0`` (off) or a tile side in pixels."""
    if s.strip().lower() == "auto":
        return "auto"
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, 0 or a tile size in pixels, got {s!r}") from None
    if not 0 <= v <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"expected auto, 0 or a tile size in pixels up to {MAX_SIDE}, "
                                         f"got {v}")
    return v


def nonneg_float(s: str) -> float:
    try:
        v = _number(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def positive_float(s: str) -> float:
    v = nonneg_float(s)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


#: The largest loss weight accepted (alpha, beta, tv_weight, grid axes, blend weights):
#: J stays far from float32's 3.4e38 (raw costs reach ~1e12 at the default sizes).
MAX_WEIGHT = 1e15
#: The largest image side, in pixels, any flag accepts (memory is checked separately).
MAX_SIDE = 65536


def ranged(base: Callable[[str], Any], lo: float | None = None, hi: float | None = None, *,
           hi_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``base(s)`` (which checks the kind and sign), then the range
    ``[lo, hi]`` (``[lo, hi)`` with ``hi_open``), so that no number a run cannot use
    (``--style-scale 1e308``, ``--lbfgs-history 1e12``) gets past the command line.
    The bounds are kept on the function (``.bounds``) for the studio's form."""
    def conv(s: str) -> Any:
        v = base(s)
        if (lo is not None and v < lo) or (hi is not None and (v > hi or (hi_open and v == hi))):
            def num(x: float) -> str:
                return str(x) if isinstance(x, int) else f"{x:g}"

            top = "" if hi is None else f"{'less than' if hi_open else 'at most'} {num(hi)}"
            if lo is None:
                raise argparse.ArgumentTypeError(f"expected {top}, got {s}")
            raise argparse.ArgumentTypeError(f"expected at least {num(lo)}{' and ' + top if top else ''}, "
                                             f"got {s}")
        return v

    conv.bounds = (lo, hi)  # type: ignore[attr-defined]
    conv.__name__ = getattr(base, "__name__", "number")
    return conv


def integer(s: str) -> int:
    """A whole number (``"12"``; not ``"1e3"`` or ``"1.5"``)."""
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None


def parse_numbers(flag: str, text: str | None, *, count: int | None = None,
                  what: str = "numbers", hi: float = MAX_WEIGHT) -> list[float] | None:
    """``"1,10,100"`` -> ``[1.0, 10.0, 100.0]``: finite, in ``[0, hi]``, ``count`` of them if given.

    Raises:
      CliError: empty items, non-numbers, negative, infinite or NaN values, wrong count.
    """
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise CliError(f"{flag}: expected comma-separated {what} like 1,10,100, got {text!r}")
    values = []
    for x in items:
        try:
            v = float(x)
        except ValueError:
            raise CliError(f"{flag}: {x!r} is not a number") from None
        if not (math.isfinite(v) and v >= 0):
            raise CliError(f"{flag}: values must be finite and >= 0, got {x}")
        if v > hi:
            raise CliError(f"{flag}: values must be at most {hi:g}, got {x}")
        values.append(v)
    if count is not None and len(values) != count:
        raise CliError(f"{flag}: expected {count} {what}, got {len(values)} ({text!r})")
    return values


def parse_style_layers(spec: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``"conv1_1:0.2,conv2_1:0.2"`` (or names without weights: equal weights) -> names, weights."""
    names, weights = [], []
    items = [x.strip() for x in spec.split(",")]
    if not spec.strip() or any(not x for x in items):
        raise CliError(f"--style-layers: expected LAYER[:WEIGHT],LAYER[:WEIGHT],..., got {spec!r}")
    for item in items:
        name, sep, w = item.partition(":")
        wv = None
        if sep:
            try:
                wv = float(w)
            except ValueError:
                raise CliError(
                    f"--style-layers: weight of {name!r} is not a number: {w!r}") from None
            if not (math.isfinite(wv) and wv >= 0):
                raise CliError(f"--style-layers: weight of {name!r} must be finite and >= 0, got {w}")
        names.append(name.strip())
        weights.append(wv)
    if all(w is None for w in weights):
        weights = [1.0 / len(names)] * len(names)
    elif any(w is None for w in weights):
        raise CliError("--style-layers: give a weight for every layer or for none")
    return tuple(names), tuple(float(w) for w in weights)
