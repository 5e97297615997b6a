"""[I/O] ``nst-jax video --model MODEL``: a trained network on every frame, with an
optional flow-guided blend against flicker (:mod:`nst_jax.models.video`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nst_jax.cli.common import EXIT_OK, CliError, fmt_time, refuse_overlap


def add_model_flags(ap: argparse.ArgumentParser) -> None:
    m = ap.add_argument_group("a trained network instead of the optimisation (nst-jax train)")
    m.add_argument("--model", default=None, metavar="MODEL",
                   help="apply this model to every frame (no STYLE needed; one forward pass a frame)")
    m.add_argument("--blend", type=float, default=0.0, metavar="B",
                   help="with --model: blend each frame with the previous output warped by the flow, "
                        "where the flow is reliable, 0 <= B < 1 (default: 0, frames independent)")
    m.add_argument("--strength", default="1", help="with --model: blend towards the frame (default: 1)")


def run_model(args: argparse.Namespace) -> int:
    """The ``video --model`` path; returns the exit code."""
    from nst_jax import image as I
    from nst_jax import videoio as V
    from nst_jax.cli.apply import _strength
    from nst_jax.models import store
    from nst_jax.models.video import stylize_frames

    t0 = time.perf_counter()
    out = Path(args.output)
    strength = _strength(args.strength)
    if not 0.0 <= args.blend < 1.0:
        raise CliError(f"--blend: expected a number in [0, 1), got {args.blend:g}")
    refuse_overlap([("output", out)], [("input", Path(args.input)), ("model", Path(args.model))])
    try:
        params, arch, meta = store.load_model(args.model)
    except store.ModelError as e:
        raise CliError(str(e)) from None
    try:
        info = V.probe(args.input)
        fps = V.check_fps(args.fps or info["fps"], out)
        if not V.is_frames_dir(out):
            V.output_codec(out)
            if out.exists() and not args.overwrite:
                raise CliError(f"{out} exists; pass --overwrite to replace it")
        n = V.scan(args.input, start=args.start, max_frames=args.max_frames)
        frames = V.read_frames(args.input, start=args.start, max_frames=n, size=args.size)
        outs = stylize_frames(frames, params, arch, strength=strength, blend=args.blend)
        if V.is_frames_dir(out):
            out.mkdir(parents=True, exist_ok=True)
            for t, y in enumerate(outs):
                I.save_image(out / f"{t:06d}.png", y, sidecar=False, overwrite=args.overwrite)
        else:
            V.write_video(out, outs, fps, audio_from=args.input, start=args.start, n_frames=n,
                          overwrite=args.overwrite)
    except V.VideoError as e:
        raise CliError(str(e)) from None
    side = out / "meta.json" if V.is_frames_dir(out) else out.with_name(out.name + ".json")
    side.write_text(json.dumps({"model": str(args.model), "styles": meta.get("style_names"),
                                "blend": args.blend, "strength": strength, "frames": n, "fps": fps,
                                "input": str(args.input)}, indent=1))
    print(f"done: wrote {out} ({n} frames at {fps:g} fps) in {fmt_time(time.perf_counter() - t0)}",
          file=sys.stderr)
    return EXIT_OK


__all__ = ["add_model_flags", "run_model"]
