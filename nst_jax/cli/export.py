"""[I/O] ``nst-jax export``: a trained network as serialised StableHLO or ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nst_jax.cli.common import EXIT_OK, MAX_SIDE, CliError, check_outputs, positive_int, ranged

DESCRIPTION = """Export a trained style network for another runtime, at a fixed image size:
  stablehlo  jax.export's serialised StableHLO (jax.export.deserialize reloads it; no nst_jax needed)
  onnx       ONNX through jax2onnx (pip install jax2onnx onnxruntime): input (1, H, W, 3) float32 in [0, 1]

Example:
  {prog} starry.nstm -o starry-512.onnx --format onnx --height 512 --width 512
"""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("model", help="model file from nst-jax train")
    ap.add_argument("-o", "--output", required=True, help="the exported file")
    ap.add_argument("--format", choices=("stablehlo", "onnx"), default="stablehlo",
                    help="what to write (default: stablehlo)")
    side = ranged(positive_int, lo=4, hi=MAX_SIDE)
    ap.add_argument("--height", type=side, default=512, help="image height (default: 512)")
    ap.add_argument("--width", type=side, default=512, help="image width (default: 512)")
    ap.add_argument("--style", type=ranged(positive_int, lo=0, hi=10**6), default=0,
                    help="the style of a conditional model baked in (default: 0)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return ap


def run(args: argparse.Namespace) -> int:
    from nst_jax import files
    from nst_jax.models import export, johnson, store

    try:
        params, arch, _ = store.load_model(args.model)
    except store.ModelError as e:
        raise CliError(str(e)) from None
    if args.style >= arch.n_styles:
        raise CliError(f"--style: the model has {arch.n_styles} style(s), got {args.style}")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise CliError(f"cannot write {out}: folder {out.parent} does not exist")
    check_outputs([out], args.overwrite)
    w = johnson.style_weights(arch, args.style)
    hw = (args.height, args.width)
    try:
        if args.format == "onnx":
            try:
                export.export_onnx(params, arch, hw, out, style_w=w, overwrite=args.overwrite)
            except ImportError:
                raise CliError("--format onnx needs jax2onnx: pip install jax2onnx onnxruntime") from None
        else:
            files.write_bytes(out, export.export_stablehlo(params, arch, hw, style_w=w),
                              overwrite=args.overwrite)
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"done: {out} ({args.format}, {hw[1]}x{hw[0]})", file=sys.stderr)
    return EXIT_OK


__all__ = ["fill_parser", "run"]
