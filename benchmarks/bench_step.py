#!/usr/bin/env python3
"""Seconds per iteration, compile time and memory of the style-transfer step.

For each (arch, size, optimizer) it times
  * ``single``: one jitted ``step`` per Python call (what a naive loop does), and
  * ``fused``:  ``make_run``'s compiled while_loop of ``--chunk`` steps per call
    (what ``stylize`` uses),
reporting the median over ``--repeats`` calls after a warm-up, the compile time, and
XLA's own memory analysis of the compiled fused program (arguments + temporaries).
Random weights of the real shapes are used (timing does not depend on the values).

    python benchmarks/bench_step.py                       # the default grid
    python benchmarks/bench_step.py --sizes 256 --arch vgg16 --plain-conv   # before/after
    python benchmarks/bench_step.py --json out.json

Prints a table and writes JSON (default ``benchmarks/results/bench_step-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.optimize import (
    compute_targets,
    init_loop_state,
    make_optimizer,
    make_run,
    make_step,
)


def _block(x):
    return jax.block_until_ready(x)


def bench_one(arch: str, size: int, optimizer: str, repeats: int, chunk: int,
              precision: str = "f32") -> dict:
    params = vgg.synthetic_params(arch, vgg.CHANNELS, key=jax.random.key(0))
    spec = vgg.CAFFE
    k1, k2 = jax.random.split(jax.random.key(1))
    C = jax.random.uniform(k1, (size, size, 3))
    S = jax.random.uniform(k2, (size, size, 3))
    cfg = Config(optimizer=optimizer, iterations=chunk, report_every=chunk,
                 precision=precision).validate(arch)
    targets = compute_targets(params, spec, C, S, cfg)
    tx = make_optimizer(cfg)

    def fresh():
        G = C + 0.0
        return G, jax.tree.map(lambda x: jnp.array(x, copy=True), tx.init(G))

    # single jitted steps
    step = jax.jit(make_step(tx, spec), donate_argnums=(0, 1))
    G, s = fresh()
    t0 = time.perf_counter()
    G, s, _ = _block(step(G, s, params, targets, cfg))
    compile_single = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        G, s, _ = _block(step(G, s, params, targets, cfg))
        times.append(time.perf_counter() - t0)
    single = statistics.median(times)

    # fused loop
    run = make_run(tx, spec, chunk)
    G, _ = fresh()
    s = init_loop_state(tx, G, cfg)
    n = jnp.int32(chunk)
    t0 = time.perf_counter()
    lowered = run.lower(G, s, params, targets, cfg, n)
    compiled = lowered.compile()
    compile_fused = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    mem_mb = None
    if mem is not None:
        mem_mb = (mem.argument_size_in_bytes + mem.temp_size_in_bytes
                  + mem.output_size_in_bytes - mem.alias_size_in_bytes) / 2**20
    flops = None
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        flops = float(ca.get("flops", 0.0)) or None
    except Exception:  # cost analysis is best-effort across backends
        flops = None
    out = _block(run(G, s, params, targets, cfg, n))  # warm-up
    G, s = out[0], out[1]
    times = []
    evals = []
    for _ in range(max(1, repeats // chunk) if chunk > 1 else repeats):
        t0 = time.perf_counter()
        out = _block(run(G, s, params, targets, cfg, n))
        times.append((time.perf_counter() - t0) / chunk)
        evals.append(int(out[3]) / chunk)
        G, s = out[0], out[1]
    fused = statistics.median(times)
    return {
        "arch": arch, "size": size, "optimizer": optimizer, "chunk": chunk, "precision": precision,
        "single_s_per_step": single, "fused_s_per_step": fused,
        "fused_vs_single": fused / single, "evals_per_step": statistics.median(evals),
        "driver_path": "single" if optimizer == "lbfgs" else "fused",
        "driver_s_per_step": single if optimizer == "lbfgs" else fused,
        "compile_single_s": compile_single, "compile_fused_s": compile_fused,
        "xla_memory_mb": mem_mb, "xla_flops_per_call": flops,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["vgg16", "vgg19"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--optimizers", nargs="+", default=["adam", "lbfgs"])
    ap.add_argument("--precisions", nargs="+", default=["f32"], choices=["f32", "bf16"])
    ap.add_argument("--repeats", type=int, default=6, help="timed single steps (fused: same count of steps)")
    ap.add_argument("--chunk", type=int, default=3, help="steps per fused call")
    ap.add_argument("--plain-conv", action="store_true",
                    help="use lax.conv's own autodiff instead of the custom input-gradient (before/after)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.plain_conv:
        vgg.conv3x3 = vgg._conv  # the 'before' of the custom VJP
    dev = jax.devices()[0]
    rows = []
    hdr = (f"{'arch':6} {'size':>5} {'opt':6} {'prec':4} {'single s/step':>13} {'fused s/step':>12} "
           f"{'fused/single':>12} {'driver':>6} {'evals/step':>10} {'compile s':>9} {'XLA MB':>8}")
    print(f"device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}, "
          f"conv VJP: {'plain' if args.plain_conv else 'custom'}")
    print(hdr)
    print("-" * len(hdr))
    for arch in args.arch:
        for size in args.sizes:
            for opt, prec in [(o, p) for o in args.optimizers for p in args.precisions]:
                r = bench_one(arch, size, opt, args.repeats, args.chunk, prec)
                rows.append(r)
                mem = f"{r['xla_memory_mb']:8.0f}" if r["xla_memory_mb"] is not None else "       -"
                print(f"{arch:6} {size:5d} {opt:6} {prec:4} {r['single_s_per_step']:13.3f} "
                      f"{r['fused_s_per_step']:12.3f} {r['fused_vs_single']:12.2f} {r['driver_path']:>6} "
                      f"{r['evals_per_step']:10.1f} {r['compile_fused_s']:9.1f} {mem}", flush=True)
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"bench_step-{dev.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "device": f"{dev.platform} {dev.device_kind}",
        "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
        "jax": jax.__version__, "conv_vjp": "plain" if args.plain_conv else "custom",
        "rows": rows,
    }, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
