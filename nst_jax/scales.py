"""[host] What each coarse-to-fine scale sees: its size, its config, its inputs and targets.

Split from :mod:`nst_jax.engine` (the loop): the sizes of the scales and the checks
that every layer still has positions at the first one, the images resized to a
scale (styles scale with the content, masks with their images), and the targets
computed there, for one photo or a batch of photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.guides import Guides
from nst_jax.problem import compute_targets, content_target, network_inputs, photo_targets

Array = jax.Array


def scale_sizes(height: int, width: int, config: Config) -> list[tuple[int, int]]:
    """``(H, W)`` of each coarse-to-fine scale, the last one the full size.

    Longest sides grow geometrically from ``min_size`` (default: full / 2^(scales-1)).
    """
    longest = max(height, width)
    n = config.scales
    if n == 1:
        return [(height, width)]
    lo = config.min_size or max(1, round(longest / 2 ** (n - 1)))
    lo = min(lo, longest)
    sides = [round(lo * (longest / lo) ** (i / (n - 1))) for i in range(n)]
    return [(max(1, round(height * s / longest)), max(1, round(width * s / longest))) for s in sides]


def at_scale(config: Config, hw: tuple[int, int]) -> Config:
    """``config`` for one coarse-to-fine scale: tiling (``config.tile``) only where the
    scale is larger than one tile (a smaller one costs less memory whole)."""
    if config.tile and max(hw) <= config.tile:
        return config.replace(tile=0)
    return config


def check_sizes(
    content_shape: Sequence[int],
    style_shapes: Sequence[Sequence[int]],
    arch: str,
    config: Config,
    names: Sequence[str] = ("content image", "style image"),
) -> None:
    """Raise ``ValueError`` when C or an S is too small for the deepest layer used.

    Sizes are checked at the first coarse-to-fine scale (styles scale with C). ``names``
    are the labels used in the message (file names, in the CLI); the last one repeats.
    """
    layers = vgg.layer_names(arch)
    deepest = layers[max(layers.index(x) for x in (config.content_layer, *config.style_layers))]
    if config.tile:
        from nst_jax import tiling

        tiling.plan_tiles(content_shape, config.tile, arch, [config.content_layer, *config.style_layers])
    need = vgg.min_image_size(deepest)
    first = scale_sizes(content_shape[0], content_shape[1], config)[0]
    ratio = first[0] / content_shape[0]
    for i, shape in enumerate([content_shape, *style_shapes]):
        h, w = (round(d * ratio) for d in shape[:2])
        if min(h, w) < need:
            where = " at the first scale" if config.scales > 1 else ""
            raise ValueError(
                f"{names[min(i, len(names) - 1)]}: {w}x{h}{where} is too small for {deepest}: "
                f"the minimum is {need}x{need} pixels")
        if config.style_loss != "gram":
            for layer in config.style_layers:
                step = vgg.min_image_size(layer)
                if (h // step) * (w // step) < 2:
                    raise ValueError(
                        f"{names[min(i, len(names) - 1)]}: {w}x{h} gives {layer} "
                        f"{(h // step) * (w // step)} position(s); style_loss "
                        f"{config.style_loss!r} needs at least 2 to estimate a covariance")


def check_rows(sizes: Sequence[tuple[int, int]], n_devices: int, arch: str, config: Config) -> None:
    """Raise ``ValueError`` when a scale is too short to split over ``n_devices`` by rows.

    Every device must hold at least 2 rows of the deepest pooled feature map, i.e.
    ``H >= n 2^P`` for ``P`` poolings before the deepest layer: XLA:CPU's partitioner
    computed wrong features when a pooled pair of rows straddled two devices holding
    one row each (seen with 4 devices at 16 and 32 rows; every height from 36 up was
    exact), so shorter scales are refused rather than trusted.
    """
    from nst_jax import tiling

    _, align = tiling.receptive_halo(arch, [config.content_layer, *config.style_layers])
    need = n_devices * align
    short = [h for h, _ in sizes if h < need]
    if short:
        where = "the first scale is" if config.scales > 1 else "the image is"
        raise ValueError(
            f"devices: {where} {short[0]} px high, but splitting it over {n_devices} devices by "
            f"rows needs at least {need} ({align} per device: 2 rows of the deepest pooled "
            "feature map each); raise --size/--min-size or use fewer devices")


def resize(rgb: Array, hw: tuple[int, int]) -> Array:
    """Antialiased bilinear resize of ``(H, W, C)`` to ``hw``."""
    if tuple(rgb.shape[:2]) == tuple(hw):
        return jnp.asarray(rgb, jnp.float32)
    return jax.image.resize(jnp.asarray(rgb, jnp.float32), (*hw, rgb.shape[-1]), "linear",
                            antialias=True)


def style_sizes(content_hw: Sequence[int], style_hws: Sequence[Sequence[int]],
                hw: Sequence[int]) -> list[tuple[int, int]]:
    """The style images' sizes when C is resized to ``hw`` (styles scale with C)."""
    return [(max(1, round(s[0] * hw[0] / content_hw[0])), max(1, round(s[1] * hw[0] / content_hw[0])))
            for s in style_hws]


def batch_inputs(contents: Array, styles: list[Array], hw: tuple[int, int], config: Config,
                  params: vgg.Params, spec: vgg.Preprocessing, style_blend: Any) -> tuple[Array, Any]:
    """:func:`scale_inputs` of a batch of photos ``(n, H, W, 3)``: the contents at this
    scale and the targets with a leading axis. The style targets are computed once,
    unless the colour mode makes them depend on the photo (``luminance`` matches the
    style's luminance to it, ``histogram`` its colours), then once per photo."""
    per_photo = config.preserve_color != "none"
    parts, c_all = [], []
    for i in range(contents.shape[0]):
        if i == 0 or per_photo:
            c_s, t = scale_inputs(contents[i], styles, hw, config, params, spec, style_blend)
        else:
            c_s = resize(contents[i], hw)
            t = photo_targets({**parts[0], "content": content_target(
                params, spec, network_inputs(c_s, [], config)[0], config)}, c_s, config)
        parts.append(t)
        c_all.append(c_s)
    return jnp.stack(c_all), jax.tree.map(lambda *a: jnp.stack(a), *parts)


def scale_inputs(content_rgb: Array, styles: list[Array], hw: tuple[int, int], config: Config,
                  params: vgg.Params, spec: vgg.Preprocessing, style_blend: Any,
                  guides: Guides | None = None) -> tuple[Array, Any]:
    """C at this scale and the targets (styles scale with C; masks are resized to each)."""
    c_s = resize(content_rgb, hw)
    s_s = [resize(s, shw) for s, shw in
           zip(styles, style_sizes(content_rgb.shape[:2], [s.shape[:2] for s in styles], hw), strict=True)]
    c_net, s_net = network_inputs(c_s, s_s, config)
    return c_s, photo_targets(compute_targets(params, spec, c_net, s_net, config, style_blend, guides),
                              c_s, config)


__all__ = ["at_scale", "batch_inputs", "check_rows", "check_sizes", "resize", "scale_inputs",
           "scale_sizes", "style_sizes"]
