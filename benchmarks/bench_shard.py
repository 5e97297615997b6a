#!/usr/bin/env python3
"""One image split by rows over N devices (``--devices``): per-device memory and step time.

For each size, compiles the driver's fused loop (``make_run_fn``, Adam, ``--steps`` steps
per call) twice: X and the optimizer state on one device, and split by rows over every
device (``nst_jax.layout.Layout.by_rows``; XLA's SPMD partitioner places the
activations and inserts the halo exchanges and Gram all-reduces). Reports XLA's buffer
assignment per device (arguments + temporaries + outputs - donated aliases, from
``compiled.memory_analysis()``, which describes one partition), its ratio, and the
median wall time of a step on each.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/bench_shard.py
    python benchmarks/bench_shard.py --sizes 8192 --arch vgg19      # on a multi-GPU host

On virtual CPU devices the N "devices" share the same cores: the time ratio shows the
partitioning's overhead, not a speed-up. Writes JSON (default
``benchmarks/results/bench_shard-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024])
    ap.add_argument("--steps", type=int, default=1, help="steps per timed call")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from nst_jax.cli import default_xla_flags

    default_xla_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nst_jax import vgg
    from nst_jax.config import Config
    from nst_jax.layout import Layout
    from nst_jax.optimize import compute_targets, init_loop_state, make_optimizer, make_run_fn

    devices = jax.devices()
    platform = devices[0].platform
    params = vgg.with_backward_kernels(vgg.synthetic_params(args.arch, vgg.CHANNELS, seed=0))
    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(0)
        C = jnp.asarray(rng.uniform(size=(size, size, 3)), jnp.float32)
        cfg = Config(iterations=args.steps, report_every=args.steps).validate(args.arch)
        targets = compute_targets(params, vgg.CAFFE, C, C, cfg)
        tx = make_optimizer(cfg)
        run = jax.jit(make_run_fn(tx, vgg.CAFFE, args.steps), donate_argnums=(0, 1))
        row = {"arch": args.arch, "size": size, "devices": len(devices), "platform": platform}
        for name, layout in (("one", Layout()), ("rows", Layout.by_rows(devices))):
            state = (jnp.array(C), init_loop_state(tx, C, cfg))  # copies: X and the state are donated
            X, ls = layout.split(state) if layout.rows else state
            p, t = layout.share(params), layout.share(targets)
            n = jnp.int32(args.steps)
            t0 = time.perf_counter()
            compiled = run.lower(X, ls, p, t, cfg, n).compile()
            row[f"{name}_compile_s"] = time.perf_counter() - t0
            m = compiled.memory_analysis()
            row[f"{name}_xla_mb"] = (m.argument_size_in_bytes + m.temp_size_in_bytes
                                     + m.output_size_in_bytes - m.alias_size_in_bytes) / 2**20
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                X, ls, costs, *_ = compiled(X, ls, p, t, cfg, n)
                jax.block_until_ready(costs)
                times.append((time.perf_counter() - t0) / args.steps)
            row[f"{name}_s_per_step"] = statistics.median(times)
            row[f"{name}_x_sharding"] = str(getattr(X.sharding, "spec", X.sharding))
        row["memory_ratio"] = row["rows_xla_mb"] / row["one_xla_mb"]
        row["time_ratio"] = row["rows_s_per_step"] / row["one_s_per_step"]
        rows.append(row)
        print(f"{args.arch} {size} px on {len(devices)} {platform} devices: XLA per device "
              f"{row['rows_xla_mb']:.0f} MB vs one device {row['one_xla_mb']:.0f} MB "
              f"({row['memory_ratio']:.2f}x); step {row['rows_s_per_step']:.2f} s vs "
              f"{row['one_s_per_step']:.2f} s ({row['time_ratio']:.2f}x)")
    out = Path(args.out or Path(__file__).parent / "results" / f"bench_shard-{platform}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    from benchmarks.common import cpu_info

    out.write_text(json.dumps({"cpu": cpu_info(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
