#!/usr/bin/env python3
"""A crop of a tiled print around where tiles meet, to check for seams by eye.

    python benchmarks/print_crop.py out/print2048.png --tile 512 -o docs/gallery/print_seam.png

Reads the print's metadata (layers, architecture), computes the tile plan the run
used (:func:`nst_jax.tiling.plan_tiles`), and writes a ``SIZE x SIZE`` crop centred on
the boundary between the first and second tile along both axes (the corner where four
tiles' owned cells meet), with the boundaries drawn as thin marks outside the crop's
own pixels (a 6 px frame) so the image itself is untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from PIL import Image

    from nst_jax import image as I
    from nst_jax.tiling import plan_tiles

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("print_png")
    ap.add_argument("--tile", type=int, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    meta = I.read_metadata(a.print_png)
    st = meta["settings"]
    layers = [st["content_layer"], *st["style_layers"]]
    img = I.load_image(a.print_png)
    plan = plan_tiles(img.shape, a.tile, meta["weights"]["architecture"], layers)
    r = plan.row_starts[1] + plan.halo  # where tile 0's owned rows end
    c = plan.col_starts[1] + plan.halo
    h = a.size // 2
    crop = img[max(r - h, 0): r + h, max(c - h, 0): c + h]
    pad = 6
    framed = np.full((crop.shape[0] + 2 * pad, crop.shape[1] + 2 * pad, 3), 1.0, np.float32)
    framed[pad:-pad, pad:-pad] = crop
    y, x = pad + (r - max(r - h, 0)), pad + (c - max(c - h, 0))
    framed[y - 1: y + 1, :pad] = framed[y - 1: y + 1, -pad:] = (1, 0, 0)   # the row boundary
    framed[:pad, x - 1: x + 1] = framed[-pad:, x - 1: x + 1] = (1, 0, 0)   # the column boundary
    Image.fromarray(I.to_uint8(framed)).save(a.output)
    print(json.dumps({"boundary_row": r, "boundary_col": c, "tiles": [plan.rows, plan.cols],
                      "window": plan.window, "halo": plan.halo, "crop": a.output}))


if __name__ == "__main__":
    main()
