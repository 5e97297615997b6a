#!/usr/bin/env python3
"""One vmapped program for a grid of loss weights versus sequential runs.

A grid of ``--points`` (alpha, beta) points at ``--size`` px, ``--iters`` Adam steps:
  * ``vmapped``: ``nst_jax.grid.stylize_grid`` (one compiled program, sharded over devices);
  * ``sequential``: ``nst_jax.stylize`` once per point.
Compilation is excluded on both sides: each reports the time of its compiled calls
after the first (per step, scaled to ``--iters``).
Reports wall time (compile excluded for both) and XLA's memory estimate of each
compiled program. Random weights of the real VGG16 shapes.

    python benchmarks/bench_grid.py                  # 16 points, 128 px, 100 steps
    python benchmarks/bench_grid.py --size 256       # (the GPU target)

Prints a table and writes JSON (default ``benchmarks/results/bench_grid-<platform>.json``).
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
from nst_jax.config import Config
from nst_jax.grid import stylize_grid
from nst_jax.optimize import stylize


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    params = vgg.synthetic_params(args.arch, vgg.CHANNELS, key=jax.random.key(0))
    k1, k2 = jax.random.split(jax.random.key(1))
    C = np.asarray(jax.random.uniform(k1, (args.size, args.size, 3)))
    S = np.asarray(jax.random.uniform(k2, (args.size, args.size, 3)))
    side = int(np.ceil(np.sqrt(args.points)))
    alphas = list(np.logspace(-1, 1, side))
    betas = list(np.logspace(-5, -3, -(-args.points // side)))
    cfg = Config(iterations=args.iters, report_every=max(1, args.iters // 10))

    # Both sides report iteration time after their first compiled call (which includes
    # compilation): per-step time over the remaining calls, times the iteration count.
    res = stylize_grid(C, S, params, vgg.CAFFE, config=cfg, alphas=alphas, betas=betas)
    n = len(res.points)
    per_call = cfg.report_every
    grid_iter = res.run_s / (args.iters - per_call) * args.iters
    seq = 0.0
    for pt in res.points:
        _, hist = stylize(C, S, params, vgg.CAFFE, config=cfg.replace(**pt))
        seq += hist["run_s"] / (args.iters - per_call) * args.iters
    wall_grid = res.compile_s + res.run_s
    from nst_jax import memory

    mem_grid = memory.predict_bytes(args.arch, args.size, args.size, points=n) / 2**20
    mem_seq = memory.predict_bytes(args.arch, args.size, args.size, points=1) / 2**20
    dev = jax.devices()[0]
    row = {
        "points": n, "size": args.size, "iters": args.iters, "arch": args.arch,
        "devices": len(jax.devices()), "device": f"{dev.platform} {dev.device_kind}",
        "vmapped_s": grid_iter, "vmapped_first_call_s": wall_grid,
        "sequential_s": seq, "speedup": seq / grid_iter,
        "vmapped_peak_mb_predicted": mem_grid, "sequential_peak_mb_predicted": mem_seq,
    }
    print(f"device: {row['device']} x{row['devices']}, jax {jax.__version__}")
    print(f"{'points':>6} {'size':>5} {'iters':>5} {'vmapped s':>10} {'sequential s':>13} "
          f"{'speed-up':>9} {'vmapped MB':>10} {'sequential MB':>13}")
    print(f"{n:6d} {args.size:5d} {args.iters:5d} {grid_iter:10.1f} {seq:13.1f} "
          f"{seq / grid_iter:9.2f} {mem_grid:10.0f} {mem_seq:13.0f}")
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"bench_grid-{dev.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    from benchmarks.common import cpu_info

    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "cpu": cpu_info(),
                                **row}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
