"""[pure] The style statistics that need the whole image: the targets of those that keep
the style's features themselves rather than a summary, ``swd``'s feature samples
(:mod:`nst_jax.swd`) and ``mrf``'s patches (:mod:`nst_jax.mrf`), their checks on the
inputs, and each one's layer cost (``hist``'s too, :func:`layer_cost`).

:func:`check` runs eagerly in :func:`nst_jax.problem.compute_targets` (shapes and
weights are known there); :func:`style_targets` runs inside its jitted body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import mrf, swd, vgg

Array = jax.Array


def layer_hw(hw: tuple[int, int], layer: str) -> tuple[int, int]:
    """``(nH, nW)`` of ``layer``'s feature map for an ``hw`` image (2x2 VALID pools)."""
    f = vgg.min_image_size(layer)  # 2^(pools before the layer)
    return hw[0] // f, hw[1] // f


def augmented_sizes(hw: tuple[int, int], augment: bool) -> list[tuple[int, int]]:
    """The style copies' sizes :func:`style_targets` uses (rotations swap the sides)."""
    if not augment:
        return [hw]
    out = [hw]
    for quarter, scale in mrf.AUGMENT:
        h, w = (hw[1], hw[0]) if quarter % 2 else hw
        out.append((max(1, round(h * scale)), max(1, round(w * scale))))
    return out


def check(content_hw: tuple[int, int], style_hws: Sequence[tuple[int, int]], w: np.ndarray,
          config: Any) -> None:
    """Refuse what ``mrf`` cannot do, with a message: a style layer too deep for 3x3
    patches (in G or in a style image), uneven blend weights (patches are pooled)."""
    if config.style_loss != "mrf":
        return
    mrf.check_layers({k: layer_hw(content_hw, k) for k in config.style_layers}, "image")
    for i, hw in enumerate(style_hws):
        for shw in augmented_sizes(hw, config.mrf_augment):
            mrf.check_layers({k: layer_hw(shw, k) for k in config.style_layers}, f"style image {i + 1}")
    if not np.allclose(w, w[0]):
        raise ValueError("style_loss 'mrf': blend weights are not offered (the styles' patches are "
                         f"pooled and the nearest wins); got {list(w)}: use equal weights")


def _copies(s: Array, augment: bool) -> list[Array]:
    """The style image and, with ``augment``, its rotated and rescaled copies."""
    out = [s]
    if augment:
        for quarter, scale in mrf.AUGMENT:
            r = jnp.rot90(s, quarter, axes=(0, 1))
            if scale != 1.0:
                h, w = r.shape[:2]
                r = jnp.clip(jax.image.resize(r, (max(1, round(h * scale)), max(1, round(w * scale)), 3),
                                              "bilinear", antialias=True), 0.0, 1.0)
            out.append(r)
    return out


def style_targets(features: Callable[[Array], dict[str, Array]], styles: Sequence[Array], w: Array,
                  config: Any) -> dict[str, Any]:
    """``{"style": {layer: target}}`` (and for ``swd`` the seed's key, ``"swd_key"``,
    ``jax.random.key(0)``'s until the run puts its own in: :func:`swd.seed_key`).

    ``features(rgb)`` gives the style layers' activations of an image. ``swd``: per
    layer ``{"samples": (per style (M_i, C)), "w": (styles,)}``; ``mrf``: the pooled
    patches ``(N, 3, 3, C)`` of every style (and its copies with ``mrf_augment``)."""
    if config.style_loss == "swd":
        feats = [features(s) for s in styles]
        style = {k: {"samples": tuple(swd.swd_target(f[k]) for f in feats), "w": w}
                 for k in config.style_layers}
        return {"style": style, "swd_key": swd.seed_key(jax.random.key(0))}
    pooled: dict[str, list[Array]] = {k: [] for k in config.style_layers}
    for s in styles:
        for c in _copies(s, config.mrf_augment):
            f = features(c)
            for k in config.style_layers:
                pooled[k].append(mrf.mrf_target(f[k]))
    return {"style": {k: jnp.concatenate(v, axis=0) for k, v in pooled.items()}}


def layer_cost(style_loss: str, target: Any, a_G: Array) -> Array:
    """One layer's raw cost of a statistic that keeps the whole image's features: ``hist``
    (:func:`nst_jax.histogram.hist_cost`), ``swd`` (its target carries the step's
    ``key`` and the direction ``count``, put in by :func:`nst_jax.problem.objective`) or
    ``mrf``."""
    if style_loss == "hist":
        from nst_jax import histogram

        return histogram.hist_cost(target, a_G)
    if style_loss == "swd":
        return swd.swd_cost(target, a_G, target["key"], target["count"])
    return mrf.mrf_cost(target, a_G)


__all__ = ["augmented_sizes", "check", "layer_cost", "layer_hw", "style_targets"]
