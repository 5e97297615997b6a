"""[I/O] One table of the run flags: each line is a flag, the :class:`Config` field it
fills (if any), its type and its help. argparse and the ``Config(...)`` call are both
generated from it, so a new ``Config`` field is one line here (crowsonkb's ``arg_info``
is the model). Defaults come from :class:`Config` itself."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nst_jax.cli.common import (
    MAX_SIDE,
    MAX_WEIGHT,
    integer,
    nonneg_float,
    positive_float,
    positive_int,
    ranged,
    tile_arg,
)

#: Types with the range each flag accepts (checked before anything is loaded).
SIDE = ranged(positive_int, hi=MAX_SIDE)
STEPS = ranged(positive_int, hi=10**8)
WEIGHT = ranged(nonneg_float, hi=MAX_WEIGHT)
FRACTION = ranged(nonneg_float, hi=1.0)
#: ``--auto-regions`` at most (k-means on a few thousand feature vectors; more regions
#: than this leave each one too few positions at conv5_1 for its statistics).
AUTO_REGIONS_MAX = 16
#: ``--smooth`` given without a value.
SMOOTH_WEIGHT = 1.0


def positive_weight(s: str) -> float:
    """``--smooth LAMBDA``: a number > 0 (and at most :data:`MAX_WEIGHT`)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a weight > 0, got {s!r}") from None
    if not 0 < v <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"expected a weight > 0 and at most {MAX_WEIGHT:g}, got {s!r}")
    return v


def init_arg(s: str) -> str:
    """``--init``: one of :data:`nst_jax.config.INITS`, or ``model:PATH``."""
    from nst_jax.config import INITS

    if s in INITS or (s.startswith("model:") and len(s) > len("model:")):
        return s
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(INITS)} or model:PATH, got {s!r}")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag. ``field``: the :class:`Config` field it sets (its default
    is the field's); ``default``: for flags that fill no field."""

    name: str
    help: str
    field: str | None = None
    type: Any = None
    choices: Any = None
    default: Any = None
    action: str | None = None
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


def _choices(name: str) -> tuple[str, ...]:
    from nst_jax import config, losses, statistics, vgg

    return {"style_loss": statistics.STYLE_LOSSES, "optimizer": config.OPTIMIZERS,
            "lbfgs_linesearch": config.LBFGS_LINESEARCHES,
            "init": config.INITS, "precision": config.PRECISIONS,
            "normalization": losses.NORMALIZATIONS, "pooling": vgg.POOLINGS, "padding": vgg.PADDINGS,
            "preserve_color": ("none", "luminance", "histogram")}[name]


GROUPS: dict[str, tuple[Flag, ...]] = {
    "size and iterations": (
        Flag("--size", "longest side of the output in pixels", type=SIDE, default=512),
        Flag("--style-scale", "style image size relative to --size, at most 16",
             type=ranged(positive_float, hi=16.0),
             default=1.0),
        Flag("--iters", "optimizer iterations", "iterations", STEPS),
    ),
    "cost: J = alpha*J_content + beta*J_style + tv_weight*TV": (
        Flag("--alpha", "content weight", "alpha", WEIGHT),
        Flag("--beta", "style weight; raise for more style", "beta", WEIGHT),
        Flag("--tv-weight", "total-variation smoothing weight", "tv_weight", WEIGHT),
        Flag("--content-layer", "VGG layer compared with the content", "content_layer"),
        Flag("--style-layers", "style layers with weights lambda_l, e.g. conv1_1:0.5,conv2_1:0.5 "
             "(names alone: equal weights; default with --style-loss mrf: conv3_1,conv4_1)", default=None),
        Flag("--style-weights", "blend weights of several style images, e.g. 0.7,0.3 "
             "(default: equal)"),
        Flag("--style-loss", "style statistic: gram (Gatys et al.), meancov (feature means and "
             "covariances), w2 (Wasserstein-2 between Gaussians of the features), hist (Risser "
             "et al.'s histograms), swd (sliced Wasserstein, Heitz et al.) or mrf (Li & Wand's "
             "nearest 3x3 feature patches)", "style_loss", choices="style_loss"),
        Flag("--swd-directions", "swd: random directions per layer, new at every step (drawn from "
             "--seed and the step number)", "swd_directions", ranged(positive_int, hi=4096), metavar="K"),
        Flag("--mrf-augment", "mrf: also match the patches of rotated (90, 180, 270 degrees) and "
             "rescaled (0.8x, 1.25x) copies of the style (6x the patches and the time)", "mrf_augment",
             action="store_true"),
        Flag("--normalization", "cost normalisation convention (of the Gram cost)", "normalization",
             choices="normalization"),
        Flag("--pooling", "VGG pooling (Gatys et al. suggest avg)", "pooling", choices="pooling"),
        Flag("--padding", "what VGG's convolutions and the TV term see beyond the border: zero "
             "(VGG's own), reflect, or circular (the image wraps around: seamless textures)",
             "padding", choices="padding"),
    ),
    "regions and masks (Gatys et al. 2017; a STYLE argument may be STYLE:MASK: that style "
    "goes where MASK is white, styles without a mask take the rest)": (
        Flag("--mask-colors", "one colour-coded image of every region: each colour is a region, "
             "for the styles in the order the colours first appear from the top left",
             metavar="IMG"),
        Flag("--style-regions", "per style image, a mask of which of its pixels to learn from "
             "('-': all of it)", nargs="+", metavar="MASK"),
        Flag("--content-mask", "per-pixel content strength: white keeps the photo, black frees "
             "the pixel to follow the style", metavar="IMG"),
        Flag("--mask-resize", "masks are resized to their image; 'fit' refuses a mask whose "
             "aspect ratio differs by more than 1%%, 'stretch' stretches it",
             choices=("fit", "stretch"), default="fit"),
    ),
    "photo mode (Luan et al. 2017; smoothing: Li et al. 2018)": (
        Flag("--photo", "photorealistic transfer: adds the matting Laplacian term of the content "
             "(--photo-weight), starts from the content (unless --init says otherwise) and keeps "
             "the output a photo; pair it with --auto-regions K or masks", action="store_true"),
        Flag("--photo-weight", "weight of the photorealism term, the matting Laplacian energy per "
             "pixel (default: 0, off; with --photo: 1e8)", type=WEIGHT, metavar="W"),
        Flag("--auto-regions", "find K matching regions of the content and the style by k-means "
             "on VGG features and colour, write their masks next to the output and give each "
             "region its own style statistics (one style image)",
             type=ranged(integer, lo=1, hi=AUTO_REGIONS_MAX), metavar="K"),
        Flag("--smooth", "post-pass: photo smoothing of the result (Li et al. 2018) with this "
             "weight (default when given alone: 1)", type=positive_weight, nargs="?",
             const=SMOOTH_WEIGHT, metavar="LAMBDA"),
    ),
    "colour, scales, averaging, stopping": (
        Flag("--preserve-color", "keep the content's colours: 'luminance' optimises the luminance "
             "only (Gatys et al. 2017), 'histogram' matches the style's colour statistics to the "
             "content first", "preserve_color", choices="preserve_color"),
        Flag("--original-colors", "post-hoc luminance swap onto the content's colours",
             "original_colors", action="store_true"),
        Flag("--scales", "coarse-to-fine scales, each --iters iterations", "scales",
             ranged(positive_int, hi=16)),
        Flag("--min-size", "longest side of the first scale (default: --size / 2^(scales-1))",
             type=SIDE),
        Flag("--avg-decay", "output the bias-corrected exponential moving average of the iterates "
             "with this decay, e.g. 0.9 (0: off)", "avg_decay",
             ranged(nonneg_float, hi=1.0, hi_open=True)),
        Flag("--tol", "stop a scale when the cost changes by less than this fraction over "
             "--tol-window iterations; --iters becomes a maximum (0: off)", "tol", FRACTION),
        Flag("--tol-window", "iterations the --tol test looks back", "tol_window",
             ranged(positive_int, hi=10**6)),
    ),
    "optimizer": (
        Flag("--optimizer", "adam, lbfgs (Gatys et al.'s choice) or sgd", "optimizer",
             choices="optimizer"),
        Flag("--lr", "Adam/SGD step in pixel units, pixels in [0, 1]", "learning_rate",
             ranged(positive_float, hi=1e3)),
        Flag("--lbfgs-history", "L-BFGS memory", "lbfgs_history", ranged(positive_int, hi=1000)),
        Flag("--lbfgs-linesearch", "L-BFGS step: zoom (a line search, ~1.3 evaluations an "
             "iteration) or none (the full quasi-Newton step, one evaluation, non-convex pairs "
             "skipped: the reference tools' L-BFGS)", "lbfgs_linesearch", choices="lbfgs_linesearch"),
        Flag("--init", "starting image: noise, content, content+noise, or model:PATH (the output "
             "of a network trained with nst-jax train)", "init", type=init_arg),
        Flag("--noise-ratio", "noise share r of content+noise: (1-r)*C + r*U(0,1)", "noise_ratio",
             FRACTION),
        Flag("--seed", "random seed of the initial noise, 0 to 2^32-1", type=ranged(integer, 0, 2**32 - 1),
             default=0),
    ),
    "run": (
        Flag("--weights", "weights .h5 (default: vgg19.h5, else vgg16.h5, looked up in ./weights, "
             "then $NST_JAX_WEIGHTS or the per-user cache folder)"),
        Flag("--precision", "what the VGG convolutions compute: f32 = float32 at XLA's default "
             "(exact on CPU, TF32 on NVIDIA GPUs, bf16 passes on TPUs); highest = true float32 "
             "everywhere (slower on GPU/TPU); bf16 = bfloat16 with float32 accumulation (pays off "
             "on GPU/TPU, not on CPU). Grams and costs are float32 in every mode", "precision",
             choices="precision"),
        Flag("--tile", "compute the cost and its gradient exactly in tiles of at most PX x PX "
             "pixels plus a halo (memory of one tile, about twice the time): auto = only when "
             "the whole image does not fit in memory, the largest tile that fits; 0 = never",
             type=tile_arg, default="auto", metavar="PX|auto|0"),
        Flag("--device", "JAX platform; an error if there is no such device (default: JAX's choice)",
             choices=("cpu", "gpu", "tpu")),
        Flag("--report-every", "at most N iterations fused per compiled call between progress updates "
             "(the largest such chunk that --save-every, --checkpoint-every and --animate-every divide)",
             "report_every",
             ranged(positive_int, hi=10**6), metavar="N"),
        Flag("--bit-depth", "bits per channel of PNG outputs: 16 keeps smooth gradients of large "
             "prints from banding", type=int, choices=(8, 16), default=8),
        Flag("--overwrite", "replace existing output files", action="store_true"),
        Flag("--quiet", "print only the final line", action="store_true"),
    ),
}


def add_flags(ap: argparse.ArgumentParser, groups: tuple[str, ...] | None = None,
              skip: tuple[str, ...] = ()) -> None:
    """Every flag of :data:`GROUPS` (or of the groups whose titles start with one of
    ``groups``, less the flags named in ``skip``), with its default (from
    :class:`Config` where it fills a field) in its help."""
    from nst_jax.config import Config

    d = Config()
    for title, flags in GROUPS.items():
        if groups is not None and not title.startswith(groups):
            continue
        g = ap.add_argument_group(title)
        for f in flags:
            if f.name in skip:
                continue
            default = getattr(d, f.field) if f.field else f.default
            if f.name == "--style-layers":  # shown; None in args: the style loss picks (style_layers_arg)
                default = ",".join(f"{n}:{v:g}" for n, v in zip(d.style_layers, d.style_weights,
                                                                  strict=True))
            kw: dict[str, Any] = {"help": f.help}
            if f.action:
                kw["action"] = f.action
                kw["help"] += " (default: off)"
            else:
                choices = _choices(f.choices) if isinstance(f.choices, str) else f.choices
                kw.update(type=f.type, choices=choices, metavar=f.metavar,
                          default=None if f.name == "--style-layers" else default)
                if f.nargs:
                    kw["nargs"] = f.nargs
                if f.const is not None:
                    kw["const"] = f.const
                if default is not None and "(default" not in f.help:
                    kw["help"] += f" (default: {default:g})" if isinstance(default, float) else (
                        f" (default: {default})")
            g.add_argument(f.name, **kw)


def style_layers_arg(args: argparse.Namespace) -> str:
    """``--style-layers`` as given, else the default of ``--style-loss`` (``mrf``:
    :data:`nst_jax.mrf.DEFAULT_LAYERS`, equal weights; the others: :class:`Config`'s)."""
    if getattr(args, "style_layers", None):
        return args.style_layers
    from nst_jax import mrf
    from nst_jax.config import Config

    if getattr(args, "style_loss", None) == "mrf":
        return ",".join(mrf.DEFAULT_LAYERS)
    d = Config()
    return ",".join(f"{n}:{v:g}" for n, v in zip(d.style_layers, d.style_weights, strict=True))


def config_fields(args: argparse.Namespace, groups: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``{Config field: value}`` for every flag of the table (or of the groups whose titles
    start with one of ``groups``) that fills one."""
    return {f.field: getattr(args, f.dest) for title, flags in GROUPS.items() for f in flags
            if f.field and (groups is None or title.startswith(groups))}
