#!/usr/bin/env python3
"""Time to a good image for the README demo: settings against wall time and the cost J.

Each variant is the demo's command (``scripts/stylize.py`` on the bundled cat and
swirls, 256 px) with other flags, run as the user runs it: a fresh process, so the
wall time includes start-up, loading the weights and compilation. Every saved PNG
is then scored by one evaluator, J = alpha J_content + beta J_style (+ tv) of the
default objective at 256 px (:func:`nst_jax.problem.evaluate`, the real VGG16, the
defaults' alpha = 1, beta = 1e-4, lecture normalisation), so variants that optimise
at other sizes (coarse-to-fine) are judged on the same objective. Runs are
interleaved over ``--rounds`` (the machine's speed drifts); the best wall time of
each variant is kept.

    python benchmarks/bench_demo.py                     # the variants below, 2 rounds
    python benchmarks/bench_demo.py --variants "adam300=--iters 300" "l100=--optimizer lbfgs --iters 100"

Prints a table and writes JSON (default ``benchmarks/results/bench_demo-cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [
    "adam300=--iters 300",                                            # the demo until now
    "scales2-adam=--scales 2 --iters 150",
    "lbfgs100=--optimizer lbfgs --iters 100",
    "scales2-lbfgs=--scales 2 --optimizer lbfgs --iters 60",
]


def run_variant(flags: str, out: Path) -> float:
    ex = ROOT / "examples"
    cmd = [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(ex / "content_chelsea.png"),
           str(ex / "style_swirls.png"), "--size", "256", "--quiet", "-o", str(out),
           *shlex.split(flags)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=VARIANTS, metavar="NAME=FLAGS")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_demo-cpu.json"))
    args = ap.parse_args()
    from benchmarks.common import cpu_info
    from nst_jax.config import Config
    from nst_jax.image import load_image
    from nst_jax.problem import evaluate
    from nst_jax.weights import find_weights, load_weights

    variants = dict(v.split("=", 1) for v in args.variants)
    rows: dict[str, dict] = {name: {"flags": f, "wall_s": []} for name, f in variants.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, flags in variants.items():
                out = Path(tmp) / f"{name}-{r}.png"
                rows[name]["wall_s"].append(run_variant(flags, out))
                rows[name]["image"] = out
                print(f"round {r + 1}: {name:16} {rows[name]['wall_s'][-1]:6.1f} s", flush=True)
        wpath = find_weights()
        params, spec = load_weights(wpath)
        C = load_image(ROOT / "examples" / "content_chelsea.png", 256)
        S = load_image(ROOT / "examples" / "style_swirls.png", 256)
        for row in rows.values():
            costs = evaluate(load_image(row.pop("image")), C, S, params, spec, Config())
            row.update(best_wall_s=min(row["wall_s"]), J=costs["total"], content=costs["content"],
                       style=costs["style"])
    base = next(iter(rows.values()))
    print(f"\n{'variant':16} {'flags':48} {'best s':>7} {'J':>10} {'J / first':>9}")
    for name, r in rows.items():
        r["J_vs_first"] = r["J"] / base["J"]
        print(f"{name:16} {r['flags']:48} {r['best_wall_s']:7.1f} {r['J']:10.4g} {r['J_vs_first']:9.3f}")
    Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_info(),
                                           "weights": str(wpath), "rows": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
