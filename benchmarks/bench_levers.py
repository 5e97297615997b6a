#!/usr/bin/env python3
"""Per-step levers, measured in one process, interleaved, from the same state.

A shared VM's speed drifts by up to 20% between minutes, which swamps a few percent
between two separate benchmark runs. Here every variant is compiled first, then the
variants take turns, ``--rounds`` times, each running one chunk of ``--chunk`` steps
from the same start; the median s/step is reported. Variants:

* ``fused``: the driver's chunk (``make_run``: one ``fori_loop``), the fast-path layers;
* ``host``: a host loop of single jitted steps (``make_run(fused=False)``);
* ``plain-layers``: the fused chunk traced with ``jax.nn.relu`` after the convolution
  and ``jnp.max`` pooling instead of :func:`nst_jax.vgg.conv_relu_pre` and the
  mask-VJP pooling;
* ``while`` (with ``--while-from REV``): the fused chunk of an earlier ``step.py``
  read from git (e.g. the ``while_loop`` version before the static trip count).

    python benchmarks/bench_levers.py --size 256 --optimizer adam
    python benchmarks/bench_levers.py --size 512 --optimizer lbfgs --while-from b2d8168~1

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
    ap.add_argument("--while-from", default=None, metavar="REV")
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
    cfg = Config(optimizer=args.optimizer).validate("vgg16")
    targets = compute_targets(raw, V.CAFFE, C, St, cfg)
    tx = S.make_optimizer(cfg)
    progs = {"fused": (S.make_run(tx, V.CAFFE, args.chunk), S.init_loop_state),
             "host": (S.make_run(tx, V.CAFFE, args.chunk, fused=False), S.init_loop_state)}
    fast = (V.conv_relu_pre, V._max_cells)
    plain = (lambda x, k, kt, b: jax.nn.relu(V.conv3x3_pre(x, k, kt) + b[None, None, :]),
             lambda x: x.max(axis=(1, 3)))
    if args.while_from:
        src = subprocess.run(["git", "show", f"{args.while_from}:nst_jax/step.py"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout
        path = Path(tempfile.mkdtemp()) / "step_old.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("step_old", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        progs["while"] = (old.make_run(tx, V.CAFFE, args.chunk), old.init_loop_state)

    def call(name: str) -> float:
        run, init = progs[name]
        X = jnp.asarray(C)
        state = init(tx, X, cfg)
        t0 = time.perf_counter()
        jax.block_until_ready(run(X, state, params, targets, cfg, jnp.int32(args.chunk)))
        return (time.perf_counter() - t0) / args.chunk

    V.conv_relu_pre, V._max_cells = plain  # traced now, with the plain layers
    progs["plain-layers"] = (S.make_run(tx, V.CAFFE, args.chunk), S.init_loop_state)
    call("plain-layers")
    V.conv_relu_pre, V._max_cells = fast
    for name in progs:
        if name != "plain-layers":
            call(name)  # compile
    times: dict[str, list[float]] = {k: [] for k in progs}
    for _ in range(args.rounds):
        for name in progs:
            times[name].append(call(name))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(json.dumps({"size": args.size, "optimizer": args.optimizer, "chunk": args.chunk,
                      "rounds": args.rounds, "median_s_per_step": med,
                      "vs_fused": {k: v / med["fused"] for k, v in med.items()}, "cpu": cpu_info()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
