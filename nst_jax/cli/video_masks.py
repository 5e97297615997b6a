"""[I/O] Masks that move with a clip: ``STYLE:MASKDIR`` and ``--content-mask MASKDIR``
for ``nst-jax video``, a folder of mask images (sorted by name) with one per input
frame, the first matching ``--start``. The first frame's masks are checked with the
rest of the settings before any work; every frame's masks are read when it starts."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from nst_jax.cli.common import CliError

#: What a mask folder contributes (as ``nst-jax batch`` reads folders).
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _sequence(folder: Path, what: str, start: int, n: int) -> list[str]:
    files = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if len(files) < start + n:
        raise CliError(f"{what}: the folder {folder} holds {len(files)} mask image(s), but frames "
                       f"{start} to {start + n - 1} need one each")
    return files[start: start + n]


def mask_sequences(args: argparse.Namespace, n_frames: int) -> dict[str, Any] | None:
    """Folders among the masks, as the mask files of the frames to stylize; ``args``
    rewritten to name the first frame's files (what ``prepare`` checks). None when every
    mask is one image (or there is none)."""
    from nst_jax.cli.regions import split_styles

    styles, masks = split_styles(list(args.style))
    seqs: dict[str, Any] = {"styles": {}, "content": None}
    for k, (s, m) in enumerate(zip(styles, masks, strict=True)):
        if m and Path(m).is_dir():
            seqs["styles"][k] = _sequence(Path(m), f"mask of {Path(s).name}", args.start, n_frames)
            args.style[k] = f"{s}:{seqs['styles'][k][0]}"
    cm = getattr(args, "content_mask", None)
    if cm and Path(cm).is_dir():
        seqs["content"] = _sequence(Path(cm), "--content-mask", args.start, n_frames)
        args.content_mask = seqs["content"][0]
    return seqs if seqs["styles"] or seqs["content"] else None


def guides_for(args: argparse.Namespace, seqs: dict[str, Any], pr: Any) -> Any:
    """``t -> Guides`` of frame ``t`` (counted from the first frame to stylize): the
    command line's own mask loading and checks, with frame ``t``'s files."""
    from nst_jax.cli.regions import load_guides

    c_hw = tuple(pr.content.shape[:2])
    s_hw = [tuple(s.shape[:2]) for s in pr.styles]
    base = list(args.style_masks or [None] * len(args.style))

    def at(t: int) -> Any:
        a = copy.copy(args)
        masks = [seqs["styles"][k][t] if k in seqs["styles"] else m for k, m in enumerate(base)]
        if seqs["content"] is not None:
            a.content_mask = seqs["content"][t]
        return load_guides(a, masks, list(args.style), c_hw, s_hw, pr.config)[0]

    return at


__all__ = ["guides_for", "mask_sequences"]
