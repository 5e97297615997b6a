"""[I/O] The command line, the only place that prints and exits:
``nst-jax {stylize,texture,grid,batch,video,train,apply,export,studio,fetch-weights}``.

Exit codes: 0 done; 1 a run-time failure (a non-finite cost, a write that had to go to
a fallback name); 2 bad input (one line starting ``error:``); 130 interrupted by
Ctrl-C; 143 terminated by SIGTERM (both save the current image).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from nst_jax.cli.common import (
    CPU_XLA_FLAG,
    EXIT_USAGE,
    CliError,
    Parser,
    ProgressBar,
    RunError,
    catch_early_signals,
    default_xla_flags,
    fail,
    parse_numbers,
    parse_style_layers,
)

#: subcommand -> (help, module in nst_jax.cli); modules are imported when main runs,
#: after Ctrl-C/SIGTERM are caught, so a signal during start-up never lands inside an
#: extension module's import.
COMMANDS: dict[str, tuple[str, str]] = {
    "stylize": ("paint a content image in the style of one or more style images", "stylize"),
    "texture": ("synthesise a texture from style images (seamless with --padding circular)",
                "texture"),
    "grid": ("optimise one image per point of a grid of loss weights, in one program", "grid"),
    "batch": ("stylize many photos in one style, one compiled program per image shape", "batch"),
    "video": ("stylize a video without flicker (warm starts and a temporal cost, Ruder et al.)",
              "video"),
    "train": ("train a feed-forward style network on a folder of photos (Johnson et al. 2016)", "train"),
    "apply": ("apply a trained style network to photos, instantly, at any size", "apply"),
    "export": ("export a trained style network as StableHLO (jax.export) or ONNX", "export"),
    "studio": ("a local web app: live preview, cost curves, sweeps, gallery", "studio"),
    "fetch-weights": ("download, verify and convert pretrained VGG weights", "fetch"),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"nst_jax.cli.{COMMANDS[name][1]}")


def prepare(*args: Any, **kw: Any) -> Any:
    """:func:`nst_jax.cli.inputs.prepare` (imported on use)."""
    from nst_jax.cli.inputs import prepare as _prepare

    return _prepare(*args, **kw)


def version() -> str:
    from nst_jax import __version__

    return __version__


def build_parser(prog: str = "nst-jax") -> argparse.ArgumentParser:
    """The top-level parser with one subcommand per entry of :data:`COMMANDS`."""
    ap = Parser(prog=prog, description="Neural style transfer (Gatys, Ecker & Bethge) in JAX.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, _) in COMMANDS.items():
        module = _module(name)
        p = sub.add_parser(name, help=help_, description=help_)
        module.fill_parser(p)
        p.set_defaults(func=module.run)
    return ap


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except CliError as e:
        return fail(str(e))
    except RunError as e:
        return fail(str(e), 1)


def main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax COMMAND ...``; returns the exit code."""
    try:
        with catch_early_signals():
            default_xla_flags()
            args = build_parser().parse_args(argv)
            return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted: stopped before the run started; nothing saved", file=sys.stderr)
        return 130


def _single(name: str, argv: Sequence[str] | None, prog: str | None) -> int:
    try:
        with catch_early_signals():
            default_xla_flags()
            module = _module(name)
            ap = module.fill_parser(Parser(prog=prog or f"nst-jax {name}"))
            ap.set_defaults(func=module.run)
            return _dispatch(ap.parse_args(argv))
    except KeyboardInterrupt:
        print("interrupted: stopped before the run started; nothing saved", file=sys.stderr)
        return 130


def stylize_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``nst-jax stylize`` (``scripts/stylize.py``)."""
    return _single("stylize", argv, prog)


def grid_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``nst-jax grid`` (``scripts/grid.py``)."""
    return _single("grid", argv, prog)


def studio_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``nst-jax studio`` (``scripts/studio.py``)."""
    return _single("studio", argv, prog)


def fetch_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``nst-jax fetch-weights`` (``scripts/fetch_weights.py``)."""
    return _single("fetch-weights", argv, prog)


def stylize_parser(prog: str = "nst-jax stylize") -> argparse.ArgumentParser:
    return _module("stylize").fill_parser(Parser(prog=prog))


def grid_parser(prog: str = "nst-jax grid") -> argparse.ArgumentParser:
    return _module("grid").fill_parser(Parser(prog=prog))


__all__ = [
    "CPU_XLA_FLAG",
    "EXIT_USAGE",
    "CliError",
    "ProgressBar",
    "RunError",
    "build_parser",
    "default_xla_flags",
    "fetch_main",
    "grid_main",
    "grid_parser",
    "main",
    "parse_numbers",
    "parse_style_layers",
    "prepare",
    "studio_main",
    "stylize_main",
    "stylize_parser",
]
