#!/usr/bin/env python3
"""Quality measurements with real weights on the bundled examples.

1. Adam vs L-BFGS at the same number of cost+gradient evaluations (``--evals``, at
   ``--size`` px): the final total cost of each.
2. Resolution-aware weights: with the default settings, the content/style balance
   ``alpha J_content / (beta J_style)`` at the end of a run at each of ``--sizes``.

    python benchmarks/quality.py                          # weights/vgg16.h5 (or vgg19)
    python benchmarks/quality.py --sizes 128 256 --evals 100

Prints tables and writes JSON (default ``benchmarks/results/quality-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax

from nst_jax import Config, load_weights, stylize
from nst_jax.image import load_image
from nst_jax.weights import find_weights

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--size", type=int, default=256, help="size of the Adam/L-BFGS comparison")
    ap.add_argument("--evals", type=int, default=300)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--iters", type=int, default=200, help="Adam iterations of the balance runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    wpath = find_weights(args.weights)
    params, spec = load_weights(wpath)
    content_path = ROOT / "examples" / "content_chelsea.png"
    style_path = ROOT / "examples" / "style_swirls.png"
    out: dict = {"weights": str(wpath), "date": time.strftime("%Y-%m-%d"),
                 "device": str(jax.devices()[0])}

    C = load_image(content_path, args.size)
    S = load_image(style_path, args.size)
    t0 = time.perf_counter()
    _, adam = stylize(C, S, params, spec, config=Config(iterations=args.evals))
    t_adam = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, lb = stylize(C, S, params, spec,
                    config=Config(optimizer="lbfgs", iterations=args.evals, report_every=1),
                    callback=lambda p: p.evals >= args.evals)
    t_lb = time.perf_counter() - t0
    cmp = {
        "size": args.size, "evals": args.evals,
        "adam": {"total": adam["costs"]["total"], "evals": adam["evals"], "steps": adam["steps"],
                 "wall_s": t_adam, **adam["costs"]},
        "lbfgs": {"total": lb["costs"]["total"], "evals": lb["evals"], "steps": lb["steps"],
                  "wall_s": t_lb, **lb["costs"]},
    }
    out["adam_vs_lbfgs"] = cmp
    print(f"Adam vs L-BFGS, {args.size} px, {args.evals} evaluations ({wpath.name})")
    print(f"{'optimizer':10} {'evals':>6} {'iters':>6} {'J total':>10} {'J content':>10} "
          f"{'J style':>10} {'wall s':>7}")
    for name in ("adam", "lbfgs"):
        r = cmp[name]
        print(f"{name:10} {r['evals']:6d} {r['steps']:6d} {r['total']:10.4g} {r['content']:10.4g} "
              f"{r['style']:10.4g} {r['wall_s']:7.1f}")

    # bf16 vs f32: same run, final cost and pixel difference
    C = load_image(content_path, args.size)
    S = load_image(style_path, args.size)
    res = {}
    for prec in ("f32", "bf16"):
        res[prec] = stylize(C, S, params, spec, config=Config(iterations=args.evals, precision=prec))
    (i32, h32), (i16, h16) = res["f32"], res["bf16"]
    rel = (h16["costs"]["total"] - h32["costs"]["total"]) / h32["costs"]["total"]
    diff = float(abs(i16 - i32).mean())
    out["bf16_vs_f32"] = {"size": args.size, "steps": args.evals, "f32_total": h32["costs"]["total"],
                          "bf16_total": h16["costs"]["total"], "rel_cost_diff": rel,
                          "mean_abs_pixel_diff": diff,
                          "f32_s_per_step": h32["run_s"] / max(1, args.evals - 25),
                          "bf16_s_per_step": h16["run_s"] / max(1, args.evals - 25)}
    print(f"\nbf16 vs f32, {args.size} px, {args.evals} Adam steps: J f32 {h32['costs']['total']:.4g}, "
          f"bf16 {h16['costs']['total']:.4g} ({100 * rel:+.2f}%), mean |pixel diff| {diff:.4f} "
          f"(of 1); s/step f32 {out['bf16_vs_f32']['f32_s_per_step']:.3f}, "
          f"bf16 {out['bf16_vs_f32']['bf16_s_per_step']:.3f}")

    rows = []
    cfg = Config(iterations=args.iters)
    print(f"\ncontent/style balance with the defaults (alpha={cfg.alpha:g}, beta={cfg.beta:g}, "
          f"{args.iters} Adam steps)")
    print(f"{'size':>5} {'alpha*Jc':>10} {'beta*Js':>10} {'ratio':>7}")
    for size in args.sizes:
        C = load_image(content_path, size)
        S = load_image(style_path, size)
        _, h = stylize(C, S, params, spec, config=cfg)
        ac, bs = cfg.alpha * h["costs"]["content"], cfg.beta * h["costs"]["style"]
        rows.append({"size": size, "alpha_Jc": ac, "beta_Js": bs, "ratio": ac / bs})
        print(f"{size:5d} {ac:10.4g} {bs:10.4g} {ac / bs:7.3f}")
    out["balance"] = rows
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"quality-{jax.devices()[0].platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    from benchmarks.common import cpu_info

    path.write_text(json.dumps({**out, "cpu": cpu_info()}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
