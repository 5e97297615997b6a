"""[pure] Spatial control (Gatys et al. 2017, section 3): where each style goes in G,
which pixels of each style image it is learnt from, and how strongly each pixel of
G must keep the photo.

A :class:`Guides` holds pixel masks of any size; :func:`at_layers` resizes them to
the images of a run (each scale of a coarse-to-fine run) and carries them to the
layers of the network, checking them, before anything is compiled.

Carrying a mask to a layer: VGG's 3x3 convolutions (SAME padding, stride 1) keep the
grid and each 2x2 pooling halves it, so a pixel mask is **average-pooled** 2x2
(VALID, rounding sizes down as the network does) once per pooling before the layer.
Each feature position then weighs by the share of its ``2^p x 2^p`` pixel cell that
lies in the region. Gatys et al. 2017 (section 3.1) compare simple resizing of the
masks with eroding them so that only positions whose receptive field lies inside
the region count. Averaging is the simple resizing done exactly on the network's own
grid; erosion makes thin regions vanish at deep layers (a ``conv5_1`` position covers
16 x 16 pixels and sees about 200), and max-pooling the mask (pooled like max-pooled
features) would dilate every region into its neighbours. Soft edges stay soft.

References:
  Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
  Neural Style Transfer" (CVPR 2017).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Largest relative difference of aspect ratios of a mask and its image (unless stretched).
ASPECT_TOLERANCE = 0.01
#: A colour of a label image is a region when it covers at least this share of the pixels.
MIN_LABEL_SHARE = 0.005
#: Colours of a label image closer than this (RGB distance, 0-255) are one colour.
LABEL_TOLERANCE = 40.0


@dataclasses.dataclass(frozen=True)
class Guides:
    """Masks that steer a run; every mask is float in [0, 1], of any size (resized).

    Attributes:
      regions: ``(R, H, W)``: where each region of G is (soft edges allowed; regions
        may overlap). ``None``: one region, the whole image.
      region_of: the region of each style image (several styles in one region are
        blended as usual, with their blend weights renormalised within the region).
        Default: style ``k`` in region ``k`` (needs as many regions as styles).
      style_masks: per style image, ``(h, w)``: which of its pixels to learn from, or
        ``None`` for all of them. Empty: all of every style image.
      content: ``(H, W)`` content strength: 1 keeps the photo, 0 frees the pixel to
        follow the style (the content cost's per-position weight). ``None``: 1.
      stretch: allow masks whose aspect ratio differs from their image's by more than
        :data:`ASPECT_TOLERANCE` (they are stretched); otherwise that is an error.
    """

    regions: Any = None
    region_of: tuple[int, ...] | None = None
    style_masks: tuple[Any, ...] = ()
    content: Any = None
    stretch: bool = False


def layer_pools(layer: str) -> int:
    """How many 2x2 poolings come before ``layer`` (``conv4_2`` -> 3)."""
    return int(layer[4]) - 1


def pool_mask(mask: Array, pools: int) -> Array:
    """``mask (..., H, W)`` average-pooled 2x2 ``pools`` times (VALID: an odd last row
    or column is dropped, as :func:`nst_jax.vgg.pool2x2` drops it)."""
    m = jnp.asarray(mask, jnp.float32)
    for _ in range(pools):
        h, w = m.shape[-2] // 2, m.shape[-1] // 2
        m = m[..., : 2 * h, : 2 * w].reshape(*m.shape[:-2], h, 2, w, 2).mean(axis=(-3, -1))
    return m


def layer_masks(mask: Array, layers: Sequence[str]) -> dict[str, Array]:
    """``{layer: mask carried to the layer}``: ``(..., H, W)`` -> ``(..., H/2^p, W/2^p)``
    with ``p`` = :func:`layer_pools` (see the module for why average pooling)."""
    return {layer: pool_mask(mask, layer_pools(layer)) for layer in layers}


def resize_mask(mask: Array, hw: tuple[int, int]) -> Array:
    """``mask (..., H, W)`` resized to ``hw`` (antialiased bilinear), clipped to [0, 1]."""
    m = jnp.asarray(mask, jnp.float32)
    if tuple(m.shape[-2:]) != tuple(hw):
        m = jax.image.resize(m, (*m.shape[:-2], *hw), "linear", antialias=True)
    return jnp.clip(m, 0.0, 1.0)


def check_aspect(mask_hw: Sequence[int], hw: Sequence[int], what: str, stretch: bool = False) -> None:
    """Raise ``ValueError`` when a mask's aspect ratio differs from its image's by more
    than :data:`ASPECT_TOLERANCE` (unless ``stretch``). The image's sides may be rounded
    (a resized photo, a coarse scale): half a pixel of rounding on each side is allowed."""
    a_mask = mask_hw[1] / mask_hw[0]
    h, w = hw[0], hw[1]
    lo, hi = (w - 0.5) / (h + 0.5), (w + 0.5) / max(h - 0.5, 0.5)
    if stretch or lo * (1 - ASPECT_TOLERANCE) <= a_mask <= hi * (1 + ASPECT_TOLERANCE):
        return
    raise ValueError(
        f"{what}: {mask_hw[1]}x{mask_hw[0]} has aspect ratio {a_mask:.3f}, its image "
        f"{w}x{h} has {w / h:.3f} (more than {ASPECT_TOLERANCE:.0%} apart); "
        "stretch it on purpose with --mask-resize stretch (Guides(stretch=True))")


def region_of(guides: Guides, n_styles: int) -> tuple[int, ...]:
    """The region of each style image, checked (every region has a style)."""
    n_regions = 1 if guides.regions is None else int(np.shape(guides.regions)[0])
    if guides.region_of is not None:
        of = tuple(int(r) for r in guides.region_of)
    elif n_regions in (1, n_styles):
        of = tuple(range(n_styles)) if n_regions == n_styles else (0,) * n_styles
    else:
        raise ValueError(f"regions: {n_regions} regions for {n_styles} style images; "
                         "say which region each style is for (region_of)")
    if len(of) != n_styles or any(not 0 <= r < n_regions for r in of):
        raise ValueError(f"region_of: expected {n_styles} region indices in [0, {n_regions}), got {of}")
    empty = sorted(set(range(n_regions)) - set(of))
    if empty:
        raise ValueError(f"regions: region(s) {empty} have no style image")
    return of


def regions_from_labels(
    labels: np.ndarray, min_share: float = MIN_LABEL_SHARE, tolerance: float = LABEL_TOLERANCE
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Regions of a colour-coded label image: one binary mask per colour.

    Distinct colours are grouped, most frequent first, with every colour within
    ``tolerance`` (Euclidean RGB distance, 0-255 scale) of a more frequent one (JPEG
    noise, anti-aliased edges). Groups covering at least ``min_share`` of the pixels are
    the regions, in the order in which they first appear scanning rows from the top
    left; the pixels of smaller groups join the region of the nearest colour.

    Args:
      labels: ``(H, W, 3)`` uint8.

    Returns:
      ``(masks (R, H, W) float32 in {0, 1}, [colour (r, g, b) of each region])``, the
      colour of a region being its most frequent one.
    """
    if labels.ndim != 3 or labels.shape[-1] != 3:
        raise ValueError(f"labels: expected an (H, W, 3) colour image, got {labels.shape}")
    flat = labels.reshape(-1, 3).astype(np.int64)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    _, first, inverse, counts = np.unique(codes, return_index=True, return_inverse=True,
                                          return_counts=True)
    colours = flat[first]
    group = np.empty(len(colours), np.int64)
    centres: list[int] = []
    for i in np.argsort(-counts, kind="stable"):
        if centres:
            d = ((colours[centres] - colours[i]) ** 2).sum(axis=1)
            j = int(np.argmin(d))
            if d[j] <= tolerance ** 2:
                group[i] = j
                continue
        centres.append(int(i))
        group[i] = len(centres) - 1
    share = np.bincount(group, weights=counts) / len(codes)
    seen = np.full(len(centres), len(codes))
    np.minimum.at(seen, group, first)
    major = np.flatnonzero(share >= min_share)
    major = major[np.argsort(seen[major], kind="stable")]
    palette = colours[[centres[g] for g in major]]
    nearest = np.argmin(((colours[:, None, :] - palette[None, :, :]) ** 2).sum(-1), axis=1)
    keep = np.full(len(centres), -1)
    keep[major] = np.arange(len(major))
    label_of = np.where(keep[group] >= 0, keep[group], nearest)
    region = label_of[inverse.reshape(-1)].reshape(labels.shape[:2])
    masks = np.stack([(region == r) for r in range(len(major))]).astype(np.float32)
    return masks, [tuple(int(v) for v in c) for c in palette]


def _check_mass(m: np.ndarray, layer: str, what: str, style_loss: str) -> None:
    """A region must cover a position at every style layer (and two for a covariance)."""
    mass = float(np.sum(m))
    if mass <= 0.0:
        raise ValueError(f"{what}: empty at {layer} (all zeros once carried to its "
                         f"{m.shape[-1]}x{m.shape[-2]} grid): enlarge the region or drop {layer}")
    if style_loss != "gram" and mass < 2.0:
        raise ValueError(f"{what}: covers {mass:.2g} position(s) of {layer}; style_loss "
                         f"{style_loss!r} needs at least 2 to estimate a covariance")


def at_layers(
    guides: Guides,
    content_hw: tuple[int, int],
    style_hws: Sequence[tuple[int, int]],
    config: Any,
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """The masks of ``guides`` for images of these sizes, at the layers of ``config``.

    Eager and checked (call it outside ``jit``): aspect ratios, regions without a
    style, and regions that are empty (or, for ``meancov``/``w2``, cover fewer than 2
    positions) at a style layer, named.

    Args:
      guides: the masks.
      content_hw: G's size at this scale.
      style_hws: each style image's size at this scale.
      config: a validated :class:`~nst_jax.config.Config` (layers, ``style_loss``).
      names: labels of the styles for messages (default ``style 0``, ...).

    Returns:
      ``{"region_of": (k -> r), "masks": {layer: (R, h, w)} or None,
      "style_masks": [ {layer: (h', w')} or None per style ], "content": (h, w) or None}``.
    """
    labels = [names[k] if k < len(names) else f"style {k}" for k in range(len(style_hws))]
    of = region_of(guides, len(style_hws))
    out: dict[str, Any] = {"region_of": of, "masks": None, "content": None,
                           "style_masks": [None] * len(style_hws)}
    if guides.regions is not None:
        regions = jnp.asarray(guides.regions, jnp.float32)
        if regions.ndim != 3:
            raise ValueError(f"regions: expected masks of shape (R, H, W), got {regions.shape}")
        check_aspect(regions.shape[1:], content_hw, "region masks", guides.stretch)
        masks = layer_masks(resize_mask(regions, content_hw), config.style_layers)
        for layer, m in masks.items():
            for r, mr in enumerate(np.asarray(m)):
                who = ", ".join(labels[k] for k in range(len(of)) if of[k] == r)
                _check_mass(mr, layer, f"region {r + 1} ({who})", config.style_loss)
        out["masks"] = masks
    if guides.style_masks:
        if len(guides.style_masks) != len(style_hws):
            raise ValueError(f"style_masks: expected {len(style_hws)} (one per style image, None "
                             f"for all of it), got {len(guides.style_masks)}")
        for k, (sm, hw) in enumerate(zip(guides.style_masks, style_hws, strict=True)):
            if sm is None:
                continue
            sm = jnp.asarray(sm, jnp.float32)
            if sm.ndim != 2:
                raise ValueError(f"style_masks[{k}]: expected (h, w), got {sm.shape}")
            check_aspect(sm.shape, hw, f"style region of {labels[k]}", guides.stretch)
            ms = layer_masks(resize_mask(sm, hw), config.style_layers)
            for layer, m in ms.items():
                _check_mass(np.asarray(m), layer, f"style region of {labels[k]}", config.style_loss)
            out["style_masks"][k] = ms
    if guides.content is not None:
        c = jnp.asarray(guides.content, jnp.float32)
        if c.ndim != 2:
            raise ValueError(f"content mask: expected (H, W), got {c.shape}")
        check_aspect(c.shape, content_hw, "content mask", guides.stretch)
        out["content"] = pool_mask(resize_mask(c, content_hw), layer_pools(config.content_layer))
    return out


__all__ = ["ASPECT_TOLERANCE", "LABEL_TOLERANCE", "MIN_LABEL_SHARE", "Guides", "at_layers",
           "check_aspect", "layer_masks", "layer_pools", "pool_mask", "region_of",
           "regions_from_labels", "resize_mask"]
