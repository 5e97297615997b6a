#!/usr/bin/env python3
"""Seconds per iteration, compile time, memory and FLOP rate of the style-transfer step.

One command runs the grid (VGG16/VGG19 x 256/512/1024 px x Adam/L-BFGS x f32/bf16 by
default) and, for each row, in a fresh subprocess so that rows cannot disturb each
other's memory:
  * ``single``: one jitted ``step`` per Python call (what a naive loop does), and
  * ``fused``:  ``make_run``'s compiled while_loop of ``--chunk`` steps per call;
  * ``driver``: the one of the two that ``stylize`` uses (fused, for every optimizer since
    2026-12-01; L-BFGS ran single steps on CPU before);
reporting medians over the timed calls after a warm-up, the compile time of the fused
program, the evaluations of J per iteration (L-BFGS: its line search), the achieved
GFLOP/s of the driver path (analytic FLOPs, ``benchmarks/common.step_gflop``) as a share
of this machine's measured float32 matmul peak, and three memory figures:
  * ``XLA MB``: XLA's buffer assignment of the compiled fused program;
  * ``measured MB``: the process's resident high-water mark during the driver's timed
    calls above the resident size just before them, plus the bytes of the program's
    arguments (weights, targets, image, optimizer state) already resident then;
  * ``predicted MB``: ``nst_jax.memory.predict_bytes`` for the row (what the CLI's
    refusal uses), and its ratio to the measurement.
Random weights of the real shapes (timing does not depend on the values). Rows at
>= 1024 px time half as many steps, 2 per fused call.

    python benchmarks/bench_step.py                                  # the full grid
    python benchmarks/bench_step.py --arch vgg16 --sizes 256 --precisions f32
    python benchmarks/bench_step.py --sizes 256 --plain-conv         # before/after the conv VJP

XLA:CPU runs with the command-line tools' flag (``nst_jax.cli.CPU_XLA_FLAG``) unless
``XLA_FLAGS`` already sets it. Prints a table and writes JSON (default
``benchmarks/results/bench_step-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

from benchmarks.common import ProcessMemory, cpu_info, matmul_peak_gflops, step_gflop
from nst_jax import memory, vgg
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.optimize import (
    compute_targets,
    init_loop_state,
    make_optimizer,
    make_run,
    make_step,
)

default_xla_flags()  # what the command-line tools use; read when the backend starts

def _block(x):
    return jax.block_until_ready(x)


def _nbytes(*trees) -> int:
    return sum(x.nbytes for t in trees for x in jax.tree.leaves(t) if hasattr(x, "nbytes"))


def bench_one(arch: str, size: int, optimizer: str, repeats: int, chunk: int,
              precision: str = "f32", style_loss: str = "gram") -> dict:
    """One row, measured in this process (see the module docstring)."""
    mem = ProcessMemory()
    params = vgg.synthetic_params(arch, vgg.CHANNELS, key=jax.random.key(0))
    # as the engine gives them: flipped kernels, and Winograd transforms on one CPU device (f32)
    from nst_jax.layout import Layout

    params = vgg.with_backward_kernels(params, winograd=Layout().winograd(precision))
    spec = vgg.CAFFE
    k1, k2 = jax.random.split(jax.random.key(1))
    C = jax.random.uniform(k1, (size, size, 3))
    S = jax.random.uniform(k2, (size, size, 3))
    cfg = Config(optimizer=optimizer, iterations=chunk, report_every=chunk, style_loss=style_loss,
                 precision=precision).validate(arch)
    targets = compute_targets(params, spec, C, S, cfg)
    tx = make_optimizer(cfg)
    driver = "fused"  # what stylize uses (nst_jax.layout.single_programs), every optimizer
    memory_row: dict = {}

    def measure_from(args_bytes: int) -> None:
        memory_row["base"] = mem.reset()
        memory_row["args"] = args_bytes

    def measure_to() -> None:
        memory_row["measured"] = mem.peak() - memory_row["base"] + memory_row["args"]
        stats = jax.devices()[0].memory_stats() or {}
        if jax.devices()[0].platform != "cpu" and "peak_bytes_in_use" in stats:
            memory_row["measured"] = stats["peak_bytes_in_use"]  # accelerator memory, whole process

    def fresh():
        G = C + 0.0
        return G, jax.tree.map(lambda x: jnp.array(x, copy=True), tx.init(G))

    # single jitted steps
    step = jax.jit(make_step(tx, spec), donate_argnums=(0, 1))
    G, s = fresh()
    G, s, _ = _block(step(G, s, params, targets, cfg))  # compile + warm-up
    times, evals_single = [], []
    times_single = times
    for i in range(repeats):
        if driver == "single" and i == 1:
            measure_from(_nbytes(params, targets, G, s))
        t0 = time.perf_counter()
        G, s, info = _block(step(G, s, params, targets, cfg))
        times.append(time.perf_counter() - t0)
        evals_single.append(int(info.evals))
    if driver == "single":
        measure_to()
    single = statistics.median(times)
    del G, s, step

    # fused loop
    run = make_run(tx, spec, chunk)
    G, _ = fresh()
    s = init_loop_state(tx, G, cfg)
    n = jnp.int32(chunk)
    t0 = time.perf_counter()
    compiled = run.lower(G, s, params, targets, cfg, n).compile()
    compile_fused = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    xla_mb = None if ma is None else (ma.argument_size_in_bytes + ma.temp_size_in_bytes
                                      + ma.output_size_in_bytes - ma.alias_size_in_bytes) / 2**20
    out = _block(run(G, s, params, targets, cfg, n))  # warm-up
    G, s = out[0], out[1]
    times, evals = [], []
    for i in range(max(2, -(-repeats // chunk))):
        if driver == "fused" and i == 1:
            measure_from(_nbytes(params, targets, G, s))
        t0 = time.perf_counter()
        out = _block(run(G, s, params, targets, cfg, n))
        times.append((time.perf_counter() - t0) / chunk)
        evals.append(int(out[3]) / chunk)
        G, s = out[0], out[1]
    if driver == "fused":
        measure_to()
    fused = statistics.median(times)
    driver_s = single if driver == "single" else fused
    on_cpu = jax.devices()[0].platform == "cpu"
    measured = memory_row.get("measured") if (mem.ok or not on_cpu) else None
    gflop = step_gflop(arch, size)
    return {
        "arch": arch, "size": size, "optimizer": optimizer, "chunk": chunk, "precision": precision,
        "repeats": repeats,
        "single_s_per_step": single, "fused_s_per_step": fused, "fused_vs_single": fused / single,
        "single_times_s": times_single, "single_evals": evals_single,
        "fused_times_s_per_step": times, "fused_evals_per_step": evals,
        "evals_per_step_single": statistics.mean(evals_single),
        "evals_per_step_fused": statistics.mean(evals),
        "driver_path": driver, "driver_s_per_step": driver_s, "gflop_per_eval": gflop,
        "compile_fused_s": compile_fused,
        "xla_memory_mb": xla_mb,
        "measured_memory_mb": None if measured is None else measured / 2**20,
    }


def add_derived(r: dict, peak: float, platform: str = "cpu") -> dict:
    """Adds the driver's evaluations per step and GFLOP/s, their share of the matmul
    peak and the memory model's prediction to a row.

    L-BFGS steps vary in line-search evaluations (1-6 here), so the rate is the
    analytic FLOPs of one evaluation over the median of per-step ``time / evaluations``.
    """
    if r["driver_path"] == "single":
        t, e = r.get("single_times_s"), r.get("single_evals")
    else:
        t, e = r.get("fused_times_s_per_step"), r.get("fused_evals_per_step")
    if t:  # (rows saved before the per-step lists were kept carry their own figures)
        per_eval = statistics.median(ti / max(ei, 1e-9) for ti, ei in zip(t, e, strict=True))
        r = {**r, "driver_evals_per_step": statistics.mean(e),
             "driver_gflops": r["gflop_per_eval"] / per_eval}
    peak = r.get("matmul_peak_gflops", peak)  # the row's own, where rows of two runs were merged
    pred = memory.predict_bytes(r["arch"], r["size"], r["size"], optimizer=r["optimizer"],
                                precision=r["precision"], platform=platform) / 2**20
    meas = r.get("measured_memory_mb")
    return {**r, "pct_peak": 100 * r["driver_gflops"] / peak, "predicted_memory_mb": pred,
            "predicted_over_measured": pred / meas if meas else None}


def _row_in_subprocess(arch: str, size: int, opt: str, prec: str, repeats: int, chunk: int,
                       plain_conv: bool, timeout: float | None = None, style_loss: str = "gram") -> dict:
    """One row in a fresh process; a failed or timed-out row comes back as
    ``{..., "error": why}`` so the rows before and after it are kept."""
    cmd = [sys.executable, __file__, "--row", arch, str(size), opt, prec,
           "--repeats", str(repeats), "--chunk", str(chunk), "--style-loss", style_loss] + (
               ["--plain-conv"] if plain_conv else [])
    key = {"arch": arch, "size": size, "optimizer": opt, "precision": prec, "style_loss": style_loss}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**key, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("ROW ")]
    if res.returncode != 0 or not lines:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        return {**key, "error": f"exit {res.returncode}: {last}"}
    return json.loads(lines[-1][4:])


def _fmt(x, spec: str) -> str:
    return "-" if x is None else f"{x:{spec}}"


HEADER = "\n".join([
    "| arch | size | opt | prec | single s/step | fused s/step | fused/single | driver | evals/step "
    "| GFLOP/s | % peak | compile s | XLA MB | measured MB | predicted MB | pred/meas |",
    "|" + "---|" * 16])


def _line(r: dict) -> str:
    """One Markdown table row (the printed table pastes into the README as it is)."""
    if "error" in r:
        return (f"| {r['arch']} | {r['size']} | {r['optimizer']} | {r['precision']} | "
                f"failed: {r['error']} |" + " |" * 11)
    return (f"| {r['arch']} | {r['size']} | {r['optimizer']} | {r['precision']} | "
            f"{r['single_s_per_step']:.3f} | {r['fused_s_per_step']:.3f} | {r['fused_vs_single']:.2f} | "
            f"{r['driver_path']} | {r['driver_evals_per_step']:.1f} | {r['driver_gflops']:.0f} | "
            f"{r['pct_peak']:.0f}% | {r['compile_fused_s']:.1f} | {_fmt(r['xla_memory_mb'], '.0f')} | "
            f"{_fmt(r['measured_memory_mb'], '.0f')} | {r['predicted_memory_mb']:.0f} | "
            f"{_fmt(r['predicted_over_measured'], '.2f')} |")


def _write_json(path: Path, dev, peak: float, plain_conv: bool, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "device": f"{dev.platform} {dev.device_kind}",
        "machine": platform.machine(), "cpus": os.cpu_count(), "cpu": cpu_info(), "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS"), "matmul_peak_gflops": peak,
        "conv_vjp": "plain" if plain_conv else "custom", "rows": rows,
    }, indent=1))
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["vgg16", "vgg19"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    ap.add_argument("--optimizers", nargs="+", default=["adam", "lbfgs"], choices=["adam", "lbfgs", "sgd"])
    ap.add_argument("--precisions", nargs="+", default=["f32", "bf16"], choices=["f32", "highest", "bf16"])
    ap.add_argument("--repeats", type=int, default=6, help="timed single steps (fused: about as many)")
    ap.add_argument("--chunk", type=int, default=3, help="steps per fused call")
    ap.add_argument("--plain-conv", action="store_true",
                    help="use lax.conv's own autodiff instead of the custom input-gradient (before/after)")
    ap.add_argument("--in-process", action="store_true", help="measure every row in this process")
    ap.add_argument("--row", nargs=4, metavar=("ARCH", "SIZE", "OPT", "PREC"), help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    ap.add_argument("--style-loss", default="gram", choices=["gram", "meancov", "w2"],
                    help="style statistic of every row")
    ap.add_argument("--row-timeout", type=float, default=None, metavar="S",
                    help="give up a row after S seconds (kept in the table as failed)")
    ap.add_argument("--show", metavar="JSON", help="print the table of an earlier run (current memory model)")
    args = ap.parse_args()
    if args.plain_conv:
        vgg.conv3x3 = vgg._conv  # the 'before' of the custom VJP
        vgg.conv3x3_pre = lambda x, k, _: vgg._conv(x, k)
    if args.row:
        arch, size, opt, prec = args.row
        row = bench_one(arch, int(size), opt, args.repeats, args.chunk, prec, args.style_loss)
        print("ROW " + json.dumps({**row, "style_loss": args.style_loss}))
        return 0
    if args.show:
        saved = json.loads(Path(args.show).read_text())
        print(f"{saved['device']}, jax {saved['jax']}, {saved['date']}, XLA_FLAGS={saved['xla_flags']!r}, "
              f"f32 matmul peak {saved['matmul_peak_gflops']:.0f} GFLOP/s")
        print(HEADER)
        for r in saved["rows"]:
            print(_line(r if "error" in r else
                        add_derived(r, saved["matmul_peak_gflops"], saved["device"].split()[0])))
        return 0
    dev = jax.devices()[0]
    peak = matmul_peak_gflops()
    print(f"device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}, "
          f"conv VJP: {'plain' if args.plain_conv else 'custom'}, XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}")
    print(f"measured f32 matmul peak (numpy, {os.cpu_count()} cpus): {peak:.0f} GFLOP/s")
    print(HEADER)
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"bench_step-{dev.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for arch in args.arch:
        for size in args.sizes:
            for opt, prec in [(o, p) for o in args.optimizers for p in args.precisions]:
                repeats, chunk = args.repeats, args.chunk
                if size >= 1024:
                    repeats, chunk = max(2, repeats // 2), min(chunk, 2)
                if args.in_process:
                    r = bench_one(arch, size, opt, repeats, chunk, prec, args.style_loss)
                else:
                    r = _row_in_subprocess(arch, size, opt, prec, repeats, chunk, args.plain_conv,
                                           args.row_timeout, args.style_loss)
                rows.append(r if "error" in r else add_derived(r, peak, dev.platform))
                print(_line(rows[-1]), flush=True)
                _write_json(path, dev, peak, args.plain_conv, rows)  # partial results survive
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
