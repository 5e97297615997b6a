#!/usr/bin/env python3
"""The matrix-free matting Laplacian (nst_jax.photo): time of the energy and its gradient,
the memory of its content statistics, against what a sparse ``M_I`` would take.

    python benchmarks/bench_photo.py [--sizes 512 1024 2048] [--out FILE]

A sparse ``M_I`` has a nonzero for every pair of pixels that share a 3x3 window: up to
25 per pixel (a 5x5 neighbourhood); in CSR with float64 values and int32 column indices
that is ``25 N (8 + 4) + 4 (N + 1)`` bytes. The matrix-free form keeps, per pixel, the
nine ``I_i - mu_k`` (27 floats) and ``A_k`` (9 floats): 144 bytes in float32. Prints a
table, writes JSON (default ``benchmarks/results/bench_photo-cpu.json``).
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
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_photo-cpu.json"))
    a = ap.parse_args()
    import jax
    import numpy as np

    from benchmarks.common import cpu_info
    from nst_jax import photo

    rows = []
    rng = np.random.default_rng(0)
    f = jax.jit(jax.value_and_grad(photo.matting_energy))
    for n in a.sizes:
        content = rng.uniform(0, 1, (n, n, 3)).astype(np.float32)
        V = jax.numpy.asarray(rng.uniform(0, 1, (n, n, 3)).astype(np.float32))
        t0 = time.perf_counter()
        stats = photo.matting_stats(content)
        stats_s = time.perf_counter() - t0
        jax.block_until_ready(f(V, stats))  # compile
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(V, stats))
            times.append(time.perf_counter() - t0)
        N = n * n
        stats_bytes = sum(int(v.size) * v.dtype.itemsize for v in stats.values())
        sparse_nnz = 25 * N
        rows.append({"size": n, "stats_s": stats_s, "value_and_grad_s": statistics.median(times),
                     "stats_bytes": stats_bytes, "sparse_nnz_upper": sparse_nnz,
                     "sparse_csr_bytes": sparse_nnz * 12 + 4 * (N + 1)})
        r = rows[-1]
        print(f"{n:>5} px: stats {r['stats_s']:.2f} s, energy+grad {r['value_and_grad_s']:.3f} s, "
              f"stats {r['stats_bytes'] / 2**20:.0f} MiB; a sparse M_I: {sparse_nnz / 1e6:.1f} M nonzeros, "
              f"{r['sparse_csr_bytes'] / 2**20:.0f} MiB (CSR)", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"cpu": cpu_info(), "rows": rows}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
