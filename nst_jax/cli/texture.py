"""[I/O] ``nst-jax texture``: texture synthesis (Gatys, Ecker & Bethge 2015, "Texture
Synthesis Using Convolutional Neural Networks"): the style cost alone (alpha 0) from
noise, at any size, seamless with ``--padding circular`` (the default here).

It is ``stylize`` without a content: the run gets a flat grey stand-in of the asked
size (alpha 0 gives it no weight) and every other flag works as there (style
statistics, blends, L-BFGS, scales, ``--save-every``, ``--animate``, checkpoints)."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np

from nst_jax.cli.common import CliError

DESCRIPTION = """Synthesise a texture from STYLE (the style cost alone, from noise).

Example:
  {prog} examples/style_mosaic.png --size 512x384 --iters 400 -o out/mosaic-texture.png

With --padding circular (the default here) the texture tiles seamlessly: every
convolution of the network sees the image wrap around. Sides must then be multiples
of 16 (the network's pooling). Exit codes as for stylize.
"""

#: The side multiple circular padding needs to wrap at every layer (4 poolings to conv5_1).
WRAP = 16


def size_arg(s: str) -> tuple[int, int]:
    """``--size``: ``WxH`` or ``N`` (square), in pixels."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT or one side in pixels, e.g. 512x384, "
                                         f"got {s!r}")
    w, h = int(m.group(1)), int(m.group(2) or m.group(1))
    from nst_jax.cli.common import MAX_SIDE

    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"expected sides from 1 to {MAX_SIDE} pixels, got {s!r}")
    return w, h


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from nst_jax.cli import stylize

    stylize.fill_parser(ap, texture=True)
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.add_argument("--size", type=size_arg, default=(512, 512), metavar="WxH",
                    help="texture size, WIDTHxHEIGHT or one side (default: 512x512)")
    defaults = {"padding": "circular", "init": "noise", "alpha": 0.0}
    ap.set_defaults(**defaults)
    for a in ap._actions:  # the help says the texture's defaults
        if a.dest in defaults and a.help:
            a.help = re.sub(r"\(default: [^)]*\)", f"(default: {defaults[a.dest]:g})" if a.dest == "alpha"
                            else f"(default: {defaults[a.dest]})", a.help)
    return ap


def run(args: argparse.Namespace) -> int:
    """The ``texture`` subcommand: ``stylize`` of a grey stand-in content."""
    from nst_jax import image as I
    from nst_jax.cli import stylize

    w, h = args.size
    if args.padding == "circular" and (w % WRAP or h % WRAP):
        up = (-(-w // WRAP) * WRAP, -(-h // WRAP) * WRAP)
        raise CliError(f"--size {w}x{h}: with --padding circular the sides must be multiples of {WRAP} "
                       f"(the network's pooling) to wrap at every layer; try --size {up[0]}x{up[1]}")
    if args.alpha != 0:
        raise CliError(f"--alpha {args.alpha:g}: a texture has no content; leave --alpha at 0")
    for flag, v in (("--content-mask", args.content_mask), ("--photo", args.photo),
                    ("--auto-regions", args.auto_regions), ("--smooth", args.smooth)):
        if v:
            raise CliError(f"{flag}: needs a content photo; a texture has none")
    if not args.output:
        Path("out").mkdir(exist_ok=True)
        args.output = str(_free_name(Path("out") / f"texture-{Path(args.style[0].split(':')[0]).stem}.png"))
    with tempfile.TemporaryDirectory(prefix="nst_jax-texture-") as tmp:
        args.content, args.texture = str(Path(tmp) / f"{w}x{h}.png"), f"{w}x{h}"
        I.save_image(args.content, np.full((h, w, 3), 0.5, np.float32), sidecar=False)
        args.size = max(w, h)
        return stylize.run(args)


def _free_name(base: Path) -> Path:
    from nst_jax import files

    for i in range(100000):
        cand = files.numbered(base, i)
        if not cand.exists():
            return cand
    raise CliError(f"no free output name like {base}")


__all__ = ["WRAP", "fill_parser", "run", "size_arg"]
