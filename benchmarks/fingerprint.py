#!/usr/bin/env python3
"""Fingerprints of the library's results: sha256 of the exact float32 pixels of small
runs (Adam, L-BFGS, coarse-to-fine with averaging and tol, luminance mode, a style
blend, a grid), so a refactor can prove it changed nothing.

    python benchmarks/fingerprint.py [--json benchmarks/results/fingerprint.json]

Real weights (``weights/vgg16.h5``) when present, else tiny synthetic ones; CPU; the
same jax/jaxlib version on both sides of a comparison (bitwise equality holds only
within one version). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.grid import stylize_grid
from nst_jax.image import load_image
from nst_jax.optimize import stylize
from nst_jax.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes()).hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "fingerprint.json"))
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    wpath = ROOT / "weights" / "vgg16.h5"
    if wpath.exists():
        params, spec = load_weights(wpath)
        source = "weights/vgg16.h5"
    else:
        params = vgg.synthetic_params("vgg16", (4, 8, 8, 16, 16), key=jax.random.key(0))
        spec, source = vgg.CAFFE, "synthetic"
    C = load_image(ROOT / "examples" / "content_chelsea.png", args.size)
    S = load_image(ROOT / "examples" / "style_swirls.png", args.size)
    M = load_image(ROOT / "examples" / "style_mosaic.png", args.size)
    base = Config(iterations=12, report_every=4)
    runs = {
        "adam": dict(config=base),
        "lbfgs": dict(config=base.replace(optimizer="lbfgs")),
        "scales+avg+tol": dict(config=base.replace(scales=2, avg_decay=0.9, tol=1e-4, tol_window=4)),
        "luminance": dict(config=base.replace(preserve_color="luminance")),
        "blend": dict(config=base, styles=[S, M], style_blend=[0.3, 0.7]),
    }
    rows = []
    for name, kw in runs.items():
        styles = kw.pop("styles", S)
        img, hist = stylize(C, styles, params, spec, key=jax.random.key(1), **kw)
        rows.append({"run": name, "image": _digest(img), "history": _digest(hist["total"])})
    g = stylize_grid(C, S, params, spec, config=base, alphas=[1.0, 10.0], betas=[1e-4, 1e-3],
                     key=jax.random.key(1))
    rows.append({"run": "grid 2x2", "image": _digest(g.images), "history": _digest(g.history)})
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, weights: {source}, {args.size} px")
    print("| run | image sha256[:16] | history sha256[:16] |\n|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['image']} | {r['history']} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from benchmarks.common import cpu_info

    out.write_text(json.dumps({"jax": jax.__version__, "cpu": cpu_info(), "weights": source,
                               "size": args.size, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
