#!/usr/bin/env python3
"""Photo mode's results, measured, and the README's gallery row made from them.

Runs ``nst-jax stylize`` three ways on one photo pair, each a separate process exactly
as a user would (the real VGG16 weights, ``--auto-regions K`` in all three):

- painterly: the default objective;
- photo: ``--photo`` (the matting Laplacian term, from the content);
- photo + smoothing: the photo result after ``--smooth`` (Li et al. 2018's post-pass).

For each result (and the content itself, for reference) it measures:

- ``J_photo``: the matting Laplacian energy of the result per pixel and channel, with
  the content's Laplacian (:func:`nst_jax.photo.photo_cost`; 0 for any locally affine
  colour transform of the content, the content included);
- ``edge_ssim``: the SSIM (7x7 windows) of the result's luminance gradient magnitude
  against the content's: 1 when every edge is where the content has it, as strong;
- ``style_r``: per region, the Gram distance (lecture normalisation, the five default
  layers, weights 0.2) between the result's region and its partner region of the style.

Writes JSON and ``docs/gallery/photo_row.jpg``: content | style | painterly | photo |
photo + smoothing. Photos: ``scripts/fetch_photos.py`` (china.jpg: CC BY 2.0,
scikit-learn's sample images; rocket.jpg: SpaceX, public domain, scikit-image).

    python benchmarks/bench_photo_quality.py [--size 320] [--iters 300] [--regions 3]
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
CONTENT, STYLE = ROOT / "data/photos/heldout/china.jpg", ROOT / "data/photos/train/rocket.jpg"
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def _box(x: np.ndarray, k: int = 7) -> np.ndarray:
    """Mean over ``k x k`` windows (valid), by cumulative sums."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) of two maps over 7x7 windows, constants for a range of 1."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ma, mb = _box(a), _box(b)
    va, vb, cov = _box(a * a) - ma ** 2, _box(b * b) - mb ** 2, _box(a * b) - ma * mb
    return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))))


def grad_mag(rgb: np.ndarray) -> np.ndarray:
    y = rgb @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(y)
    return np.hypot(gy, gx)


def style_distances(img: np.ndarray, style: np.ndarray, pairing, params, spec) -> list[float]:
    """Per region: sum_l 0.2 * Gram cost(result's region, the style's partner region)."""
    import jax.numpy as jnp

    from nst_jax import guides, losses, problem

    fi = problem.vgg_features_rgb(params, spec, jnp.asarray(img), LAYERS, "max")
    fs = problem.vgg_features_rgb(params, spec, jnp.asarray(style), LAYERS, "max")
    out = []
    for m_c, m_s in zip(pairing.content, pairing.style, strict=True):
        mc = guides.layer_masks(jnp.asarray(m_c), LAYERS)
        whole = np.ones(style.shape[:2], np.float32)
        ms = guides.layer_masks(jnp.asarray(whole if m_s is None else m_s), LAYERS)
        d = sum(0.2 * float(losses.layer_style_cost_from_gram(
            losses.guided_gram_matrix(fs[k], ms[k]), losses.guided_gram_matrix(fi[k], mc[k])))
            for k in LAYERS)
        out.append(d)
    return out


def run_variant(name: str, flags: list[str], a: argparse.Namespace, d: Path) -> tuple[Path, float]:
    out = d / f"{name}.png"
    cmd = [sys.executable, "-m", "nst_jax", "stylize", str(CONTENT), str(STYLE), "--size", str(a.size),
           "--iters", str(a.iters), "--auto-regions", str(a.regions), "--quiet", "-o", str(out), *flags]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out, time.perf_counter() - t0


def gallery_row(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    from PIL import Image, ImageDraw

    h = max(p.shape[0] for _, p in panels)
    tiles = []
    for label, p in panels:
        im = Image.fromarray((np.clip(p, 0, 1) * 255).round().astype(np.uint8))
        im = im.resize((round(im.width * h / im.height), h), Image.LANCZOS)
        canvas = Image.new("RGB", (im.width, h + 18), "white")
        canvas.paste(im, (0, 0))
        ImageDraw.Draw(canvas).text((4, h + 3), label, fill="black")
        tiles.append(canvas)
    row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), h + 18), "white")
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    row.save(path, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--regions", type=int, default=3)
    ap.add_argument("--smooth", type=float, default=None, help="default: --smooth's own default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_photo_quality-cpu.json"))
    ap.add_argument("--row", default=str(ROOT / "docs/gallery/photo_row.jpg"))
    a = ap.parse_args()
    import argparse as _ap

    from benchmarks.common import cpu_info
    from nst_jax import image as I
    from nst_jax import photo, weights
    from nst_jax.cli.flags import SMOOTH_WEIGHT
    from nst_jax.cli.photo import find_regions, smooth_result
    from nst_jax.config import Config

    a.smooth = a.smooth or SMOOTH_WEIGHT
    params, spec = weights.load_weights(ROOT / "weights/vgg16.h5")
    C, S = I.load_image(CONTENT, a.size), I.load_image(STYLE, a.size)
    pairing, _ = find_regions(_ap.Namespace(auto_regions=a.regions, seed=0), params, spec,
                              Config().validate("vgg16"), C, S)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        painterly, t_p = run_variant("painterly", [], a, d)
        photo_out, t_ph = run_variant("photo", ["--photo"], a, d)
        images = {"content": C, "painterly": I.load_image(painterly), "photo": I.load_image(photo_out)}
    t0 = time.perf_counter()
    images["photo+smooth"] = smooth_result(images["photo"], C, a.smooth)
    t_sm = time.perf_counter() - t0
    stats = photo.matting_stats(C)
    rows = []
    for name, img in images.items():
        rows.append({"result": name, "J_photo": float(photo.photo_cost(np.asarray(img, np.float32), stats)),
                     "edge_ssim": ssim(grad_mag(img), grad_mag(C)),
                     "style_per_region": style_distances(img, S, pairing, params, spec),
                     "seconds": {"painterly": t_p, "photo": t_ph, "photo+smooth": t_ph + t_sm}.get(name)})
        r = rows[-1]
        print(f"{name:>13}: J_photo {r['J_photo']:.3e}  edge SSIM {r['edge_ssim']:.3f}  style per region "
              + " ".join(f"{v:.3g}" for v in r["style_per_region"])
              + (f"  {r['seconds']:.0f} s" if r["seconds"] else ""), flush=True)
    gallery_row([("content", C), ("style photo", S), ("painterly", images["painterly"]),
                 ("--photo", images["photo"]), ("--photo --smooth", images["photo+smooth"])], Path(a.row))
    shares = [list(map(float, s)) for s in pairing.shares]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"cpu": cpu_info(), "size": a.size, "iters": a.iters, "regions": shares,
                                       "failed": pairing.failed, "smooth": a.smooth, "rows": rows}, indent=1))
    print(f"wrote {a.out} and {a.row}")


if __name__ == "__main__":
    main()
