#!/usr/bin/env python3
"""Time to an image, end to end: one whole run through the engine, with and without
compilation.

A run of ``--iters`` iterations at ``--size`` px (the bundled cat in the swirls' style,
random weights of the real shapes: timing does not depend on their values) is made
twice in one process: the first time includes tracing and compilation, the second
reuses the compiled programs (the engine caches them). Reported: the wall time of each
(targets, every chunk, the last measurement), the engine's own compile figure, and
s/iteration of the warm run. ``--xla-flags`` are appended to ``XLA_FLAGS`` for this
process (``benchmarks/gpu.sh`` runs it with and without GPU command buffers).

    python benchmarks/bench_run.py --arch vgg19 --size 512 --iters 500 --optimizer lbfgs

Prints a table and writes JSON (default ``benchmarks/results/bench_run-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg19", choices=["vgg16", "vgg19"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--optimizer", default="lbfgs", choices=["adam", "lbfgs", "sgd"])
    ap.add_argument("--precision", default="f32", choices=["f32", "highest", "bf16"])
    ap.add_argument("--report-every", type=int, default=100)
    ap.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX starts")
    ap.add_argument("--lbfgs-history", type=int, default=10)
    ap.add_argument("--lbfgs-linesearch", default="zoom", choices=["zoom", "none"])
    ap.add_argument("--loop", default="fused", choices=["fused", "host"],
                    help="the chunk's form: the compiled loop (the engine's), or a host loop of "
                         "single steps (to measure that choice)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
    from nst_jax.cli import default_xla_flags

    default_xla_flags()
    import jax

    from benchmarks.common import cpu_info
    from nst_jax import vgg
    from nst_jax.config import Config
    from nst_jax.engine import iterate
    from nst_jax.image import load_image

    if args.loop == "host":  # the engine's programs (layout.single_programs) run fused
        from nst_jax import layout

        fused_run = layout.make_run
        layout.make_run = lambda *a, **k: fused_run(*a, **{**k, "fused": False})
    params = vgg.synthetic_params(args.arch, vgg.CHANNELS, seed=0)  # the real shapes
    C = load_image(ROOT / "examples" / "content_chelsea.png", args.size)
    S = load_image(ROOT / "examples" / "style_swirls.png", args.size)
    cfg = Config(iterations=args.iters, optimizer=args.optimizer, precision=args.precision,
                 report_every=args.report_every, lbfgs_history=args.lbfgs_history,
                 lbfgs_linesearch=args.lbfgs_linesearch)
    runs = []
    for label in ("cold (compiles)", "warm (compiled)"):
        t0 = time.perf_counter()
        last = None
        for p in iterate(C, S, params, vgg.CAFFE, config=cfg, key=jax.random.key(0)):
            last = p
        last.image.block_until_ready() if hasattr(last.image, "block_until_ready") else None
        wall = time.perf_counter() - t0
        runs.append({"run": label, "wall_s": wall, "compile_s": last.compile_s, "steps": last.step,
                     "evals": last.evals, "total_cost": float(last.costs["total"]),
                     "s_per_iter": last.run_s / max(1, last.run_steps)})
    dev = jax.devices()[0]
    flags = os.environ.get("XLA_FLAGS", "")
    print(f"device: {dev.platform} {dev.device_kind}, jax {jax.__version__}, {args.arch} {args.size} px, "
          f"{args.optimizer} {args.precision}, {args.iters} iterations, XLA_FLAGS={flags!r}")
    print(f"{'run':18} {'wall s':>8} {'compile s':>9} {'steps':>6} {'evals':>6} {'s/iter':>8} {'J':>10}")
    for r in runs:
        print(f"{r['run']:18} {r['wall_s']:8.2f} {r['compile_s']:9.2f} {r['steps']:6d} {r['evals']:6d} "
              f"{r['s_per_iter']:8.4f} {r['total_cost']:10.4g}")
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_run-{dev.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
        "device": f"{dev.platform} {dev.device_kind}", "cpu": cpu_info(), "xla_flags": flags,
        **settings, "runs": runs}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
