#!/usr/bin/env python3
"""Temporal stability of video style transfer (Ruder et al. 2016) on a real clip.

The first ``--frames`` frames of Big Buck Bunny (``python scripts/fetch_clip.py``;
(c) Blender Foundation, CC BY 3.0) at ``--size`` px, real VGG16, the bundled swirls,
three methods:

* ``independent``: every frame on its own from content+noise, ``--iters-first`` steps;
* ``warm``: each frame starts from the previous result warped by the flow, ``--iters``
  steps after the first frame's ``--iters-first``, no temporal cost;
* ``full``: warm start + the temporal cost (``--temporal-weight``).

Stability: the warping error ``E = mean_t mean_{reliable px} |O_t - warp(O_{t-1})|``
(:func:`nst_jax.temporal.warping_error`) with the flow of the INPUT frames (OpenCV
DIS) and Ruder et al.'s consistency mask; time: wall clock of the whole method
(flows, compilation and every frame). Goal: ``full`` at least 3x lower E than
``independent``, in no more time.

Content fidelity: a warping error alone rewards freezing (an output that stops
following its input scores well), so every method also gets, per frame, the content
cost ``J_content(C_t, O_t)`` at ``conv4_2`` (lecture normalisation) of its output
against its own input frame, divided by the independent run's for the same frame:
``F_t = J_t / J_t^independent``. Reported: the mean over frames, the worst frame, and
the mean over the last quarter of the clip (where new content enters). The default
``lambda_t`` is the one that meets the stability goal with the lowest content cost.

Writes a side-by-side GIF (input | independent | ``--gif-weight``, default 2e6: the
command line's default) to ``--gif`` (every 2nd frame, a 64-colour palette, under
1 MB) and JSON (default ``benchmarks/results/bench_video-<platform>.json``).

    python scripts/fetch_clip.py && python benchmarks/bench_video.py     # ~20 min, 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from benchmarks.common import cpu_info
from nst_jax import losses, vgg
from nst_jax import temporal as T
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.image import load_image
from nst_jax.video import iterate_video
from nst_jax.videoio import dis_flow, read_frames
from nst_jax.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
default_xla_flags()  # the command-line tools' XLA:CPU flag; read when the backend starts


def content_costs(outs: list[np.ndarray], frames: list[np.ndarray], params: dict, spec) -> np.ndarray:
    """``J_content(C_t, O_t)`` per frame at conv4_2 (lecture normalisation)."""
    feat = jax.jit(lambda x: vgg.vgg_features(params, vgg.preprocess(x, spec), ["conv4_2"])["conv4_2"])
    return np.array([float(losses.content_cost(feat(jnp.asarray(c)), feat(jnp.asarray(o))))
                     for c, o in zip(frames, outs, strict=True)])


def write_gif(path: str, frames: list[np.ndarray], *columns: list[np.ndarray]) -> int:
    """Side by side, every 2nd frame at 160 ms (the same speed), a 64-colour palette;
    returns the file's size in bytes."""
    strip = [np.concatenate([f, *(c[t] for c in columns)], axis=1) for t, f in enumerate(frames)][::2]
    ims = [Image.fromarray(np.round(np.clip(s, 0, 1) * 255).astype(np.uint8))
           .quantize(64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for s in strip]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=160, loop=0, optimize=True)
    return Path(path).stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(ROOT / "data" / "bigbuckbunny.mp4"))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iters-first", type=int, default=120)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--temporal-weight", type=float, nargs="+", default=[2e6])
    ap.add_argument("--methods", default="independent,warm,full")
    ap.add_argument("--weights", default=str(ROOT / "weights" / "vgg16.h5"))
    ap.add_argument("--style", default=str(ROOT / "examples" / "style_swirls.png"))
    ap.add_argument("--gif", default=str(ROOT / "docs" / "gallery" / "video.gif"))
    ap.add_argument("--gif-weight", type=float, default=2e6, help="the lambda_t the GIF shows")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not Path(args.clip).exists():
        raise SystemExit(f"error: {args.clip} missing: run python scripts/fetch_clip.py")
    params, spec = load_weights(args.weights)
    frames = list(read_frames(args.clip, max_frames=args.frames, size=args.size))
    style = load_image(args.style, args.size)
    t0 = time.perf_counter()
    bwd = [dis_flow(frames[t], frames[t - 1]) for t in range(1, len(frames))]
    fwd = [dis_flow(frames[t - 1], frames[t]) for t in range(1, len(frames))]
    flow_s = time.perf_counter() - t0
    cons = jnp.stack([T.consistency(jnp.asarray(f), jnp.asarray(b)) for f, b in zip(fwd, bwd, strict=True)])
    bwd_j = jnp.stack([jnp.asarray(b) for b in bwd])
    cfg = Config(iterations=args.iters_first)
    e_in = float(T.warping_error(jnp.asarray(np.stack(frames)), bwd_j, cons))
    print(f"{len(frames)} frames of {Path(args.clip).name} at {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"VGG16; flows {flow_s:.1f}s; reliable pixels {float(jnp.mean(cons)):.1%}; "
          f"warping error of the input itself {e_in:.4f}")
    runs = []
    for method in args.methods.split(","):
        for lam in (args.temporal_weight if method == "full" else [0.0]):
            kw = {"independent": {"warm_start": False, "temporal_weight": 0.0, "iters": args.iters_first},
                  "warm": {"temporal_weight": 0.0, "iters": args.iters},
                  "full": {"temporal_weight": lam, "iters": args.iters}}[method]
            t0 = time.perf_counter()
            outs, steps = [], 0
            for out, last in iterate_video(frames, style, params, spec, config=cfg, **kw):
                outs.append(out)
                steps += last.step
            wall = time.perf_counter() - t0
            err = float(T.warping_error(jnp.asarray(np.stack(outs)), bwd_j, cons))
            runs.append({"method": method, "temporal_weight": lam, "steps": steps, "time_s": wall,
                         "warping_error": err, "outputs": outs})
            print(f"{method:12} lambda {lam:8.3g}: {steps:6d} steps, {wall:7.1f} s, E = {err:.4f}",
                  flush=True)
    base = next((r for r in runs if r["method"] == "independent"), None)
    for r in runs:
        r["content_costs"] = content_costs(r["outputs"], frames, params, spec).tolist()
    q = max(1, len(frames) // 4)
    print(f"\n{'method':12} {'lambda':>8} {'steps':>6} {'time s':>8} {'E':>8} {'E/E_ind':>8} "
          f"{'t/t_ind':>8} {'F mean':>7} {'F max':>7} {'F last':>7}")
    for r in runs:
        r["error_vs_independent"] = r["warping_error"] / base["warping_error"] if base else None
        r["time_vs_independent"] = r["time_s"] / base["time_s"] if base else None
        if base:
            f = np.array(r["content_costs"]) / np.array(base["content_costs"])
            r["content_vs_independent"] = f.tolist()
            r["F_mean"], r["F_max"], r["F_last_quarter"] = float(f.mean()), float(f.max()), float(
                f[-q:].mean())
        print(f"{r['method']:12} {r['temporal_weight']:8.3g} {r['steps']:6d} {r['time_s']:8.1f} "
              f"{r['warping_error']:8.4f} {r['error_vs_independent'] or 0:8.3f} "
              f"{r['time_vs_independent'] or 0:8.3f} {r.get('F_mean', 0):7.3f} {r.get('F_max', 0):7.3f} "
              f"{r.get('F_last_quarter', 0):7.3f}")
    full = [r for r in runs if r["method"] == "full"]
    if base and full and args.gif:
        shown = min(full, key=lambda r: abs(r["temporal_weight"] - args.gif_weight))
        size = write_gif(args.gif, frames, base["outputs"], shown["outputs"])
        print(f"wrote {args.gif} (input | independent | full, lambda_t {shown['temporal_weight']:g}; "
              f"{size / 1e6:.2f} MB)")
    dev = jax.devices()[0]
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_video-{dev.platform}.json")
    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "device": str(dev),
        "clip": Path(args.clip).name, "frames": len(frames), "size": list(frames[0].shape[:2]),
        "iters_first": args.iters_first, "iters": args.iters, "flow_s": flow_s, "cpu": cpu_info(),
        "input_warping_error": e_in, "reliable_fraction": float(jnp.mean(cons)),
        "runs": [{k: v for k, v in r.items() if k != "outputs"} for r in runs],
    }, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
