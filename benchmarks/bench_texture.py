#!/usr/bin/env python3
"""Seamless textures: ``nst-jax texture`` with zero and with circular padding, each
tiled 2x2, and their seam scores (:func:`nst_jax.texture.seam_score`: the mean absolute
gradient across the tile borders over the mean inside; goal <= 1.1 with circular).

Runs the real command line (VGG16, Adam) once per padding, writes JSON and the README's
gallery pair ``docs/gallery/texture_zero.jpg`` / ``texture_circular.jpg`` (each 2x2).

    python benchmarks/bench_texture.py [--size 256] [--iters 300] [--style examples/style_mosaic.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--style", default=str(ROOT / "examples/style_mosaic.png"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_texture-cpu.json"))
    ap.add_argument("--gallery", default=str(ROOT / "docs/gallery"))
    a = ap.parse_args()
    from benchmarks.common import cpu_info
    from nst_jax import image as I
    from nst_jax.texture import seam_score, tile

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for padding in ("zero", "circular"):
            out = Path(d) / f"{padding}.png"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nst_jax", "texture", a.style, "--size", str(a.size),
                            "--iters", str(a.iters), "--padding", padding, "--quiet", "-o", str(out)],
                           check=True, cwd=ROOT)
            img = I.load_image(out)
            secs = time.perf_counter() - t0
            rows.append({"padding": padding, "seam_score": seam_score(img), "seconds": secs})
            print(f"{padding:>9}: seam score {rows[-1]['seam_score']:.3f} ({rows[-1]['seconds']:.0f} s)",
                  flush=True)
            g = Path(a.gallery) / f"texture_{padding}.jpg"
            g.parent.mkdir(parents=True, exist_ok=True)
            I.save_image(g, np.asarray(tile(img), np.float32), {"padding": padding, "tiled": "2x2"},
                         overwrite=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"cpu": cpu_info(), "size": a.size, "iters": a.iters,
                                       "style": Path(a.style).name, "rows": rows}, indent=1))
    print(f"wrote {a.out} and {a.gallery}/texture_{{zero,circular}}.jpg")


if __name__ == "__main__":
    main()
