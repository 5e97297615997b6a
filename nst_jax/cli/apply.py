"""[I/O] ``nst-jax apply``: a trained network on photos; files, folders and globs."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    MAX_SIDE,
    CliError,
    check_outputs,
    fmt_time,
    parse_numbers,
    positive_int,
    ranged,
    refuse_overlap,
    select_device,
    sha256_of,
)
from nst_jax.cli.flags import SMOOTH_WEIGHT, positive_weight
from nst_jax.cli.photo import smooth_result

DESCRIPTION = """Apply a trained style network (nst-jax train) to photos: one forward pass each,
photos of one shape batched into one call. Any size: beyond --tile pixels a side the
network runs layer by layer in tiles (exact: the same image as whole).

Examples:
  {prog} starry.nstm holiday/ 'more/*.jpg' -o out/starry
  {prog} styles.nstm photo.jpg --style-mix 0.3,0.7 --strength 0.8 -o photo-mix.png
"""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("model", help="model file from nst-jax train (.nstm, or its .ckpt)")
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="photos: files, folders or glob patterns")
    ap.add_argument("-o", "--output", default=None,
                    help="output folder (default: out/apply-MODEL); with one INPUT, a .png/.jpg name "
                         "is the output file")
    ap.add_argument("--size", type=ranged(positive_int, lo=4, hi=MAX_SIDE), default=None,
                    help="resize so the longest side is SIZE (default: the photo's own size)")
    ap.add_argument("--strength", type=str, default="1",
                    help="blend towards the content: 1 = the network's output, 0 = the photo (default: 1)")
    ap.add_argument("--style", type=ranged(positive_int, lo=0, hi=10**6), default=None,
                    help="which style of a conditional model (0-based; default: 0)")
    ap.add_argument("--style-mix", default=None,
                    help="weights interpolating the styles of a conditional model, e.g. 0.3,0.7")
    ap.add_argument("--tile", type=ranged(positive_int, lo=16, hi=MAX_SIDE), default=2048,
                    help="photos with a side above TILE pixels run layer by layer in TILE tiles "
                         "(default: 2048)")
    ap.add_argument("--smooth", type=positive_weight, nargs="?", const=SMOOTH_WEIGHT, default=None,
                    metavar="LAMBDA", help="post-pass: photo smoothing of each output against its photo "
                    f"(Li et al. 2018) with this weight (alone: {SMOOTH_WEIGHT:g}; default: off)")
    ap.add_argument("--device", choices=("cpu", "gpu", "tpu"), default=None, help="JAX platform")
    ap.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bits per channel")
    ap.add_argument("--overwrite", action="store_true", help="replace existing output files")
    ap.add_argument("--quiet", action="store_true", help="print only the final line")
    return ap


def _strength(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise CliError(f"--strength: expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= s <= 1.0:
        raise CliError(f"--strength: expected a number in [0, 1], got {text}")
    return s


def _style_w(args: argparse.Namespace, arch: Any) -> Any:
    import numpy as np

    if args.style is not None and args.style_mix is not None:
        raise CliError("--style and --style-mix: give one of them")
    if args.style is not None:
        if args.style >= arch.n_styles:
            raise CliError(f"--style: the model has {arch.n_styles} style(s) (0..{arch.n_styles - 1}), "
                           f"got {args.style}")
        return np.eye(arch.n_styles, dtype=np.float32)[args.style]
    if args.style_mix is not None:
        w = parse_numbers("--style-mix", args.style_mix, count=arch.n_styles,
                          what=f"weights (one per style of the model: {arch.n_styles})")
        if w is None or min(w) < 0 or sum(w) <= 0:
            raise CliError(f"--style-mix: expected non-negative weights with a positive sum, "
                           f"got {args.style_mix!r}")
        return np.asarray(w, np.float32) / np.float32(sum(w))
    return np.eye(arch.n_styles, dtype=np.float32)[0]


def _targets(args: argparse.Namespace, photos: list[Path],
             model: Path) -> tuple[dict[Path, Path], Path | None]:
    """``({photo: output}, output folder or None for one output file)``."""
    from nst_jax.cli.batch import output_names

    image_name = Path(args.output or "").suffix.lower() in (".png", ".jpg", ".jpeg")
    single = len(photos) == 1 and args.output and image_name
    if single:
        return {photos[0]: Path(args.output)}, None
    out = Path(args.output) if args.output else Path("out") / f"apply-{model.stem}"
    if out.exists() and not out.is_dir():
        raise CliError(f"output {out} exists and is not a folder")
    return {p: out / n for p, n in zip(photos, output_names(photos, model.name), strict=True)}, out


def _make_folder(targets: dict[Path, Path], folder: Path | None, overwrite: bool) -> None:
    """Create the output ``folder`` (``None``: one output file, whose folder must exist)
    and refuse taken names before any compute; a folder made here is removed on refusal."""
    made = folder is not None and not folder.exists()
    try:
        if made:
            folder.mkdir(parents=True)  # type: ignore[union-attr]
        check_outputs(targets.values(), overwrite)
    except OSError as e:
        raise CliError(f"cannot create output folder {folder}: {e.strerror or e}") from None
    except CliError:
        if made and not any(folder.iterdir()):  # type: ignore[union-attr]
            folder.rmdir()  # type: ignore[union-attr]
        raise


def run(args: argparse.Namespace) -> int:
    """The ``apply`` subcommand; returns the exit code."""
    from nst_jax import image as I
    from nst_jax.cli.batch import expand
    from nst_jax.models import store

    t0 = time.perf_counter()
    strength = _strength(args.strength)
    model = Path(args.model)
    try:
        params, arch, meta = store.load_model(model)
    except store.ModelError as e:
        raise CliError(str(e)) from None
    w = _style_w(args, arch)
    photos = expand(args.inputs)
    targets, folder = _targets(args, photos, model)
    refuse_overlap([("output", o) for o in targets.values()],
                   [*(("photo", p) for p in photos), ("model", model)])
    _make_folder(targets, folder, args.overwrite)
    select_device(args.device)
    groups: dict[tuple[int, int], list[tuple[Path, Any]]] = {}
    failed: list[str] = []
    for p in photos:
        try:
            x = I.load_image(p, args.size)
            groups.setdefault(x.shape[:2], []).append((p, x))
        except I.ImageError as e:
            failed.append(str(p))
            print(f"error: {e} (skipped)", file=sys.stderr)
    info = {"model": str(model), "model_sha256": sha256_of(model), "strength": strength,
            "style_weights": [float(v) for v in w], "styles": meta.get("style_names")}
    written = 0
    for hw, items in groups.items():
        for (p, x), y in zip(items, _run_group(params, arch, [x for _, x in items], w, strength,
                                                args.tile), strict=True):
            dest = targets[p]
            extra = {}
            if args.smooth:  # Li et al. 2018's post-pass, in bands of --tile rows
                y = smooth_result(np.asarray(y), x, args.smooth, band=args.tile)
                extra = {"smooth": args.smooth}
            try:
                I.save_image(dest, y, {**info, "content": str(p), **extra}, overwrite=args.overwrite,
                             bit_depth=args.bit_depth)
                written += 1
                if not args.quiet:
                    print(f"{p} -> {dest} ({hw[1]}x{hw[0]})", file=sys.stderr)
            except (OSError, I.ImageError) as e:
                failed.append(str(p))
                print(f"error: {dest} not written ({e})", file=sys.stderr)
    print(f"done: {written} of {len(photos)} photo(s) in {fmt_time(time.perf_counter() - t0)}",
          file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} photo(s) failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _run_group(params: Any, arch: Any, xs: list, w: Any, strength: float, tile: int) -> list:
    """The network on photos of one shape: one vmapped call (chunks of 8), or tiled."""
    import numpy as np

    from nst_jax.models import tiled

    if max(xs[0].shape[:2]) > tile:
        return [tiled.apply_tiled(params, x, w, arch=arch, tile=tile, strength=strength) for x in xs]
    fn = _batched(arch)
    out = []
    for i in range(0, len(xs), 8):
        out += list(np.asarray(fn(params, np.stack(xs[i:i + 8]), w, strength)))
    return out


@functools.lru_cache(maxsize=8)
def _batched(arch: Any) -> Any:
    """The vmapped, jitted apply of one architecture (built once: every shape group reuses it)."""
    import jax

    from nst_jax.models import johnson

    return jax.jit(jax.vmap(lambda p, x, w, s: johnson.apply(p, x, w, arch=arch, strength=s),
                            in_axes=(None, 0, None, None)))


__all__ = ["fill_parser", "run"]
