#!/usr/bin/env python3
"""Region fidelity of two-region style transfer, and what regions cost per step.

Fidelity: the bundled rocket (examples/content_rocket.jpg) with the swirls in the
sky (examples/mask_rocket_sky.png) and the mosaic on the rest, one run per style
statistic (``gram``, ``meancov``, ``w2``), real VGG16, through the command line:
the same images as the README's gallery row (``docs/make_gallery.sh`` writes them to
``docs/gallery/regions_<loss>.png``; missing ones are made here, ``--rerun`` remakes
them). Then, for each result, each region ``r`` (the sky mask, its complement) and
each style ``s``, at every style layer ``l``, the distance between the region's
statistics of the result and the whole style image's:

* ``gram``: the lecture's Gram cost ``1/(4 N^2) ||T_s - Gram(m_r F)/sum m_r||^2``
  (:func:`nst_jax.losses.guided_gram_matrix`);
* ``w2``: the Wasserstein-2 distance between Gaussians (per channel) of the
  region's weighted moments and the style's.

A region passes at a layer when its own style is closer than the other by the
margin: ``d(r, other) / d(r, own) >= --margin`` (default 2), for both distances.
The masks are carried to the layers as the run carries them (average pooling).

Cost: seconds per Adam step at 256 and 512 px for each statistic, whole image
without regions and with the two regions (compile excluded), and the ratio of each
statistic's step to the Gram step.

    python benchmarks/bench_regions.py              # ~15 minutes on a 2-core CPU
    python benchmarks/bench_regions.py --no-timing  # fidelity only

Prints tables and writes JSON (default ``benchmarks/results/bench_regions-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import guides as Gu
from nst_jax import losses as L
from nst_jax import statistics as St
from nst_jax import vgg
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.engine import iterate
from nst_jax.image import load_image
from nst_jax.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
default_xla_flags()  # the command-line tools' XLA:CPU flag; read when the backend starts
EX = ROOT / "examples"
CONTENT, MASK = EX / "content_rocket.jpg", EX / "mask_rocket_sky.png"
STYLES = {"swirls": EX / "style_swirls.png", "mosaic": EX / "style_mosaic.png"}
LOSSES = ("gram", "meancov", "w2")


def gallery_command(loss: str, out: Path, size: int, iters: int) -> list[str]:
    """The command of the README's region row (as docs/make_gallery.sh runs it)."""
    return [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(CONTENT),
            f"{STYLES['swirls']}:{MASK}", str(STYLES["mosaic"]), "--style-loss", loss,
            "--size", str(size), "--iters", str(iters), "--overwrite", "--quiet", "-o", str(out)]


def distances(params, spec, image: np.ndarray, size: int, layers: list[str]) -> dict:
    """``{dist: {region: {style: {layer: d}}}}`` for one result image."""
    feats = lambda x: vgg.vgg_features(params, vgg.preprocess(jnp.asarray(x), spec), layers)  # noqa: E731
    fg = feats(image)
    sky = Gu.resize_mask(load_image(MASK).mean(-1), image.shape[:2])
    regions = {"sky": Gu.layer_masks(sky, layers), "ground": Gu.layer_masks(1.0 - sky, layers)}
    fs = {name: feats(load_image(p, size)) for name, p in STYLES.items()}
    out: dict = {"gram": {}, "w2": {}}
    for r, masks in regions.items():
        out["gram"][r], out["w2"][r] = {}, {}
        for s, f in fs.items():
            out["gram"][r][s] = {k: float(L.layer_style_cost_from_gram(
                L.style_target(f[k]), L.guided_gram_matrix(fg[k], masks[k]))) for k in layers}
            out["w2"][r][s] = {k: float(St.w2_from_moments(
                St.stats_target(f[k], "w2"), *St.feature_stats(fg[k], masks[k]))) for k in layers}
    return out


def step_time(params, spec, size: int, loss: str, guided: bool, steps: int) -> float:
    """Seconds per Adam step after the first (compiling) call."""
    content = load_image(CONTENT, size)
    styles = [load_image(p, size) for p in STYLES.values()]
    g = None
    if guided:
        sky = load_image(MASK).mean(-1)
        g = Gu.Guides(regions=np.stack([sky, 1.0 - sky]))
    cfg = Config(iterations=steps, report_every=steps // 2, style_loss=loss)
    p = list(iterate(content, styles, params, spec, config=cfg, guides=g))[-1]
    return p.run_s / p.run_steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--dir", default=str(ROOT / "docs" / "gallery"), help="where the result images are")
    ap.add_argument("--weights", default=str(ROOT / "weights" / "vgg16.h5"))
    ap.add_argument("--margin", type=float, default=2.0)
    ap.add_argument("--rerun", action="store_true", help="remake the images even if present")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-sizes", default="256,512")
    ap.add_argument("--timing-steps", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    params, spec = load_weights(args.weights)
    layers = list(Config().validate(vgg.arch_of(params)).style_layers)
    fidelity: dict = {}
    ok = True
    print(f"region fidelity at {args.size} px, {args.iters} Adam steps: d(region, style) per "
          f"layer; ratio = d(other) / d(own), margin {args.margin:g}")
    print(f"{'run':8} {'dist':5} {'region':7} " + " ".join(f"{k:>8}" for k in layers) + "   min ratio")
    for loss in LOSSES:
        out = Path(args.dir) / f"regions_{loss}.png"
        if args.rerun or not out.exists():
            subprocess.run(gallery_command(loss, out, args.size, args.iters), check=True)
        d = distances(params, spec, load_image(out), args.size, layers)
        fidelity[loss] = {"image": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
                          "distances": d, "ratios": {}}
        for dist in ("gram", "w2"):
            for region, own, other in (("sky", "swirls", "mosaic"), ("ground", "mosaic", "swirls")):
                ratios = {k: d[dist][region][other][k] / d[dist][region][own][k] for k in layers}
                fidelity[loss]["ratios"][f"{dist}/{region}"] = ratios
                worst = min(ratios.values())
                ok &= worst >= args.margin
                print(f"{loss:8} {dist:5} {region:7} " + " ".join(f"{ratios[k]:8.2f}" for k in layers)
                      + f"   {worst:6.2f} {'ok' if worst >= args.margin else 'MISSED'}")
    timing = []
    if not args.no_timing:
        print("\nseconds per Adam step (compile excluded); ratio to the Gram step of the same kind")
        print(f"{'size':>5} {'loss':8} {'whole':>8} {'2 regions':>10} {'regions/whole':>14} "
              f"{'whole/gram':>11}")
        for size in (int(s) for s in args.timing_sizes.split(",")):
            base = {}
            for loss in LOSSES:
                plain = step_time(params, spec, size, loss, False, args.timing_steps)
                reg = step_time(params, spec, size, loss, True, args.timing_steps)
                base.setdefault("gram", plain)
                row = {"size": size, "loss": loss, "whole_s": plain, "regions_s": reg,
                       "regions_vs_whole": reg / plain, "vs_gram": plain / base["gram"]}
                timing.append(row)
                print(f"{size:5d} {loss:8} {plain:8.3f} {reg:10.3f} {reg / plain:14.2f} "
                      f"{plain / base['gram']:11.2f}")
    dev = jax.devices()[0]
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_regions-{dev.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    from benchmarks.common import cpu_info

    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "device": str(dev), "cpu": cpu_info(),
        "size": args.size, "iters": args.iters, "margin": args.margin, "layers": layers,
        "all_regions_within_margin": ok, "fidelity": fidelity, "timing": timing,
    }, indent=1))
    print(f"\n{'every region is closer to its own style by the margin' if ok else 'MARGIN MISSED'}; "
          f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
