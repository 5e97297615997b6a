#!/usr/bin/env python3
"""The matrix-free matting Laplacian (nst_jax.photo): time of the energy and its gradient,
the memory of its content statistics, against what a sparse ``M_I`` would take; with
``--steps``, what the photorealism term adds to an Adam step of the real VGG16 objective
(the same step with ``photo_weight`` 0 and 1e4, interleaved), and with ``--runs``, the
peak memory of whole ``nst-jax stylize --photo`` processes.

    python benchmarks/bench_photo.py [--sizes 512 1024 2048] [--out FILE]
    python benchmarks/bench_photo.py --steps 512 1024 2048:512 [--out FILE]
    python benchmarks/bench_photo.py --runs 1024 1024:512 4096:512 [--out FILE]

``SIZE:TILE`` runs tiled (``--tile TILE``).

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


ROOT = Path(__file__).resolve().parents[1]
CONTENT, STYLE = ROOT / "data/photos/heldout/china.jpg", ROOT / "data/photos/train/rocket.jpg"


def _square_content() -> Path:
    """A square centre crop of the content photo, in the temporary folder."""
    import tempfile

    from PIL import Image

    with Image.open(CONTENT) as im:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        out = Path(tempfile.gettempdir()) / "nst_jax-bench-square.png"
        im.convert("RGB").crop((left, top, left + side, top + side)).save(out)
    return out


def _size_tile(spec: str) -> tuple[int, int]:
    n, _, t = spec.partition(":")
    return int(n), int(t or 0)


def step_rows(specs: list[str], repeats: int) -> list[dict]:
    """Seconds per Adam step with and without the term (each jitted once, interleaved)."""
    from benchmarks.common import interleaved_step_times
    from nst_jax import image as I
    from nst_jax import problem, weights
    from nst_jax.config import PHOTO_WEIGHT, Config

    params, spec = weights.load_weights(ROOT / "weights/vgg16.h5")
    rows = []
    for s in specs:
        n, tile = _size_tile(s)
        C, S = I.load_image(CONTENT, n), I.load_image(STYLE, n)
        cases = {}
        for w in (0.0, PHOTO_WEIGHT):
            cfg = Config(photo_weight=w, tile=tile).validate("vgg16")
            t = problem.compute_targets(params, spec, C, [S], cfg)
            cases[w] = (cfg, problem.photo_targets(t, C, cfg))
        med = interleaved_step_times(params, spec, C, cases, repeats)
        off, on = med[0.0], med[PHOTO_WEIGHT]
        rows.append({"size": f"{C.shape[1]}x{C.shape[0]}", "tile": tile, "step_s": off,
                     "photo_step_s": on, "added": on / off - 1})
        print(f"{s:>10}: {off:.3f} s/step without, {on:.3f} s with the photo term "
              f"({100 * (on / off - 1):+.1f}%)", flush=True)
    return rows


def run_rows(specs: list[str], content: Path = CONTENT) -> list[dict]:
    """Peak resident memory (``/usr/bin/time -v``) of ``nst-jax stylize --photo`` processes,
    2 iterations each; ``--smooth`` too up to 2048 px (its CG at 4096 px takes ~15 min)."""
    import re
    import subprocess
    import tempfile

    rows = []
    for s in specs:
        n, tile = _size_tile(s)
        with tempfile.TemporaryDirectory() as d:
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "nst_jax", "stylize", str(content),
                   str(STYLE), "--photo", *(["--smooth"] if n <= 2048 else []), "--size", str(n),
                   "--iters", "2", "--report-every", "1", "--tile", str(tile), "-o", f"{d}/o.png", "--quiet"]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        peak = int(m.group(1)) * 1024 if m else 0
        rows.append({"size": n, "tile": tile, "smooth": n <= 2048, "rc": r.returncode, "wall_s": wall,
                     "peak_bytes": peak, "stderr_tail": r.stderr[-400:]})
        print(f"{s:>10}: rc {r.returncode}, {wall:.0f} s, peak {peak / 2**30:.2f} GiB", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--steps", nargs="+", default=None, metavar="SIZE[:TILE]")
    ap.add_argument("--runs", nargs="+", default=None, metavar="SIZE[:TILE]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--square", action="store_true",
                    help="--runs on a square centre crop of the content (the goals are for N x N)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_photo-cpu.json"))
    a = ap.parse_args()
    if a.steps or a.runs:
        from benchmarks.common import cpu_info

        out = {"cpu": cpu_info(), "steps": step_rows(a.steps, a.repeats) if a.steps else [],
               "runs": run_rows(a.runs, _square_content() if a.square else CONTENT) if a.runs else []}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {a.out}")
        return
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
