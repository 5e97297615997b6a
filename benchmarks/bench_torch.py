#!/usr/bin/env python3
"""nst_jax side by side with a PyTorch reference: the same cost, the same weights.

The reference is the PyTorch tutorial's design done well: VGG features up to the
deepest layer used, channels-last layout, ``torch.optim.Adam`` on the image only, the
cost written exactly as nst_jax's (lecture normalisation, per-pixel Grams). Both run
in this process, interleaved (torch chunk, jax chunk, torch chunk, ...), so machine
noise hits both alike; each row reports medians and the ratio torch/jax (> 1: nst_jax
is faster) and the share of this machine's measured float32 matmul peak.

Before timing, a correctness cross-check: J and dJ/dG at the same image in both, in
float32 (relative difference of the cost and of the gradient).

    pip install torch                       # e.g. torch==2.13.0 (CPU build)
    python benchmarks/bench_torch.py        # VGG16 at 256 and 512 px
    python benchmarks/bench_torch.py --arch vgg19 --sizes 256

Random weights of the real shapes by default (timing does not depend on them);
``--weights weights/vgg16.h5`` uses a converted file. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import _timed, cpu_info, matmul_peak_gflops, step_gflop
from nst_jax import load_weights, vgg
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.optimize import (
    compute_targets,
    init_loop_state,
    make_optimizer,
    make_run,
    objective,
)

default_xla_flags()  # what the command-line tools use; read when the backend starts
CONTENT = "conv4_2"
STYLE = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


class TorchNST:
    """The reference: the same cost in PyTorch, channels-last, Adam on the image."""

    def __init__(self, torch, params, spec, C, S, cfg, lr, device="cpu"):
        self.torch, self.device = torch, device
        t = torch
        self.layers = []
        for name, p in params.items():
            k = t.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()).to(device)
            self.layers.append((name, k.contiguous(memory_format=t.channels_last),
                                t.from_numpy(np.asarray(p["bias"]).copy()).to(device)))
            if name == "conv5_1":
                break
        self.mean = t.tensor(spec.mean, dtype=t.float32, device=device).view(1, 3, 1, 1)
        self.std = t.tensor(spec.std, dtype=t.float32, device=device).view(1, 3, 1, 1)
        self.scale, self.bgr = spec.scale, spec.channel_order == "BGR"
        self.cfg = cfg
        with t.no_grad():
            fc = self.features(self.to_t(C))
            self.content_t = fc[CONTENT]
            fs = self.features(self.to_t(S))
            self.style_t = {k: self.gram(fs[k]) for k in STYLE}
        self.G = self.to_t(C).clone().requires_grad_(True)
        self.opt = t.optim.Adam([self.G], lr=lr)

    def to_t(self, rgb):
        x = self.torch.from_numpy(np.asarray(rgb, np.float32)).permute(2, 0, 1)[None].to(self.device)
        return x.contiguous(memory_format=self.torch.channels_last)

    def features(self, rgb):
        t = self.torch
        x = rgb * self.scale
        if self.bgr:
            x = x.flip(1)
        x = ((x - self.mean) / self.std).contiguous(memory_format=t.channels_last)
        out = {}
        for name, k, b in self.layers:
            if name.endswith("_1") and name != "conv1_1":
                x = t.nn.functional.max_pool2d(x, 2)
            x = t.relu(t.nn.functional.conv2d(x, k, b, padding=1))
            out[name] = x
        return out

    def gram(self, a):
        _, c, h, w = a.shape
        f = a.reshape(c, h * w)
        return (f @ f.T) / (h * w)

    def cost(self, G):
        f = self.features(G)
        a = f[CONTENT]
        _, c, h, w = a.shape
        jc = ((a - self.content_t) ** 2).sum() / (4.0 * h * w * c)
        js = 0.0
        for k, lam in zip(STYLE, self.cfg.style_weights, strict=True):
            c = f[k].shape[1]
            js = js + lam * ((self.gram(f[k]) - self.style_t[k]) ** 2).sum() / (4.0 * c * c)
        return self.cfg.alpha * jc + self.cfg.beta * js

    def steps(self, n):
        for _ in range(n):
            self.opt.zero_grad(set_to_none=True)
            j = self.cost(self.G)
            j.backward()
            self.opt.step()
            with self.torch.no_grad():
                self.G.clamp_(0.0, 1.0)
        return float(j.detach())


#: Cross-check tolerances (float32 in both; different summation orders).
MAX_REL_COST, MAX_REL_GRAD = 1e-4, 1e-3
#: On a GPU both libraries' default float32 convolutions may use TF32 (10-bit mantissa,
#: about 1e-3 relative per product), so the check there is looser and reported, not fatal.
MAX_REL_COST_GPU, MAX_REL_GRAD_GPU = 1e-2, 5e-2


def cross_check(torch, params, spec, C, S, cfg, G0, device="cpu") -> tuple[float, float]:
    """Relative differences of J and of dJ/dG between nst_jax and the PyTorch
    reference at the image ``G0``."""
    targets = compute_targets(params, spec, C, S, cfg)
    jparams = vgg.with_backward_kernels(params)
    jj, gj = jax.value_and_grad(lambda g: objective(g, jparams, targets, cfg, spec)[0])(
        jnp.asarray(G0))
    ref = TorchNST(torch, params, spec, C, S, cfg, cfg.learning_rate, device)
    gt = ref.to_t(G0).clone().requires_grad_(True)
    jt = ref.cost(gt)
    jt.backward()
    gtn = gt.grad[0].permute(1, 2, 0).cpu().numpy()
    rel_j = abs(float(jt.detach()) - float(jj)) / abs(float(jj))
    rel_g = float(np.linalg.norm(gtn - np.asarray(gj)) / np.linalg.norm(np.asarray(gj)))
    return rel_j, rel_g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["vgg16"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed chunk")
    ap.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"],
                    help="where the reference runs (cuda: against nst_jax on its default GPU)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("error: the reference needs PyTorch: pip install torch (CPU build)", file=sys.stderr)
        return 2
    dev = args.torch_device
    if dev == "cuda" and not torch.cuda.is_available():
        print("error: --torch-device cuda, but this PyTorch sees no GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(os.cpu_count() or 1)
    # the CPU's matmul rate: the % peak columns mean something only when both run on the CPU
    peak = matmul_peak_gflops() if dev == "cpu" else float("nan")
    max_j, max_g = (MAX_REL_COST, MAX_REL_GRAD) if dev == "cpu" else (MAX_REL_COST_GPU, MAX_REL_GRAD_GPU)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__} on {dev} "
          f"({torch.get_num_threads()} threads); measured f32 matmul peak {peak:.0f} GFLOP/s")
    rows = []
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"bench_torch-{jax.devices()[0].platform}.json")

    def write() -> None:  # after every row: a later row that fails or runs out of time costs only itself
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
                                    "cpu": cpu_info(), "torch": torch.__version__, "torch_device": dev,
                                    "matmul_peak_gflops": peak if dev == "cpu" else None,
                                    "cpus": os.cpu_count(), "rows": rows}, indent=1))

    hdr = (f"{'arch':6} {'size':>5} {'torch s/step':>12} {'jax s/step':>10} {'torch/jax':>9} "
           f"{'GFLOP/step':>10} {'jax %peak':>9} {'torch %peak':>11} {'rel dJ':>8} {'rel dgrad':>9}")
    print(hdr)
    print("-" * len(hdr))
    for arch in args.arch:
        if args.weights:
            params, spec = load_weights(args.weights)
        else:
            params, spec = vgg.synthetic_params(arch, vgg.CHANNELS, key=jax.random.key(0)), vgg.CAFFE
        jparams = vgg.with_backward_kernels(params)  # as the driver (optimize.iterate) does
        for size in args.sizes:
            rng = np.random.default_rng(size)
            C = rng.uniform(0.2, 0.8, (size, size, 3)).astype(np.float32)
            S = rng.uniform(0.0, 1.0, (size, size, 3)).astype(np.float32)
            cfg = Config(report_every=args.steps, iterations=args.steps).validate(arch)
            targets = compute_targets(params, spec, C, S, cfg)
            ref = TorchNST(torch, params, spec, C, S, cfg, cfg.learning_rate, dev)
            # correctness: J and dJ/dG at the same image, asserted
            G0 = rng.uniform(0, 1, C.shape).astype(np.float32)
            rel_j, rel_g = cross_check(torch, params, spec, C, S, cfg, G0, dev)
            if rel_j > max_j or rel_g > max_g:
                print(f"error: {arch} {size} px: nst_jax and the reference differ (relative cost "
                      f"{rel_j:.1e} > {max_j:g} or gradient {rel_g:.1e} > {max_g:g})",
                      file=sys.stderr)
                return 1
            # timing, interleaved
            tx = make_optimizer(cfg)
            run = make_run(tx, spec, args.steps)
            X = jnp.asarray(C)
            ls = init_loop_state(tx, X, cfg)
            out = jax.block_until_ready(run(X, ls, jparams, targets, cfg, jnp.int32(args.steps)))
            X, ls = out[0], out[1]
            ref.steps(1)  # warm-up
            tt, tj = [], []
            for _ in range(args.rounds):
                tt.append(_timed(lambda: ref.steps(args.steps)) / args.steps)  # noqa: B023
                t0 = time.perf_counter()
                out = jax.block_until_ready(run(X, ls, jparams, targets, cfg, jnp.int32(args.steps)))
                tj.append((time.perf_counter() - t0) / args.steps)
                X, ls = out[0], out[1]
            st, sj = statistics.median(tt), statistics.median(tj)
            gf = step_gflop(arch, size)
            r = {"arch": arch, "size": size, "torch_s_per_step": st, "jax_s_per_step": sj,
                 "torch_over_jax": st / sj, "gflop_per_step": gf,
                 # JSON has no NaN: no % peak when the reference is on a GPU
                 "jax_pct_peak": 100 * gf / sj / peak if dev == "cpu" else None,
                 "torch_pct_peak": 100 * gf / st / peak if dev == "cpu" else None,
                 "rel_cost_diff": rel_j, "rel_grad_diff": rel_g}
            rows.append(r)
            write()
            print(f"{arch:6} {size:5d} {st:12.3f} {sj:10.3f} {st / sj:9.2f} {gf:10.1f} "
                  f"{100 * gf / sj / peak:8.0f}% {100 * gf / st / peak:10.0f}% {rel_j:8.1e} {rel_g:9.1e}",
                  flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
