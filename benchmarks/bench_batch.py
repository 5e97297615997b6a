#!/usr/bin/env python3
"""Many photos in one style: one vmapped batch against separate runs in one process.

``--photos`` different photos (crops of the bundled examples) at ``--size`` px,
``--iters`` Adam steps each, random weights of the real VGG16 shapes:
  * ``batch``: :func:`nst_jax.batch.stylize_batch` (one compiled program for the set,
    sharded over the devices);
  * ``separate``: :func:`nst_jax.stylize` once per photo, in the same process (its
    compiled programs are cached, so only the first run compiles).
Both are timed end to end (targets, compilation, every step), as a user would see it,
and reported as photos per second.

    python benchmarks/bench_batch.py                 # 16 photos, 128 px, 50 steps

Prints a table and writes JSON (default ``benchmarks/results/bench_batch-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from nst_jax import vgg
from nst_jax.batch import stylize_batch
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.engine import resize, stylize
from nst_jax.image import load_image

ROOT = Path(__file__).resolve().parents[1]
default_xla_flags()  # the command-line tools' XLA:CPU flag; read when the backend starts


def photos(n: int, size: int) -> list[np.ndarray]:
    """``n`` different ``size x size`` crops (and mirror images) of the bundled photos."""
    srcs = [load_image(ROOT / "examples" / f, 2 * size)
            for f in ("content_chelsea.png", "content_rocket.jpg")]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        s = srcs[i % 2]
        y, x = rng.integers(0, s.shape[0] - size), rng.integers(0, s.shape[1] - size)
        crop = s[y:y + size, x:x + size]
        out.append(np.asarray(resize(crop[:, ::-1] if i % 4 >= 2 else crop, (size, size))))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    params = vgg.synthetic_params("vgg16", vgg.CHANNELS, key=jax.random.key(0))
    style = load_image(ROOT / "examples" / "style_swirls.png", args.size)
    imgs = photos(args.photos, args.size)
    cfg = Config(iterations=args.iters, report_every=min(25, args.iters))
    t0 = time.perf_counter()
    res = stylize_batch(imgs, style, params, vgg.CAFFE, config=cfg)
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    singles = [stylize(im, style, params, vgg.CAFFE, config=cfg)[0] for im in imgs]
    sep_s = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(r[0] - s))) for r, s in zip(res, singles, strict=True))
    dev = jax.devices()[0]
    row = {"photos": args.photos, "size": args.size, "iters": args.iters, "devices": len(jax.devices()),
           "batch_s": batch_s, "separate_s": sep_s, "batch_photos_per_s": args.photos / batch_s,
           "separate_photos_per_s": args.photos / sep_s, "speedup": sep_s / batch_s,
           "max_abs_diff": diff}
    print(f"{args.photos} photos, {args.size} px, {args.iters} Adam steps, {len(jax.devices())} "
          f"{dev.platform} device(s)")
    print(f"{'':10} {'seconds':>8} {'photos/s':>9}")
    print(f"{'batch':10} {batch_s:8.1f} {args.photos / batch_s:9.3f}")
    print(f"{'separate':10} {sep_s:8.1f} {args.photos / sep_s:9.3f}")
    print(f"batch / separate throughput: {sep_s / batch_s:.2f}x; largest pixel difference {diff:.2e}")
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_batch-{dev.platform}.json")
    from benchmarks.common import cpu_info

    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "cpu": cpu_info(),
                                "device": str(dev), **row}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
