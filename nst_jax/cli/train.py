"""[I/O] ``nst-jax train``: a feed-forward style network on a folder of photos."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from nst_jax.cli.common import (
    EXIT_OK,
    CliError,
    Interrupts,
    add_distributed,
    check_outputs,
    devices_arg,
    fmt_time,
    load_weights_arg,
    parse_style_layers,
    positive_float,
    positive_int,
    ranged,
    refuse_overlap,
    select_device,
    sha256_of,
    start_distributed,
)
from nst_jax.cli.flags import add_flags, config_fields, style_layers_arg

DESCRIPTION = """Train Johnson et al.'s image transformation network on a folder of photos, with
the same costs as `stylize` (the content layer, --style-loss, --beta, --tv-weight, ...).
Several styles make one conditional network (Dumoulin et al. 2017) whose styles can be
chosen or interpolated at apply time. Checkpoints every --checkpoint-every steps and on
Ctrl-C/SIGTERM; --resume continues exactly where a checkpoint stopped.

Examples:
  {prog} --data photos/ --style starry.jpg -o starry.nstm --steps 2000
  {prog} --data coco/train2014 --style starry.jpg --crop 256 --batch 4 --steps 40000  # the paper's setup
"""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--data", required=True, help="folder of training photos (recursive; any format "
                    "Pillow reads; unreadable files are skipped and counted)")
    ap.add_argument("--style", required=True, nargs="+", help="style image(s): one network per run; "
                    "several make a conditional network with one style per image")
    ap.add_argument("-o", "--output", default=None, help="model file (default: out/STYLE.nstm); "
                    "its checkpoint is OUTPUT.ckpt and its preview OUTPUT-preview.png")
    t = ap.add_argument_group("training")
    t.add_argument("--steps", type=ranged(positive_int, hi=10**8), default=2000,
                   help="optimizer steps (default: 2000)")
    t.add_argument("--batch", type=ranged(positive_int, hi=4096), default=4,
                   help="photos per step, a multiple of the device count (default: 4)")
    t.add_argument("--crop", type=ranged(positive_int, lo=32, hi=4096), default=256,
                   help="training crops are CROP x CROP pixels (default: 256)")
    t.add_argument("--resize", type=ranged(positive_int, lo=32, hi=8192), default=None,
                   help="photos are resized so their short side is RESIZE * U(1, 1.25) before the "
                        "crop: the scale the network will see at apply time (default: --crop)")
    t.add_argument("--style-size", type=ranged(positive_int, lo=32, hi=8192), default=256,
                   help="longest side of the style images (default: 256)")
    t.add_argument("--lr", type=ranged(positive_float, hi=1.0), default=1e-3,
                   help="learning rate (default: 0.001)")
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant (Johnson et al.'s) or cosine: decayed from --lr to 0 at --steps "
                        "(optax.cosine_decay_schedule; default: constant)")
    t.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="optax.adam (Johnson et al.'s) or plain optax.sgd (default: adam)")
    t.add_argument("--width", type=ranged(positive_float, lo=0.0625, hi=4.0), default=1.0,
                   help="width multiplier of the network; 0.5 is ~4x cheaper (default: 1)")
    t.add_argument("--seed", type=ranged(positive_int, lo=0, hi=2**31), default=0,
                   help="seed of the initial parameters and the data order (default: 0)")
    t.add_argument("--workers", type=ranged(positive_int, hi=64), default=4,
                   help="decoding threads (default: 4)")
    t.add_argument("--devices", type=devices_arg, default=1,
                   help="devices the batch is sharded over: a count or 'all' (default: 1)")
    t.add_argument("--checkpoint-every", type=ranged(positive_int, hi=10**8), default=200,
                   help="steps between checkpoints (default: 200)")
    t.add_argument("--preview-every", type=ranged(positive_int, hi=10**8), default=200,
                   help="steps between previews of the --preview photos (default: 200)")
    t.add_argument("--preview", nargs="+", default=None, help="held-out photos shown in the preview "
                   "(default: the first two photos of --data)")
    t.add_argument("--report-every", type=ranged(positive_int, hi=10**6), default=10,
                   help="steps between progress lines (default: 10)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    add_flags(ap, ("cost",), skip=("--style-weights",))
    r = ap.add_argument_group("run")
    r.add_argument("--weights", default=None, help="VGG weights .h5 (default: as for stylize)")
    r.add_argument("--device", choices=("cpu", "gpu", "tpu"), default=None, help="JAX platform")
    r.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    r.add_argument("--quiet", action="store_true", help="print only the final line")
    r.add_argument("--progress-json", action="store_true", help="also print each report as one JSON "
                   "line on stdout (step, steps, images/s, ETA, the loss terms, the preview's path): "
                   "what the studio reads")
    add_distributed(ap)
    return ap


def _paths(args: argparse.Namespace) -> dict[str, Path]:
    out = Path(args.output) if args.output else Path("out") / f"{Path(args.style[0]).stem}.nstm"
    return {"model": out, "ckpt": out.with_name(out.name + ".ckpt"),
            "preview": out.with_name(out.stem + "-preview.png")}


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    """Everything checked and loaded before the first compile."""
    import jax

    from nst_jax import image as I
    from nst_jax.config import Config
    from nst_jax.models import data, johnson
    from nst_jax.models.train import check_config

    paths = _paths(args)
    refuse_overlap([("model", paths["model"])], [("data folder", Path(args.data)),
                                                 *(("style image", Path(s)) for s in args.style)])
    if not args.resume:
        check_outputs([paths["model"], paths["ckpt"], paths["preview"]], args.overwrite)
    elif not paths["ckpt"].exists():
        raise CliError(f"--resume: no checkpoint {paths['ckpt']}")
    try:
        photos, bad = data.scan(args.data)
        styles = [I.load_image(s, args.style_size) for s in args.style]
        previews = [I.load_image(p, args.crop) for p in (args.preview or photos[:2])]
    except (data.DataError, I.ImageError) as e:
        raise CliError(str(e)) from None
    start_distributed(args)
    select_device(args.device)
    wpath, vgg_params, spec, _ = load_weights_arg(args.weights)
    from nst_jax import vgg

    names, lw = parse_style_layers(style_layers_arg(args))
    try:
        config = Config(**{**config_fields(args, ("cost",)), "style_layers": names,
                           "style_weights": lw}).validate(vgg.arch_of(vgg_params))
        check_config(config)
        arch = johnson.Arch(width=args.width, n_styles=len(styles))
    except ValueError as e:
        raise CliError(str(e)) from None
    n_dev = len(jax.devices()) if args.devices == "all" else args.devices
    if n_dev > len(jax.devices()):
        raise CliError(f"--devices: {n_dev} requested, {len(jax.devices())} available")
    if args.batch % n_dev:
        raise CliError(f"--batch: expected a multiple of the {n_dev} devices, got {args.batch}")
    if jax.process_count() > 1 and args.devices != "all":
        raise CliError("--devices: over several hosts, give --devices all")
    digests = [{"path": str(p), "sha256": sha256_of(p)} for p in args.style]  # once, not per report
    return {"paths": paths, "photos": photos, "bad": bad, "styles": styles, "previews": previews,
            "style_digests": digests,
            "vgg": vgg_params, "spec": spec, "config": config, "arch": arch, "wpath": wpath,
            "devices": tuple(jax.devices()[:n_dev])}


def _meta(args: argparse.Namespace, s: dict[str, Any], step: int, seconds: float) -> dict[str, Any]:
    return {"styles": s["style_digests"],
            "style_names": [Path(p).stem for p in args.style], "steps": step,
            "train_seconds": round(seconds, 1), "data": str(args.data), "photos": len(s["photos"]),
            "crop": args.crop, "resize": args.resize, "batch": args.batch, "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            "optimizer": args.optimizer, "seed": args.seed,
            "style_size": args.style_size, "weights": str(s["wpath"]),
            "config": {k: v for k, v in s["config"].__dict__.items()}}


def _optimizer(args: argparse.Namespace) -> Any:
    """``--optimizer`` with ``--lr`` (constant) or a cosine decay from it to 0 at ``--steps``."""
    import optax

    lr = optax.cosine_decay_schedule(args.lr, args.steps) if args.lr_schedule == "cosine" else args.lr
    return optax.adam(lr) if args.optimizer == "adam" else optax.sgd(lr)


def run(args: argparse.Namespace) -> int:
    """The ``train`` subcommand; returns the exit code."""
    import jax

    from nst_jax.layout import Layout
    from nst_jax.models import data, johnson, store
    from nst_jax.models.train import init_state, iterate_training, style_targets

    t_start = time.perf_counter()
    s = _setup(args)
    if s["bad"]:
        print(f"warning: {len(s['bad'])} unreadable file(s) in {args.data} skipped", file=sys.stderr)
    tx = _optimizer(args)
    arch, paths = s["arch"], s["paths"]
    if args.resume:
        try:
            state, arch_ck, meta = store.load_checkpoint(paths["ckpt"], tx)
        except store.ModelError as e:
            raise CliError(str(e)) from None
        if arch_ck != arch:
            raise CliError(f"--resume: the checkpoint's network {arch_ck.to_dict()} differs from "
                           f"this run's {arch.to_dict()}")
        spent = float(meta.get("train_seconds", 0.0))
    else:
        state = init_state(johnson.init_params(arch, key=jax.random.key(args.seed)), tx)
        spent = 0.0
    layout = Layout.of(args.batch, s["devices"], per_point=True)
    pi, pn = jax.process_index(), jax.process_count()
    per = args.batch // pn
    batches = data.Batches(s["photos"], batch=args.batch, crop=args.crop, seed=args.seed,
                           n_styles=arch.n_styles, start=int(state.step), lo=pi * per,
                           hi=(pi + 1) * per, workers=args.workers, resize=args.resize)
    targets = style_targets(s["vgg"], s["spec"], s["styles"], s["config"])
    t0 = time.perf_counter()
    last = (int(state.step), t0)  # the rate is the last report's (the first includes the compile)
    try:
        with Interrupts() as stop:
            for state, terms in iterate_training(  # noqa: B020 (each report's state replaces it)
                    state, batches, tx=tx, vgg_params=s["vgg"], spec=s["spec"], targets=targets,
                    config=s["config"], arch=arch, layout=layout, steps=args.steps,
                    report_every=args.report_every, stop=lambda: stop.requested):
                step = int(local_copy(state.step))
                now = time.perf_counter()
                rate, last = (step - last[0]) / max(now - last[1], 1e-9), (step, now)
                if not args.quiet:
                    print(f"step {step}/{args.steps}  {rate:.2f} steps/s  "
                          f"{rate * args.batch:.1f} img/s  J {terms['total']:.4g} (content "
                          f"{terms['content']:.4g}, style {terms['style']:.4g}, tv {terms['tv']:.4g})"
                          f"  data wait {batches.wait_s:.1f}s  ETA {fmt_time((args.steps - step) / rate)}",
                          file=sys.stderr, flush=True)
                meta = _meta(args, s, step, spent + time.perf_counter() - t0)
                previewed = pi == 0 and (step % args.preview_every == 0 or step == args.steps)
                if previewed:
                    _preview(paths["preview"], local_copy(state.params), arch, s["previews"])
                if args.progress_json and pi == 0:
                    print(json.dumps({"step": step, "steps": args.steps, "images_per_s": rate * args.batch,
                                      "eta_s": (args.steps - step) / rate if rate > 0 else None,
                                      "terms": terms, "data_wait_s": batches.wait_s,
                                      "preview": str(paths["preview"]) if previewed else None}), flush=True)
                if pi == 0 and (step % args.checkpoint_every == 0 or stop.requested):
                    store.save_checkpoint(paths["ckpt"], local_copy(state), arch, meta)
                if stop.requested:
                    print(f"interrupted ({stop.name}) at step {step}: checkpoint {paths['ckpt']} "
                          f"(continue with --resume)", file=sys.stderr)
                    return stop.exit_code
    finally:
        batches.close()
    meta = _meta(args, s, int(local_copy(state.step)), spent + time.perf_counter() - t0)
    meta["data_wait_seconds"] = round(batches.wait_s, 2)
    meta["skipped_files"] = len(s["bad"]) + len(batches.bad)
    if pi == 0:
        try:
            mine = local_copy(state)
            store.save_model(paths["model"], mine.params, arch, meta,
                             overwrite=args.overwrite or args.resume)
            store.save_checkpoint(paths["ckpt"], mine, arch, meta)
        except OSError as e:
            raise CliError(f"cannot write {paths['model']}: {e}") from None
    print(f"done: {paths['model']} after {meta['steps']} steps in "
          f"{fmt_time(time.perf_counter() - t_start)} (data wait {batches.wait_s:.1f} s, "
          f"{meta['skipped_files']} unreadable file(s) skipped)", file=sys.stderr)
    return EXIT_OK


def local_copy(tree: Any) -> Any:
    """This process's copy of replicated arrays, as NumPy (over several hosts an array is
    not fully addressable, but every process holds all of a replicated one)."""
    import jax
    import numpy as np

    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0) if hasattr(a, "addressable_data")
                                             else a), tree)


def _preview(path: Path, params: Any, arch: Any, photos: list) -> None:
    """A row per style: the network on each preview photo (replaced at every preview)."""
    import numpy as np

    from nst_jax import image as I
    from nst_jax.models import johnson

    rows = []
    for k in range(arch.n_styles):
        w = johnson.style_weights(arch, k)
        outs = [np.asarray(johnson.apply_jit(params, p, w, arch=arch)) for p in photos]
        h = max(o.shape[0] for o in outs)
        rows.append(np.concatenate([np.pad(o, ((0, h - o.shape[0]), (0, 0), (0, 0))) for o in outs], 1))
    wmax = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, wmax - r.shape[1]), (0, 0))) for r in rows], 0)
    I.save_image(path, sheet, {"preview": True}, overwrite=True)


__all__ = ["fill_parser", "run"]
