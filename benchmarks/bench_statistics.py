#!/usr/bin/env python3
"""Style statistics side by side: the step time of each relative to ``gram``, and how
far each result is from the style by every statistic (does matching one lower the
others?), with the README's gallery row.

For each ``--style-loss`` it runs ``nst-jax stylize`` (real VGG16, Adam, the bundled
cat and swirls) and then scores the result against the style with every statistic's
cost (the five default layers, weights 0.2, each statistic's own scale; ``mrf`` at its
own layers conv3_1 and conv4_1; ``swd`` scored along 256 fixed directions); the content
photo's scores are the reference row. Step times: one jitted Adam step of the same
objective per statistic, interleaved, median of ``--repeats``.

    python benchmarks/bench_statistics.py [--size 256] [--iters 200] [--step-sizes 256 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONTENT, STYLE = ROOT / "examples/content_chelsea.png", ROOT / "examples/style_swirls.png"


def config_for(loss: str, directions: int = 64):
    """The statistic's default run: ``mrf`` at its own layers (conv3_1, conv4_1)."""
    from nst_jax import mrf
    from nst_jax.config import Config

    if loss == "mrf":
        return Config(style_loss=loss, style_layers=mrf.DEFAULT_LAYERS, style_weights=(0.5, 0.5))
    return Config(style_loss=loss, swd_directions=directions)


def step_times(sizes: list[int], losses: tuple[str, ...], repeats: int) -> list[dict]:
    """Median seconds of an Adam step per statistic and size, interleaved."""
    from benchmarks.common import interleaved_step_times
    from nst_jax import image as I
    from nst_jax import problem, weights

    params, spec = weights.load_weights(ROOT / "weights/vgg16.h5")
    rows = []
    for n in sizes:
        C, S = I.load_image(CONTENT, n), I.load_image(STYLE, n)
        cases = {}
        for loss in losses:
            cfg = config_for(loss).validate("vgg16")
            cases[loss] = (cfg, problem.compute_targets(params, spec, C, [S], cfg))
        med = interleaved_step_times(params, spec, C, cases, repeats)
        rows.append({"size": f"{C.shape[1]}x{C.shape[0]}", "s_per_step": med,
                     "vs_gram": {k: v / med["gram"] for k, v in med.items()}})
        print(f"{n:>5}: " + "  ".join(f"{k} {v:.3f} s ({v / med['gram']:.2f}x)" for k, v in med.items()),
              flush=True)
    return rows


def distances(img, S, losses: tuple[str, ...], params, spec) -> dict[str, float]:
    """Every statistic's style cost of ``img`` against the style image (beta and alpha aside)."""
    import jax.numpy as jnp

    from nst_jax import problem

    out = {}
    for loss in losses:
        cfg = config_for(loss, directions=256).validate("vgg16")  # more directions: a finer score
        t = problem.compute_targets(params, spec, img, [S], cfg)
        out[loss] = float(problem.objective(jnp.asarray(img), params, t, cfg, spec)[1]["style"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--step-sizes", type=int, nargs="*", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_statistics-cpu.json"))
    ap.add_argument("--row", default=str(ROOT / "docs/gallery/statistics_row.jpg"))
    a = ap.parse_args()
    from benchmarks.bench_photo_quality import gallery_row
    from benchmarks.common import cpu_info
    from nst_jax import image as I
    from nst_jax import statistics, weights

    losses = statistics.STYLE_LOSSES
    steps = step_times(a.step_sizes, losses, a.repeats) if a.step_sizes else []
    params, spec = weights.load_weights(ROOT / "weights/vgg16.h5")
    C, S = I.load_image(CONTENT, a.size), I.load_image(STYLE, a.size)
    rows = [{"result": "content", **distances(C, S, losses, params, spec)}]
    panels = [("content", C), ("style", S)]
    with tempfile.TemporaryDirectory() as d:
        for loss in losses:
            out = Path(d) / f"{loss}.png"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "nst_jax", "stylize", str(CONTENT), str(STYLE),
                   "--size", str(a.size), "--iters", str(a.iters), "--style-loss", loss, "--quiet",
                   "-o", str(out)]
            subprocess.run(cmd, check=True, cwd=ROOT)
            img = I.load_image(out)
            rows.append({"result": loss, **distances(img, S, losses, params, spec),
                         "seconds": time.perf_counter() - t0})
            panels.append((f"--style-loss {loss}", img))
            print(f"{loss:>8}: " + "  ".join(f"{k} {rows[-1][k]:.3g}" for k in losses), flush=True)
    gallery_row(panels, Path(a.row))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"cpu": cpu_info(), "size": a.size, "iters": a.iters, "steps": steps,
                                       "distances": rows}, indent=1))
    print(f"wrote {a.out} and {a.row}")


if __name__ == "__main__":
    main()
