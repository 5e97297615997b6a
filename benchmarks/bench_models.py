#!/usr/bin/env python3
"""Fast models (issue 23): apply speed, quality against the optimisation, --init model, training rate.

Sections (``--sections``, default all that their inputs allow):

* ``apply``: seconds per image of the network (jitted, after its compile; median of 5)
  at ``--apply-sizes`` (square), widths 1 and 0.5, against ``stylize`` at its defaults
  (Config(): 400 Adam iterations at that size): a run of ``--stylize-iters`` iterations
  twice in one process (the second reuses the compiled programs), so compile = first -
  second and s/iteration = second / iterations, extrapolated to 400 (a full run at
  1024 px is ~30 min here).
* ``quality`` (needs ``--model``): on held-out photos (``--heldout``, never in the
  training data) at ``--size``, the objective J of the network's output and of a
  300-step optimisation (Config() defaults, the model's style at ``--size``); writes a
  gallery row content | optimisation | network (``--gallery``).
* ``init`` (needs ``--model``): the time for ``stylize`` to reach the objective of
  the 300-step run, from the usual start and from the network's output.
* ``video`` (needs ``--model`` and ``scripts/fetch_clip.py``): the warping error E of
  ``bench_video.py`` (48 frames of Big Buck Bunny at 160 px) of the network per frame,
  and with the flow-guided blend 0.5 and 0.8 (:mod:`nst_jax.models.video`).
* ``train``: training images/s at crops 128 and 256, widths 0.5 and 1, one device.

    python scripts/fetch_photos.py
    python benchmarks/bench_models.py --model out/mosaic.nstm --style examples/style_mosaic.png

Prints a table and writes JSON (default ``benchmarks/results/bench_models-<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np
import optax

from benchmarks.common import cpu_info
from nst_jax import problem
from nst_jax.cli import default_xla_flags
from nst_jax.config import Config
from nst_jax.engine import stylize
from nst_jax.image import load_image, save_image
from nst_jax.models import johnson, store
from nst_jax.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
default_xla_flags()


def _median_time(f, n: int = 5) -> float:
    f()  # compile
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def apply_speed(vp, spec, style, sizes, stylize_iters) -> list[dict]:
    rows = []
    for size in sizes:
        x = np.random.default_rng(0).uniform(0, 1, (size, size, 3)).astype(np.float32)
        row = {"size": size}
        for width in (1.0, 0.5):
            arch = johnson.Arch(width=width)
            p = johnson.init_params(arch, key=jax.random.key(0))
            row[f"net_w{width:g}_s"] = _median_time(
                lambda p=p, arch=arch, x=x: johnson.apply_jit(p, x, arch=arch).block_until_ready())
        cfg = Config(iterations=stylize_iters, report_every=stylize_iters)
        t0 = time.perf_counter()
        stylize(x, style, vp, spec, config=cfg)  # compiles (its programs are cached)
        t1 = time.perf_counter()
        stylize(x, style, vp, spec, config=cfg)  # the same run, compiled: targets + iterations
        t2 = time.perf_counter()
        per_iter = (t2 - t1) / stylize_iters
        compile_s = (t1 - t0) - (t2 - t1)
        row |= {"stylize_compile_s": compile_s, "stylize_s_per_iter": per_iter,
                "stylize_default_iters": Config().iterations,
                "stylize_default_s": compile_s + (t2 - t1) / stylize_iters * Config().iterations}
        row["speedup_w1"] = row["stylize_default_s"] / row["net_w1_s"]
        row["speedup_w0.5"] = row["stylize_default_s"] / row["net_w0.5_s"]
        rows.append(row)
        print(f"{size:>5} px  network w1 {row['net_w1_s']:.3f} s  w0.5 {row['net_w0.5_s']:.3f} s  "
              f"stylize {row['stylize_default_s']:.0f} s ({row['stylize_compile_s']:.0f} s compile + "
              f"{Config().iterations} x {per_iter:.2f} s)  speed-up {row['speedup_w1']:.0f}x / "
              f"{row['speedup_w0.5']:.0f}x", flush=True)
    return rows


def quality(vp, spec, style, model, heldout, size, gallery, extra=()) -> list[dict]:
    params, arch, meta = store.load_model(model)
    others = {str(m): store.load_model(m) for m in extra}
    cfg = Config(iterations=300)
    rows, strip = [], []
    for path in heldout:
        c = load_image(path, size)
        t0 = time.perf_counter()
        y = np.asarray(johnson.apply_jit(params, c, arch=arch))
        t_net = time.perf_counter() - t0
        opt, h = stylize(c, style, vp, spec, config=cfg)
        j_net = problem.evaluate(y, c, style, vp, spec, cfg)
        j_opt = problem.evaluate(opt, c, style, vp, spec, cfg)
        rows.append({"photo": Path(path).name, "J_network": j_net["total"], "J_opt300": j_opt["total"],
                     "ratio": j_net["total"] / j_opt["total"], "network_s": t_net,
                     "opt_s": h["compile_s"] + h["run_s"], "terms_network": j_net, "terms_opt300": j_opt,
                     "extra_models": {}})
        for name, (p2, a2, m2) in others.items():
            y2 = np.asarray(johnson.apply_jit(p2, c, arch=a2))
            j2 = problem.evaluate(y2, c, style, vp, spec, cfg)["total"]
            rows[-1]["extra_models"][name] = {"J": j2, "ratio": j2 / j_opt["total"], "steps": m2.get("steps"),
                                              "train_seconds": m2.get("train_seconds")}
            print(f"{'':>14}  {name} ({m2.get('steps')} steps): J {j2:.4g}, ratio {j2 / j_opt['total']:.2f}")
        print(f"{Path(path).name:>14}  J network {j_net['total']:.4g}  J 300 steps {j_opt['total']:.4g}  "
              f"ratio {rows[-1]['ratio']:.2f}", flush=True)
        strip.append(np.concatenate([c, opt, y], axis=1))
    if gallery:
        w = max(s.shape[1] for s in strip)
        sheet = np.concatenate([np.pad(s, ((0, 0), (0, w - s.shape[1]), (0, 0))) for s in strip], 0)
        save_image(gallery, sheet, {"rows": [r["photo"] for r in rows], "columns":
                                    ["content", "optimisation 300 steps", "network"],
                                    "model": str(model), "model_meta": meta}, overwrite=True)
    return rows


def init_race(vp, spec, style, model, photo, size) -> dict:
    params, arch, _ = store.load_model(model)
    c = load_image(photo, size)
    base = Config(iterations=300, report_every=10)
    _, h_usual = stylize(c, style, vp, spec, config=base)
    target = h_usual["costs"]["total"]
    from nst_jax.engine import iterate

    out = {"photo": Path(photo).name, "target_J": target}
    for name in ("usual", "model"):
        t0 = time.perf_counter()  # the model's start includes its forward pass
        init = None if name == "usual" else johnson.apply_jit(params, c, arch=arch)
        reached = None
        for p in iterate(c, style, vp, spec, config=base, init=init, key=jax.random.key(0)):
            if p.costs["total"] <= target:
                reached = (p.step, time.perf_counter() - t0)
                break
        out[name] = {"steps": reached[0] if reached else None, "seconds": reached[1] if reached else None}
        print(f"  start {name:>6}: the 300-step J {target:.4g} reached after "
              f"{out[name]['steps']} steps, {out[name]['seconds']:.1f} s", flush=True)
    return out


def video_flicker(model, clip, n_frames, size, blends) -> list[dict]:
    """The warping error E of bench_video.py (input flows, Ruder et al.'s consistency mask)
    of the network per frame, without and with the flow-guided blend."""
    from nst_jax import temporal
    from nst_jax.models.video import stylize_frames
    from nst_jax.videoio import dis_flow, read_frames

    params, arch, _ = store.load_model(model)
    frames = list(read_frames(clip, max_frames=n_frames, size=size))
    bwd = np.stack([dis_flow(frames[t], frames[t - 1]) for t in range(1, len(frames))])
    fwd = np.stack([dis_flow(frames[t - 1], frames[t]) for t in range(1, len(frames))])
    cons = np.stack([np.asarray(temporal.consistency(f, b)) for f, b in zip(fwd, bwd, strict=True)])
    rows = []
    for b in blends:
        list(stylize_frames(frames[:2], params, arch, blend=b))  # compile
        t0 = time.perf_counter()
        outs = np.stack(list(stylize_frames(frames, params, arch, blend=b)))
        dt = time.perf_counter() - t0
        e = float(temporal.warping_error(outs, bwd, cons))
        rows.append({"blend": b, "warping_error": e, "s_per_frame": dt / len(frames)})
        print(f"  blend {b:g}: warping error {e:.4f}, {1000 * dt / len(frames):.0f} ms/frame", flush=True)
    return rows


def train_rate(vp, spec, style, data) -> list[dict]:
    from nst_jax.layout import Layout
    from nst_jax.models import data as D
    from nst_jax.models import train as T

    photos, _ = D.scan(data)
    cfg = Config()
    targets = T.style_targets(vp, spec, [style], cfg)
    rows = []
    for crop in (128, 256):
        for width in (0.5, 1.0):
            arch = johnson.Arch(width=width)
            tx = optax.adam(1e-3)
            state = T.init_state(johnson.init_params(arch, key=jax.random.key(0)), tx)
            b = D.Batches(photos, batch=4, crop=crop, seed=0)
            it = T.iterate_training(state, b, tx=tx, vgg_params=vp, spec=spec, targets=targets,
                                    config=cfg, arch=arch, layout=Layout(), steps=8, report_every=2)
            next(it)  # compile + 2 steps
            t0, w0 = time.perf_counter(), b.wait_s
            for _ in it:
                pass
            dt = time.perf_counter() - t0
            b.close()
            rows.append({"crop": crop, "width": width, "images_per_s": 24 / dt,
                         "data_wait_share": (b.wait_s - w0) / dt})
            print(f"  crop {crop} width {width:g}: {24 / dt:.2f} images/s "
                  f"(data wait {100 * rows[-1]['data_wait_share']:.1f}% of the time)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(ROOT / "weights" / "vgg16.h5"))
    ap.add_argument("--style", default=str(ROOT / "examples" / "style_mosaic.png"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--extra-models", nargs="*", default=[], help="models (or checkpoints) whose J "
                    "the quality section reports too, e.g. earlier checkpoints of the same run")
    ap.add_argument("--heldout", nargs="+", default=sorted(str(p) for p in (ROOT / "data" / "photos" /
                                                                            "heldout").glob("*")))
    ap.add_argument("--data", default=str(ROOT / "data" / "photos" / "train"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--apply-sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--stylize-iters", type=int, default=20)
    ap.add_argument("--sections", nargs="+", default=["apply", "quality", "init", "video", "train"])
    ap.add_argument("--gallery", default=str(ROOT / "docs" / "gallery" / "fast_model.jpg"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if Path(args.weights).exists():
        vp, spec = load_weights(args.weights)
    else:  # speed only (apply, train): random weights of the real shapes
        from nst_jax import vgg

        print(f"note: {args.weights} absent: random VGG16 weights (timings only)")
        vp, spec = vgg.synthetic_params("vgg16", vgg.CHANNELS, seed=0), vgg.CAFFE
    style = load_image(args.style, args.size)
    res: dict = {"cpu": cpu_info(), "platform": jax.default_backend(), "jax": jax.__version__,
                 "style": args.style, "size": args.size}
    if "apply" in args.sections:
        print("apply: seconds per image")
        res["apply"] = apply_speed(vp, spec, load_image(args.style, 512), args.apply_sizes,
                                   args.stylize_iters)
    if args.model and "quality" in args.sections:
        print(f"quality at {args.size} px (held out): J of the network vs a 300-step optimisation")
        res["quality"] = quality(vp, spec, style, args.model, args.heldout, args.size, args.gallery,
                                 args.extra_models)
        res["model_meta"] = store.load_model(args.model)[2]
    if args.model and "init" in args.sections:
        print("--init model: time to the 300-step objective")
        res["init"] = init_race(vp, spec, style, args.model, args.heldout[0], args.size)
    clip = ROOT / "data" / "bigbuckbunny.mp4"
    if args.model and "video" in args.sections and clip.exists():
        print("video: Big Buck Bunny, 48 frames at 160 px (as bench_video.py)")
        res["video"] = video_flicker(args.model, clip, 48, 160, [0.0, 0.5, 0.8])
    if "train" in args.sections:
        print("training rate (batch 4, one device)")
        res["train"] = train_rate(vp, spec, style, args.data)
    out = Path(args.json or ROOT / "benchmarks" / "results" / f"bench_models-{res['platform']}.json")
    out.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
