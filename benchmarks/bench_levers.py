#!/usr/bin/env python3
"""Per-step levers, measured in one process, interleaved, from the same state: time
and XLA's buffer assignment (memory is half the verdict: a lever that saves 2% of
the time and costs 27% of the memory is not kept).

A shared VM's speed drifts by up to 20% between minutes, which swamps a few percent
between two separate benchmark runs. Here every variant is compiled first, then the
variants take turns, ``--rounds`` times, each running one chunk of ``--chunk`` steps
from the same start; the median s/step is reported. Variants:

* ``fused``: the CPU driver's chunk (``make_run``: a ``while_loop``);
* ``static``: the GPU/TPU form (``make_run(static_trip=True)``: a ``fori_loop``);
* ``host``: a host loop of single jitted steps (``make_run(fused=False)``);
* ``winograd``: the fused chunk with Winograd kernels for the 512-channel layers
  (``with_backward_kernels(winograd=True)``, what the engine gives XLA:CPU);
* ``old``, ``old_host`` and ``old_static`` (with ``--old-from REV``): the fused chunk,
  the host loop and the fori loop of an earlier ``step.py`` read from git.

``xla_mb``: XLA's buffers of each jitted program (the host loop: its one step;
arguments + outputs + temporaries, less what the outputs alias); ``temp_mb``: the
temporaries alone (where copies of the optimizer state show).

    python benchmarks/bench_levers.py --size 256 --optimizer adam
    python benchmarks/bench_levers.py --size 512 --optimizer lbfgs

Random weights of the real VGG16 shapes, the bundled cat and swirls. Prints JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs"])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--old-from", default=None, metavar="REV")
    ap.add_argument("--lbfgs-history", type=int, default=10)
    ap.add_argument("--lbfgs-linesearch", default="zoom", choices=["zoom", "none"])
    ap.add_argument("--only", nargs="+", default=None, metavar="VARIANT",
                    help="run only these variants (and the old ones with --old-from)")
    args = ap.parse_args()
    from nst_jax.cli import default_xla_flags

    default_xla_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.common import cpu_info
    from nst_jax import step as S
    from nst_jax import vgg as V
    from nst_jax.config import Config
    from nst_jax.image import load_image
    from nst_jax.problem import compute_targets

    raw = V.synthetic_params("vgg16", V.CHANNELS, seed=0)
    params = V.with_backward_kernels(raw)
    C = load_image(ROOT / "examples" / "content_chelsea.png", args.size)
    St = load_image(ROOT / "examples" / "style_swirls.png", args.size)
    cfg = Config(optimizer=args.optimizer, lbfgs_history=args.lbfgs_history,
                 lbfgs_linesearch=args.lbfgs_linesearch).validate("vgg16")
    targets = compute_targets(raw, V.CAFFE, C, St, cfg)
    tx = S.make_optimizer(cfg)
    progs = {"fused": (S.make_run(tx, V.CAFFE, args.chunk), S.init_loop_state, params),
             "static": (S.make_run(tx, V.CAFFE, args.chunk, static_trip=True), S.init_loop_state, params),
             "host": (S.make_run(tx, V.CAFFE, args.chunk, fused=False), S.init_loop_state, params),
             "winograd": (S.make_run(tx, V.CAFFE, args.chunk), S.init_loop_state,
                          V.with_backward_kernels(raw, winograd=True))}
    if args.only:
        progs = {k: v for k, v in progs.items() if k in args.only}
    if args.old_from:
        src = subprocess.run(["git", "show", f"{args.old_from}:nst_jax/step.py"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout
        path = Path(tempfile.mkdtemp()) / "step_old.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("step_old", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        progs["old"] = (old.make_run(tx, V.CAFFE, args.chunk), old.init_loop_state, params)
        progs["old_host"] = (old.make_run(tx, V.CAFFE, args.chunk, fused=False), old.init_loop_state, params)
        progs["old_static"] = (old.make_run(tx, V.CAFFE, args.chunk, static_trip=True), old.init_loop_state,
                               params)

    def call(name: str) -> float:
        run, init, params = progs[name]
        X = jnp.asarray(C)
        state = init(tx, X, cfg)
        t0 = time.perf_counter()
        jax.block_until_ready(run(X, state, params, targets, cfg, jnp.int32(args.chunk)))
        return (time.perf_counter() - t0) / args.chunk

    memory, temp = {}, {}
    for name, (run, init, params) in progs.items():
        call(name)  # compile
        if hasattr(run, "lower"):  # the jitted chunks: XLA's buffer assignment
            X = jnp.asarray(C)
            ma = run.lower(X, init(tx, X, cfg), params, targets, cfg, jnp.int32(args.chunk)).compile(
            ).memory_analysis()
        else:  # the host loop: its one jitted step
            mod = old if name.startswith("old") else S
            X = jnp.asarray(C)
            step = jax.jit(mod._guarded_step(mod.make_step(tx, V.CAFFE)), donate_argnums=(0, 1))
            ma = step.lower(X, init(tx, X, cfg), jnp.bool_(True), params, targets, cfg).compile(
            ).memory_analysis()
        temp[name] = ma.temp_size_in_bytes / 2**20
        memory[name] = (ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes
                        - ma.alias_size_in_bytes) / 2**20
    times: dict[str, list[float]] = {k: [] for k in progs}
    for _ in range(args.rounds):
        for name in progs:
            times[name].append(call(name))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(json.dumps({"size": args.size, "optimizer": args.optimizer, "chunk": args.chunk,
                      "lbfgs_history": args.lbfgs_history, "lbfgs_linesearch": args.lbfgs_linesearch,
                      "rounds": args.rounds, "median_s_per_step": med,
                      "vs_fused": {k: v / med["fused"] for k, v in med.items()} if "fused" in med else None,
                      "xla_mb": memory, "temp_mb": temp,
                      "cpu": cpu_info()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
