#!/usr/bin/env python3
"""Memory and time of exact tiling (``--tile``) against the whole image.

Each row runs in a fresh subprocess what ``nst-jax stylize`` runs (the engine: targets
computed, then ``--steps`` Adam iterations, one per compiled call, the first one
compiling), with random weights of the real shapes, a random content and a style image
of the same size (the CLI's default ``--style-scale 1``), and reports:

* ``s/step``: the median wall time of the steps after the first (compiled) one;
* ``targets s``: computing the content and style targets (compiles included);
* ``peak RSS MB``: the whole process's resident high-water mark: imports, weights,
  compiles, targets and the steps: what the machine must have;
* ``before MB``: resident before the run (interpreter, JAX, the weights and images);
* ``first MB``/``steps MB``: the high-water marks through the first report (targets,
  compiles, the first step) and through the later steps;
* ``predicted MB``: ``nst_jax.memory.predict_bytes`` for the row, and its ratio to the
  run's own memory (peak minus before).

    python benchmarks/bench_tile.py                                  # the default table
    python benchmarks/bench_tile.py --rows vgg19:1024:0 vgg19:1024:512 --steps 3
    python benchmarks/bench_tile.py --show benchmarks/results/bench_tile-cpu.json

Rows are ``arch:size:tile[:devices]`` (tile 0: untiled; ``devices`` > 1: the tiles
spread over that many virtual CPU devices, ``Layout.over_tiles``, in one process, so
the process peak holds every device's working set; ``XLA MB/device`` is then XLA's own
figure for one device's share of a value-and-gradient: ``memory_analysis()`` of the
compiled SPMD program, arguments + outputs + temporaries). Writes JSON after every row (default
``benchmarks/results/bench_tile-<platform>.json``), so a long table keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_ROWS = [
    "vgg19:512:0", "vgg19:512:256",
    "vgg19:1024:0", "vgg19:1024:256", "vgg19:1024:384", "vgg19:1024:512", "vgg19:1024:768",
    "vgg19:2048:0", "vgg19:2048:512",
]  # and, with --steps 2 (one timed step: ~8 min each on 2 cores), vgg19:4096:512


def xla_device_bytes(params, C, S, cfg, devices) -> int:
    """XLA's per-device bytes of the tiled value-and-gradient spread over ``devices``."""
    import jax

    from nst_jax import problem, vgg
    from nst_jax.layout import Layout, spread_tiles

    lay = Layout.over_tiles(devices)
    t = lay.share(problem.compute_targets(params, vgg.CAFFE, C, [S], cfg))
    obj = spread_tiles(problem.objective, lay.devices)
    f = jax.jit(jax.value_and_grad(lambda x, p, t: obj(x, p, t, cfg, vgg.CAFFE)[0]))
    m = f.lower(lay.share(C), lay.share(params), t).compile().memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def bench_row(arch: str, size: int, tile: int, steps: int, devices: int = 1) -> dict:
    """One row in this process (see the module docstring)."""
    from benchmarks.common import ProcessMemory
    from nst_jax.cli import default_xla_flags

    default_xla_flags()
    import jax
    import numpy as np

    from nst_jax import memory, vgg
    from nst_jax.config import Config
    from nst_jax.engine import iterate

    params = vgg.synthetic_params(arch, vgg.CHANNELS, seed=0)
    rng = np.random.default_rng(1)
    C = rng.uniform(size=(size, size, 3)).astype(np.float32)
    S = rng.uniform(size=(size, size, 3)).astype(np.float32)
    cfg = Config(iterations=steps, report_every=1, tile=tile)
    from nst_jax.layout import Layout

    layout = Layout.over_tiles(jax.devices()[:devices]) if devices > 1 else Layout()
    mem = ProcessMemory()
    before = mem.reset()
    times, t_prev = [], time.perf_counter()
    t_start = t_prev
    first_yield, peak_first, steps_peak = None, 0, 0
    for p in iterate(C, S, params, vgg.CAFFE, config=cfg, key=jax.random.key(0), layout=layout):
        now = time.perf_counter()
        if first_yield is None:
            first_yield = now - t_start
            peak_first = mem.peak()
            mem.reset()
        else:
            times.append(now - t_prev)
        t_prev = now
        assert np.isfinite(p.costs["total"])
    steps_peak = mem.peak() if times else 0
    # clear_refs resets the kernel's high-water mark (and ru_maxrss with it): the run's
    # peak is the larger of the two phases
    peak = max(peak_first, steps_peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    pred = memory.predict_bytes(arch, size, size, tile=tile, platform=jax.devices()[0].platform)
    xla = xla_device_bytes(params, C, S, cfg.validate(arch), jax.devices()[:devices]) if tile else None
    return {"arch": arch, "size": size, "tile": tile, "steps": steps, "devices": devices,
            "xla_per_device_mb": None if xla is None else xla / 2**20,
            "s_per_step": statistics.median(times) if times else None, "step_times": times,
            "first_s": first_yield, "peak_rss_mb": peak / 2**20, "predicted_mb": pred / 2**20,
            "rss_before_mb": before / 2**20, "first_call_peak_mb": peak_first / 2**20,
            "steps_peak_mb": steps_peak / 2**20,
            "pred_over_meas": pred / (peak - before), "platform": jax.devices()[0].platform}


def show(rows: list[dict]) -> None:
    print(f"{'arch':6} {'size':>5} {'tile':>5} {'dev':>3} {'s/step':>8} {'vs whole':>8} {'first s':>8} "
          f"{'peak RSS MB':>11} {'before MB':>9} {'first MB':>8} {'steps MB':>8} "
          f"{'predicted MB':>12} {'pred/meas':>9} {'XLA MB/device':>13}")
    whole = {(r["arch"], r["size"]): r["s_per_step"]
             for r in rows if r.get("tile") == 0 and r.get("s_per_step") and r.get("devices", 1) == 1}
    for r in rows:
        if "error" in r:
            print(f"{r['arch']:6} {r['size']:>5} {r['tile']:>5}  failed: {r['error']}")
            continue
        ref = whole.get((r["arch"], r["size"]))
        ratio = f"{r['s_per_step'] / ref:.2f}x" if ref and r["s_per_step"] else "-"
        sps = f"{r['s_per_step']:.2f}" if r["s_per_step"] else "-"
        xla = f"{r['xla_per_device_mb']:.0f}" if r.get("xla_per_device_mb") else "-"
        print(f"{r['arch']:6} {r['size']:>5} {r['tile']:>5} {r.get('devices', 1):>3} {sps:>8} {ratio:>8} "
              f"{r['first_s']:>8.1f} {r['peak_rss_mb']:>11.0f} {r['rss_before_mb']:>9.0f} "
              f"{r['first_call_peak_mb']:>8.0f} {r['steps_peak_mb']:>8.0f} {r['predicted_mb']:>12.0f} "
              f"{r['pred_over_meas']:>9.2f} {xla:>13}")


def markdown(rows: list[dict]) -> None:
    """The table as Markdown (for the READMEs); ``predicted`` from the current model."""
    from nst_jax import memory

    whole = {r["size"]: r["s_per_step"] for r in rows if r.get("tile") == 0 and r.get("s_per_step")}
    print("| size | tile | s/step | vs whole | peak RSS GB (whole process) | the run's own (peak - before) | "
          "predicted GB | pred/own |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            continue
        ref = whole.get(r["size"])
        ratio = f"{r['s_per_step'] / ref:.2f}x" if ref else "-"
        pred = memory.predict_bytes(r["arch"], r["size"], r["size"], tile=r["tile"]) / 2**30
        own = (r["peak_rss_mb"] - r["rss_before_mb"]) / 1024
        print(f"| {r['size']} | {r['tile'] or 'whole'} | {r['s_per_step']:.1f} | {ratio} | "
              f"{r['peak_rss_mb'] / 1024:.2f} | {own:.2f} | {pred:.2f} | {pred / own:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="arch:size:tile ...")
    ap.add_argument("--steps", type=int, default=3, help="Adam iterations per row (the first compiles)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per row")
    ap.add_argument("--out", default=None)
    ap.add_argument("--show", default=None, nargs="+", help="print saved JSON tables")
    ap.add_argument("--markdown", action="store_true", help="with --show: as a Markdown table")
    ap.add_argument("--row", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.show:
        rows = [r for f in args.show for r in json.loads(Path(f).read_text())["rows"]]
        (markdown if args.markdown else show)(rows)
        return
    if args.row:
        arch, size, tile, *dev = args.row.split(":")
        print(json.dumps(bench_row(arch, int(size), int(tile), args.steps, int(dev[0]) if dev else 1)))
        return
    out = Path(args.out or Path(__file__).parent / "results" / "bench_tile-cpu.json")
    rows: list[dict] = []
    for spec in args.rows:
        arch, size, tile, *dev = spec.split(":")
        env = dict(os.environ)
        if dev and int(dev[0]) > 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={int(dev[0])}").strip()
        try:
            r = subprocess.run([sys.executable, __file__, "--row", spec, "--steps", str(args.steps)],
                               capture_output=True, text=True, timeout=args.timeout, check=False, env=env)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else
                        {"arch": arch, "size": int(size), "tile": int(tile),
                         "error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]})
        except subprocess.TimeoutExpired:
            rows.append({"arch": arch, "size": int(size), "tile": int(tile), "error": "timeout"})
        show(rows[-1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        from benchmarks.common import cpu_info

        out.write_text(json.dumps({"cpu": cpu_info(), "machine": platform.machine(),
                                   "python": platform.python_version(),
                                   "rows": rows}, indent=1))
    print()
    show(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
