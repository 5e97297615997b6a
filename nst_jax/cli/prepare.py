"""[I/O] The flags every run shares, and turning them into a checked, loaded run.

Everything that can be refused is refused here, before anything large is allocated
or compiled: numbers, layers, weights, image headers (the sizes come from the
headers, so ``--size 100000`` is refused by the memory check before any pixel is
decoded or resized), and the predicted memory per device.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nst_jax import weights as W
from nst_jax.cli.common import (
    CliError,
    Prepared,
    nonneg_float,
    parse_numbers,
    parse_style_layers,
    positive_float,
    positive_int,
    select_device,
)


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """Flags shared by ``stylize`` and ``grid``: every knob of the core config."""
    from nst_jax.config import INITS, OPTIMIZERS, PRECISIONS, Config
    from nst_jax.losses import NORMALIZATIONS

    d = Config()
    g = ap.add_argument_group("size and iterations")
    g.add_argument("--size", type=positive_int, default=512,
                   help="longest side of the output in pixels (default: 512)")
    g.add_argument("--style-scale", type=positive_float, default=1.0,
                   help="style image size relative to --size (default: 1.0)")
    g.add_argument("--iters", type=positive_int, default=d.iterations,
                   help=f"optimizer iterations (default: {d.iterations})")
    w = ap.add_argument_group("cost: J = alpha*J_content + beta*J_style + tv_weight*TV")
    w.add_argument("--alpha", type=nonneg_float, default=d.alpha,
                   help=f"content weight (default: {d.alpha:g})")
    w.add_argument("--beta", type=nonneg_float, default=d.beta,
                   help=f"style weight (default: {d.beta:g}); raise for more style")
    w.add_argument("--tv-weight", type=nonneg_float, default=d.tv_weight,
                   help=f"total-variation smoothing weight (default: {d.tv_weight:g})")
    w.add_argument("--content-layer", default=d.content_layer,
                   help=f"VGG layer compared with the content (default: {d.content_layer})")
    default_layers = ",".join(f"{n}:{v:g}" for n, v in zip(d.style_layers, d.style_weights, strict=True))
    w.add_argument("--style-layers", default=default_layers,
                   help=f"style layers with weights lambda_l (default: {default_layers})")
    w.add_argument("--style-weights", default=None,
                   help="blend weights of several style images, e.g. 0.7,0.3 (default: equal)")
    w.add_argument("--normalization", choices=NORMALIZATIONS, default=d.normalization,
                   help=f"cost normalisation convention (default: {d.normalization})")
    w.add_argument("--pooling", choices=("max", "avg"), default=d.pooling,
                   help=f"VGG pooling (default: {d.pooling}; Gatys et al. suggest avg)")
    c = ap.add_argument_group("colour, scales, averaging, stopping")
    c.add_argument("--preserve-color", choices=("none", "luminance", "histogram"),
                   default=d.preserve_color,
                   help="keep the content's colours: 'luminance' optimises the luminance only "
                        "(Gatys et al. 2017), 'histogram' matches the style's colour statistics "
                        f"to the content first (default: {d.preserve_color})")
    c.add_argument("--original-colors", action="store_true",
                   help="post-hoc luminance swap onto the content's colours (default: off)")
    c.add_argument("--scales", type=positive_int, default=d.scales,
                   help=f"coarse-to-fine scales, each --iters iterations (default: {d.scales})")
    c.add_argument("--min-size", type=positive_int, default=None,
                   help="longest side of the first scale (default: --size / 2^(scales-1))")
    c.add_argument("--avg-decay", type=nonneg_float, default=d.avg_decay,
                   help="output the bias-corrected exponential moving average of the iterates "
                        f"with this decay, e.g. 0.9 (default: {d.avg_decay:g}, off)")
    c.add_argument("--tol", type=nonneg_float, default=d.tol,
                   help="stop a scale when the cost changes by less than this fraction over "
                        f"--tol-window iterations; --iters becomes a maximum (default: {d.tol:g}, off)")
    c.add_argument("--tol-window", type=positive_int, default=d.tol_window,
                   help=f"(default: {d.tol_window})")
    o = ap.add_argument_group("optimizer")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help=f"(default: {d.optimizer})")
    o.add_argument("--lr", type=positive_float, default=d.learning_rate,
                   help=f"Adam/SGD step in pixel units, pixels in [0, 1] (default: {d.learning_rate:g})")
    o.add_argument("--lbfgs-history", type=positive_int, default=d.lbfgs_history,
                   help=f"L-BFGS memory (default: {d.lbfgs_history})")
    o.add_argument("--init", choices=INITS, default=d.init,
                   help=f"starting image (default: {d.init})")
    o.add_argument("--noise-ratio", type=nonneg_float, default=d.noise_ratio,
                   help=f"noise share r of content+noise: (1-r)*C + r*U(0,1) (default: {d.noise_ratio:g})")
    o.add_argument("--seed", type=int, default=0, help="random seed of the initial noise (default: 0)")
    r = ap.add_argument_group("run")
    r.add_argument("--weights", default=None,
                   help="weights .h5 (default: vgg19.h5, else vgg16.h5, looked up in ./weights, "
                        f"then ${W.WEIGHTS_ENV} or the per-user cache folder)")
    r.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="what the VGG convolutions compute: f32 = float32 at XLA's default "
                        "(exact on CPU, TF32 on NVIDIA GPUs, bf16 passes on TPUs); highest = "
                        "true float32 everywhere (slower on GPU/TPU); bf16 = bfloat16 with "
                        "float32 accumulation (pays off on GPU/TPU, not on CPU). Grams and "
                        f"costs are float32 in every mode (default: {d.precision})")
    r.add_argument("--device", choices=("cpu", "gpu", "tpu"), default=None,
                   help="JAX platform; an error if there is no such device (default: JAX's choice)")
    r.add_argument("--report-every", type=positive_int, default=d.report_every, metavar="N",
                   help="iterations fused per compiled call between progress updates "
                        f"(default: {d.report_every})")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    r.add_argument("--quiet", action="store_true", help="print only the final line")


def prepare(args: argparse.Namespace, report_every: int, *, points: int = 1) -> Prepared:
    """Select the device, parse the layer/blend specs, load weights and images, build
    the :class:`Config`; every user error becomes a :class:`CliError`.

    ``points``: grid points held at once, spread over all devices (``jax.devices()``).
    """
    select_device(args.device)
    import jax

    from nst_jax import image as I
    from nst_jax import vgg
    from nst_jax.config import Config
    from nst_jax.optimize import check_sizes

    names, lw = parse_style_layers(args.style_layers)
    blend = parse_numbers("--style-weights", args.style_weights, count=len(args.style),
                          what="weights (one per style image)")
    if blend is not None and sum(blend) <= 0:
        raise CliError(f"--style-weights: expected weights with a positive sum, got {args.style_weights!r}")
    try:
        wpath = W.find_weights(args.weights)
        params, spec = W.load_weights(wpath)
        meta_w = W.read_metadata(wpath)
    except W.WeightsError as e:
        raise CliError(str(e)) from None
    arch = vgg.arch_of(params)
    try:
        config = Config(
            alpha=args.alpha, beta=args.beta, tv_weight=args.tv_weight, style_weights=lw,
            content_layer=args.content_layer, style_layers=names, optimizer=args.optimizer,
            learning_rate=args.lr, iterations=args.iters, init=args.init,
            noise_ratio=args.noise_ratio, pooling=args.pooling, normalization=args.normalization,
            lbfgs_history=args.lbfgs_history, report_every=report_every,
            preserve_color=args.preserve_color, original_colors=args.original_colors,
            avg_decay=args.avg_decay, tol=args.tol, tol_window=args.tol_window,
            scales=args.scales, min_size=args.min_size or 0, precision=args.precision,
        ).validate(arch)
    except ValueError as e:
        raise CliError(str(e).replace("content_layer: ", "--content-layer: ")) from None
    style_size = max(1, round(args.size * args.style_scale))
    try:  # headers only: nothing is decoded before the checks below
        c_hw = I.image_shape(args.content, args.size)
        s_hw = [I.image_shape(s, style_size) for s in args.style]
    except I.ImageError as e:
        raise CliError(str(e)) from None
    try:
        check_sizes((*c_hw, 3), [(*hw, 3) for hw in s_hw], arch, config,
                    names=[args.content, *args.style])
    except ValueError as e:
        raise CliError(f"{e} (raise --size / --min-size / --style-scale or use shallower "
                       "layers)") from None
    check_memory(arch, c_hw, config, points=points, devices=len(jax.devices()))
    try:
        content = I.load_image(args.content, args.size)
        styles = [I.load_image(s, style_size) for s in args.style]
    except I.ImageError as e:
        raise CliError(str(e)) from None
    settings = dict(vars(args))
    settings.pop("func", None)
    settings["style_layers"] = dict(zip(config.style_layers, config.style_weights, strict=True))
    meta = {
        "nst_jax": __import__("nst_jax").__version__, "jax": jax.__version__,
        "device": str(jax.devices()[0]), "platform": jax.devices()[0].platform,
        "settings": settings,
        "weights": {"path": str(wpath), "architecture": arch,
                    "source": meta_w.get("source"), "source_sha256": meta_w.get("source_sha256")},
        "license_note": "features from VGG weights by Simonyan & Zisserman, CC BY 4.0",
    }
    if not args.quiet:
        print(f"nst_jax: {W.Path(args.content).name} in the style of "
              f"{', '.join(W.Path(s).name for s in args.style)}: {content.shape[1]}x{content.shape[0]}, "
              f"{arch} ({meta_w.get('source')}), {config.optimizer}, {config.iterations} iterations "
              f"on {jax.devices()[0].platform}", file=sys.stderr)
    return Prepared(params, spec, arch, config, content, styles, blend, meta)


def check_memory(arch: str, hw: tuple[int, int], config: Any, *, points: int = 1,
                 devices: int = 1) -> None:
    """Refuse, before compiling, a run whose peak memory on one device exceeds what is free.

    ``points`` grid points are spread over ``devices`` devices: each device holds
    ``ceil(points / devices)``. On CPU the fitted model (:func:`nst_jax.memory.predict_bytes`)
    predicts it; on GPU/TPU, XLA's own figure for the compiled program
    (:func:`nst_jax.memory.compiled_bytes`) where the backend gives one.
    """
    import jax

    from nst_jax import memory, vgg

    per_device = -(-points // devices)
    deepest = max((config.content_layer, *config.style_layers), key=vgg.layer_names(arch).index)
    device = jax.devices()[0]
    kw = {"optimizer": config.optimizer, "precision": config.precision, "points": per_device,
          "deepest": deepest, "lbfgs_history": config.lbfgs_history, "platform": device.platform}
    avail = memory.available_bytes(device)
    if avail is None:
        return
    need, how = memory.predict_bytes(arch, *hw, **kw), "predicted"
    if device.platform != "cpu":
        try:
            need, how = memory.compiled_bytes(arch, *hw, config, points=per_device), "XLA's figure"
        except Exception:  # no analysis on this backend: keep the model's prediction
            pass
    if need <= 0.9 * avail:  # leave room for the runtime itself
        return
    best = memory.largest_size(avail, arch, aspect=hw[0] / hw[1], **kw)
    hint = f"the largest size that fits is about --size {best}" if best else "nothing fits"
    extra = "" if config.precision == "bf16" or device.platform == "cpu" else (
        "; --precision bf16 halves the activations")
    where = f" per device ({per_device} grid points each)" if points > 1 else ""
    raise CliError(f"{hw[1]}x{hw[0]} needs about {need / 2**30:.1f} GiB ({how}){where} but "
                   f"{avail / 2**30:.1f} GiB are available: {hint}{extra}"
                   + (" (or a smaller --chunk)" if points > 1 else ""))
