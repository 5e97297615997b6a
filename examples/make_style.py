#!/usr/bin/env python3
"""Make the bundled style images (deterministic, seeded; CC0 with this script).

examples/style_swirls.png: a painting-like image of swirling brush strokes.

Thousands of short strokes follow a flow field made of a few vortices, coloured
from a night-sky palette (deep blues, teal, warm yellow), drawn on a dark ground
with slightly varying width and brightness, which gives the thick, directional
texture that style transfer picks up well. Deterministic (seeded); released CC0
together with this script.

examples/style_mosaic.png: a stained-glass mosaic of warm and red cells with dark
leading, a second, very different style for the blending examples.

    python examples/make_style.py            # writes both
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 512, 400
PALETTE = np.array([
    (18, 38, 92), (30, 64, 140), (52, 98, 170), (88, 140, 196), (40, 120, 130),
    (230, 196, 70), (246, 222, 120), (200, 140, 40), (12, 22, 54), (150, 190, 220),
], dtype=np.float64)


def flow(x: np.ndarray, y: np.ndarray, vortices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction field: a sum of vortices plus a gentle horizontal drift."""
    u = np.full_like(x, 0.6)
    v = 0.15 * np.sin(x / 40.0)
    for cx, cy, s, r in vortices:
        dx, dy = x - cx, y - cy
        d2 = dx * dx + dy * dy + 1.0
        k = s * np.exp(-d2 / (2 * r * r)) * r / np.sqrt(d2)
        u += -dy / np.sqrt(d2) * k * 3
        v += dx / np.sqrt(d2) * k * 3
    n = np.hypot(u, v) + 1e-9
    return u / n, v / n


def main() -> None:
    rng = np.random.default_rng(7)
    vortices = np.array([(150, 130, 1.0, 90), (360, 110, -0.8, 70), (420, 300, 1.0, 80),
                         (120, 320, -0.7, 60), (270, 220, 0.9, 50)])
    img = Image.new("RGB", (W, H), (14, 26, 64))
    draw = ImageDraw.Draw(img)
    for _ in range(9000):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        # Warm strokes near the vortex centres ("stars"), cool ones elsewhere.
        dmin = min(np.hypot(x - cx, y - cy) / r for cx, cy, _, r in vortices)
        warm = rng.random() < np.exp(-3 * dmin)
        base = PALETTE[rng.choice([5, 6, 7])] if warm else PALETTE[rng.choice([0, 1, 2, 3, 4, 8, 9])]
        col = tuple(int(c) for c in np.clip(base * rng.uniform(0.8, 1.15), 0, 255))
        pts = [(x, y)]
        for _ in range(int(rng.integers(6, 16))):
            u, v = flow(np.array(x), np.array(y), vortices)
            x, y = x + 3.0 * float(u), y + 3.0 * float(v)
            pts.append((x, y))
        draw.line(pts, fill=col, width=int(rng.integers(2, 6)), joint="curve")
    img = img.filter(ImageFilter.SMOOTH_MORE)
    out = Path(__file__).with_name("style_swirls.png")
    img.save(out, optimize=True)
    print(f"wrote {out}")
    mosaic()


def mosaic() -> None:
    """Voronoi cells in a warm palette, outlined in dark 'lead', lightly textured."""
    rng = np.random.default_rng(11)
    h, w = 400, 512
    pts = rng.uniform(0, 1, (260, 2)) * [h, w]
    palette = np.array([(196, 48, 36), (232, 128, 40), (244, 196, 72), (150, 30, 60),
                        (90, 140, 60), (240, 230, 200), (60, 40, 30)], np.float64)
    cols = palette[rng.integers(0, len(palette), len(pts))] * rng.uniform(0.8, 1.1, (len(pts), 1))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    order = np.argsort(d, axis=-1)[..., :2]
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    img = cols[order[..., 0]]
    edge = (np.sqrt(d2) - np.sqrt(d1)) < 2.5
    img[edge] = (25, 20, 18)
    img = img * rng.uniform(0.93, 1.07, (h, w, 1))
    out = Path(__file__).with_name("style_mosaic.png")
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
        ImageFilter.SMOOTH).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
