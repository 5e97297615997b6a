"""[I/O] The flags every run shares, and turning them into a checked, loaded run.

Everything that can be refused is refused here, before anything large is allocated
or compiled: numbers, layers, weights, image headers (the sizes come from the
headers, so ``--size 100000`` is refused by the memory check before any pixel is
decoded or resized), and the predicted memory per device.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from nst_jax import weights as W
from nst_jax.cli.common import (
    CliError,
    Prepared,
    load_weights_arg,
    parse_numbers,
    parse_style_layers,
    select_device,
)
from nst_jax.cli.flags import add_flags, config_fields, style_layers_arg
from nst_jax.cli.photo import check_colour, check_photo_inputs, find_regions, photo_fields
from nst_jax.cli.regions import load_guides, split_styles


def add_inputs(ap: argparse.ArgumentParser, description: str, output_help: str, *,
               content: bool = True) -> None:
    """What ``stylize`` and ``grid`` take first: CONTENT (unless ``content`` is False: a
    texture), STYLE..., ``-o``."""
    ap.description = description.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    if content:
        ap.add_argument("content", help="content photo (any format Pillow reads)")
    ap.add_argument("style", nargs="+", metavar="STYLE[:MASK]",
                    help="style image(s); several are blended (--style-weights); STYLE:MASK puts "
                         "a style only where MASK (grayscale, any size) is white")
    ap.add_argument("-o", "--output", default=None, help=output_help)


def add_common_args(ap: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Flags shared by ``stylize`` and ``grid``: the table of :mod:`nst_jax.cli.flags`
    (less those in ``skip``)."""
    add_flags(ap, skip=skip)


def report_interval(report_every: int, *wanted: int | None) -> int:
    """Steps per compiled chunk: the largest ``d <= report_every`` that divides every
    interval in ``wanted`` (``--save-every``, ``--checkpoint-every``, ``--animate-every``;
    ``None`` = not asked for), or ``report_every`` when none is asked for.

    Every chunk ends in a report, and each report measures the cost terms at the shown
    image (one forward pass of the network: ~5% of a step at every 10 steps, VGG16 256
    px). ``gcd(report_every, wanted...)`` reported more often than anyone asked:
    ``--save-every 10`` with the default 25 made chunks of 5, a report every 5 steps;
    this gives 10. Progress still comes at least every ``report_every`` steps, and so
    does a check for Ctrl-C.
    """
    given = [n for n in wanted if n]
    if not given:
        return report_every
    g = math.gcd(*given)
    return next(d for d in range(min(report_every, g), 0, -1) if g % d == 0)


def prepare(args: argparse.Namespace, report_every: int, *, points: int = 1) -> Prepared:
    """Select the device, parse the layer/blend specs, load weights and images, build
    the :class:`Config`; every user error becomes a :class:`CliError`.

    ``points``: grid points held at once, spread over all devices (``jax.devices()``).
    """
    select_device(args.device)
    import jax

    from nst_jax import image as I
    from nst_jax import statistics, vgg
    from nst_jax.config import Config

    names, lw = parse_style_layers(style_layers_arg(args))
    args.style, mask_paths = split_styles(args.style)
    args.style_masks = mask_paths if any(mask_paths) else None
    check_photo_inputs(args, len(args.style))
    blend = parse_numbers("--style-weights", args.style_weights, count=len(args.style),
                          what="weights (one per style image)")
    if blend is not None and sum(blend) <= 0:
        raise CliError(f"--style-weights: expected weights with a positive sum, got {args.style_weights!r}")
    wpath, params, spec, meta_w = load_weights_arg(args.weights)
    arch = vgg.arch_of(params)
    try:
        config = Config(**{
            **config_fields(args), "style_layers": names, "style_weights": lw,
            "min_size": args.min_size or 0, "report_every": report_every, **photo_fields(args),
        }).validate(arch)
    except ValueError as e:
        raise CliError(str(e).replace("content_layer: ", "--content-layer: ")) from None
    style_size = max(1, round(args.size * args.style_scale))
    try:  # headers only: nothing is decoded before the checks below
        c_hw = I.image_shape(args.content, args.size)
        s_hw = [I.image_shape(s, style_size) for s in args.style]
    except I.ImageError as e:
        raise CliError(str(e)) from None
    config, layout = _fit(args, arch, c_hw, s_hw, config, points)
    guides, where = load_guides(args, mask_paths, args.style, c_hw, s_hw, config)
    if (guides is not None or getattr(args, "auto_regions", None)) and \
            config.style_loss in statistics.WHOLE_IMAGE_LOSSES:
        raise CliError(f"style_loss {config.style_loss!r}: regions and masks are not offered (it "
                       "matches the whole image's features); use gram, meancov or w2 with them")
    if where and not args.quiet:
        print(where, file=sys.stderr)
    try:
        content = I.load_image(args.content, args.size)
        styles = [I.load_image(s, style_size) for s in args.style]
    except I.ImageError as e:
        raise CliError(str(e)) from None
    if not hasattr(args, "inputs"):  # a batch checks each of its photos (a grey one is skipped)
        check_colour(args, content)
    pairing = None
    if getattr(args, "auto_regions", None):
        pairing, guides = find_regions(args, params, spec, config, content, styles[0],
                                       getattr(guides, "content", None))
        styles, blend = [styles[0]] * len(pairing.content), None
    settings = dict(vars(args))
    settings.pop("func", None)
    settings["style_layers"] = dict(zip(config.style_layers, config.style_weights, strict=True))
    settings["tile"] = config.tile  # what --tile auto chose
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
    meta["devices"] = len(layout.devices) if layout.rows or layout.tiles else 1
    return Prepared(params, spec, arch, config, content, styles, blend, meta, layout, guides, pairing)


def _fit(args: argparse.Namespace, arch: str, c_hw: tuple[int, int], s_hw: list[tuple[int, int]],
         config: Any, points: int) -> tuple[Any, Any]:
    """The config with its tile (``--tile``, or what ``auto`` chose to fit in memory) and
    the devices' layout, checked: sizes against the layers, memory, and what a tiled run
    cannot do (non-zero padding, ``hist``)."""
    import jax

    from nst_jax.optimize import check_sizes

    def checked(c: Any) -> Any:
        try:
            return c.validate(arch)
        except ValueError as e:
            raise CliError(str(e)) from None

    if isinstance(args.tile, int) and args.tile:
        if config.padding != "zero":
            raise CliError(f"--padding {config.padding}: tiled runs need zero padding (the windows are "
                           f"exact only for it); drop --tile {args.tile} or use --padding zero")
        config = checked(config.replace(tile=args.tile))
    layout = rows_layout(getattr(args, "devices", 1), arch, c_hw, config)
    try:
        check_sizes((*c_hw, 3), [(*hw, 3) for hw in s_hw], arch, config,
                    names=[args.content, *args.style])
    except ValueError as e:
        if str(e).startswith("tile:"):
            raise CliError(str(e)) from None
        raise CliError(f"{e} (raise --size / --min-size / --style-scale or use shallower "
                       "layers)") from None
    check_style_sets(args, c_hw, s_hw, config)
    shards = len(layout.devices) if layout.rows else 1
    tile = check_memory(arch, c_hw, config, points=points, devices=len(jax.devices()),
                        auto=args.tile == "auto" and shards == 1, quiet=args.quiet, shards=shards)
    if tile and config.padding != "zero":
        raise CliError(f"--padding {config.padding}: {c_hw[1]}x{c_hw[0]} needs tiles to fit in memory, "
                       "and tiled runs need --padding zero; lower --size")
    return checked(config.replace(tile=tile)), layout


def check_style_sets(args: argparse.Namespace, c_hw: tuple[int, int], s_hw: list[tuple[int, int]],
                     config: Any) -> None:
    """``mrf``'s checks (:func:`nst_jax.style_sets.check`) at the smallest scale, before
    anything is loaded: a layer too deep for 3x3 patches, uneven blend weights."""
    import numpy as np

    from nst_jax import style_sets
    from nst_jax.engine import scale_sizes
    from nst_jax.scales import style_sizes

    hw = scale_sizes(*c_hw, config)[0]
    w = parse_numbers("--style-weights", args.style_weights, count=len(s_hw), what="weights")
    w = [1.0] * len(s_hw) if w is None else w
    try:
        style_sets.check(hw, style_sizes(c_hw, s_hw, hw), np.asarray(w, np.float64), config)
    except ValueError as e:
        raise CliError(str(e)) from None


def rows_layout(devices: int | str, arch: str, hw: tuple[int, int], config: Any) -> Any:
    """The :class:`~nst_jax.layout.Layout` of ``--devices``: one device, the image split
    by rows over N of ``jax.devices()`` (every host's), or with ``--tile`` its tiles
    spread over them (:meth:`~nst_jax.layout.Layout.over_tiles`)."""
    import jax

    from nst_jax.engine import check_rows, scale_sizes
    from nst_jax.layout import Layout

    have = jax.devices()
    n = len(have) if devices == "all" else int(devices)
    if n > len(have):
        raise CliError(f"--devices {n}: only {len(have)} {have[0].platform} device(s) are available")
    if n == 1:
        return Layout()
    if config.tile:
        return Layout.over_tiles(have[:n])
    try:
        check_rows(scale_sizes(*hw, config), n, arch, config)
    except ValueError as e:
        raise CliError(str(e).replace("devices: ", f"--devices {n}: ")) from None
    return Layout.by_rows(have[:n])


def check_memory(arch: str, hw: tuple[int, int], config: Any, *, points: int = 1,
                 devices: int = 1, auto: bool = False, quiet: bool = True, shards: int = 1) -> int:
    """Refuse, before compiling, a run whose peak memory on one device exceeds what is
    free; return the tile to use (``config.tile``, or with ``auto`` the largest tile
    that fits when the whole image does not, announced in one line).

    ``points`` grid points are spread over ``devices`` devices: each device holds
    ``ceil(points / devices)``. On CPU the fitted model (:func:`nst_jax.memory.predict_bytes`)
    predicts it; on GPU/TPU, XLA's own figure for the compiled program
    (:func:`nst_jax.memory.compiled_bytes`) where the backend gives one (untiled runs).
    """
    import jax

    from nst_jax import memory, tiling, vgg
    from nst_jax.problem import uses_photo

    per_device = -(-points // devices)
    deepest = max((config.content_layer, *config.style_layers), key=vgg.layer_names(arch).index)
    device = jax.devices()[0]
    kw = {"optimizer": config.optimizer, "precision": config.precision, "points": per_device,
          "deepest": deepest, "lbfgs_history": config.lbfgs_history, "platform": device.platform,
          "shards": shards, "photo": uses_photo(config)}
    avail = memory.available_bytes(device)
    if avail is None:
        return config.tile
    budget = 0.9 * avail  # leave room for the runtime itself
    need, how = memory.predict_bytes(arch, *hw, tile=config.tile, **kw), "predicted"
    if device.platform != "cpu" and not config.tile and shards == 1:
        try:
            need, how = memory.compiled_bytes(arch, *hw, config, points=per_device), "XLA's figure"
        except Exception:  # no analysis on this backend: keep the model's prediction
            pass
    if need <= budget:
        return config.tile
    where = f" per device ({per_device} grid points each)" if points > 1 else ""
    have = f"{avail / 2**30:.1f} GiB are available"
    if auto or config.tile:
        best = memory.largest_tile(int(budget), arch, *hw, **kw)
        if best and auto:
            if not quiet:
                print(f"nst_jax: {hw[1]}x{hw[0]} needs about {need / 2**30:.1f} GiB whole ({how}) "
                      f"but {have}: computing it exactly in tiles of {best} px "
                      f"(about {memory.predict_bytes(arch, *hw, tile=best, **kw) / 2**30:.1f} GiB)",
                      file=sys.stderr)
            return best
        halo = max(tiling.receptive_halo(arch, [deepest]))
        smallest = memory.predict_bytes(arch, *hw, tile=halo, **kw)
        if not best:
            raise CliError(f"{hw[1]}x{hw[0]} needs about {smallest / 2**30:.1f} GiB{where} even in "
                           f"the smallest tiles ({halo} px: the image-sized arrays alone) but {have}: "
                           "lower --size" + (" or --chunk" if points > 1 else ""))
        raise CliError(f"--tile {config.tile}: {hw[1]}x{hw[0]} needs about {need / 2**30:.1f} GiB"
                       f"{where} but {have}: use --tile {best} or less (or --tile auto)")
    best = memory.largest_size(int(avail), arch, aspect=hw[0] / hw[1], **kw)
    hint = f"the largest size that fits whole is about --size {best}" if best else "nothing fits whole"
    extra = "" if config.precision == "bf16" or device.platform == "cpu" else (
        "; --precision bf16 halves the activations")
    raise CliError(f"{hw[1]}x{hw[0]} needs about {need / 2**30:.1f} GiB ({how}){where} but "
                   f"{have}: {hint}, or use --tile auto{extra}"
                   + (" (or a smaller --chunk)" if points > 1 else ""))
