"""[pure] The exact cost and gradient of a whole image, computed one tile at a time.

Every cost of this package is a function of sums over feature positions: the content
cost of ``S_c = sum_p (a_C[p] - a_G[p])^2`` and each style layer's cost of its moments
``Gram = sum_p F_p F_p^T`` (and ``sum_p F_p`` for ``meancov``/``w2``). So::

    J = f(S)          with  S = sum_tiles s_t(x),   s_t = the sums over the positions tile t owns

and, by the chain rule, ``dJ/dx = sum_t (ds_t/dx)^T g`` with ``g = df/dS`` evaluated once at
the global ``S``. That is a VJP of each tile's own sums with a fixed cotangent:

- pass 1 (forward): run the network over each tile's window, keep no activations, add
  up ``S``; ``J = f(S)``.
- pass 2 (backward): ``g = vjp(f)(S)``: small (``N x N`` per layer); for each tile, the
  VJP of ``<g, s_t(window)>`` with respect to the window, added into the image gradient,
  halo pixels included.

For the lecture's Gram cost this is the familiar ``dJ/dF_p = 4 k F_p (Gram_G/M - T)``
with ``k = beta lambda_l / (4 N^2)`` per layer (``g_Gram = -2 k (T - Gram_G/M) / M``, and
``d<g, F^T F>/dF = F (g + g^T)``); every other normalisation changes only ``k``; for
``meancov``/``w2``, ``f`` is the cost of ``mu = S_1 / M`` and ``C = S_2 / M - mu mu^T``, and
``vjp(f)`` differentiates through them (and ``w2``'s ``tr sqrt``) automatically: there is
one code path for every preset and statistic, and it is exact, not an approximation.
For ``meancov``/``w2`` the sums are taken of ``F - s`` with the style mean ``s`` as a fixed
shift (the covariance is then a difference of small numbers, as in the two-pass formula).

Geometry (:class:`TilePlan`): tiles are ``tile_h x tile_w`` pixels of the image,
multiples of the deepest pooling stride ``2^P`` so that every tile owns whole feature
cells at every level; each tile's window adds a ``halo`` on every side: the number of
pixels by which a window's fake edge corrupts the deepest layer used (3x3 convolutions
widen it by one cell, ``2^p`` pixels at level ``p``; pooling rounds it up to a whole cell).
Windows past the image border are zero padding in the network's input space, and
every activation outside the image's own feature map is zeroed
(``vgg_features(extent=)``): exactly the SAME padding the whole image sees. The result
equals the untiled cost and gradient up to float rounding, for any tile size.

Memory: the working set of one window's forward and backward pass, plus image-sized
arrays (the padded input, its gradient) and the content target (stored tile by tile,
``(n_tiles, h_c, w_c, N)``). Both passes are ``lax.scan``s over the tiles inside the
compiled step.

Differentiable (reverse mode, ``jax.grad``/``value_and_grad``, under ``vmap``) with
respect to the image and the loss weights; the targets and the params get zero
cotangents, and forward mode (``jvp``) is not defined (a ``custom_vjp``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from nst_jax import losses, vgg

Array = jax.Array


def receptive_halo(arch: str, layers: Sequence[str]) -> tuple[int, int]:
    """``(halo, align)`` in pixels for the deepest of ``layers``: how far a window's fake
    edge corrupts that layer, and its pooling stride ``2^P`` (the halo is a multiple)."""
    order = vgg.layer_names(arch)
    deepest = max(order.index(vgg.canonical_layer(x, arch)) for x in layers)
    wrong, pools = 0, 0
    for i, name in enumerate(order[: deepest + 1]):
        if i > 0 and name.endswith("_1"):
            pools += 1
            cell = 2 ** pools
            wrong = -(-wrong // cell) * cell
        wrong += 2 ** pools
    align = 2 ** pools
    return -(-wrong // align) * align, align


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How an ``height x width`` image is cut: ``rows x cols`` tiles of ``tile_h x tile_w``
    pixels (the last ones may reach past the image), windows of ``tile + 2 halo``."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    halo: int
    align: int

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_h)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile_w)

    @property
    def n_tiles(self) -> int:
        return self.rows * self.cols

    @property
    def window(self) -> tuple[int, int]:
        return self.tile_h + 2 * self.halo, self.tile_w + 2 * self.halo

    @property
    def canvas(self) -> tuple[int, int]:
        """The padded input: the tiles plus a halo all round."""
        return self.rows * self.tile_h + 2 * self.halo, self.cols * self.tile_w + 2 * self.halo

    def origin(self, i: Array) -> tuple[Array, Array]:
        """Top-left pixel of tile ``i`` (row-major) in the image."""
        return (i // self.cols) * self.tile_h, (i % self.cols) * self.tile_w


def plan_tiles(shape: Sequence[int], tile: int, arch: str, layers: Sequence[str]) -> TilePlan:
    """The tiling of an image of ``shape (H, W, ...)`` with tiles of at most ``tile`` px.

    ``tile`` is rounded down to a multiple of the pooling stride ``t``; each side then
    gets ``n = ceil(side / t)`` tiles of ``ceil(side / n)`` pixels rounded up to the
    stride (balanced: a 1024 px side with ``tile=768`` gets two 512 px tiles, not a
    768 px tile and a mostly empty one).

    Raises:
      ValueError: when ``tile`` is smaller than the halo (or the stride), naming both.
    """
    halo, align = receptive_halo(arch, layers)
    need = max(halo, align)
    if tile < need:
        deepest = vgg.layer_names(arch)[max(vgg.layer_names(arch).index(vgg.canonical_layer(x, arch))
                                            for x in layers)]
        raise ValueError(
            f"tile: {tile} px is smaller than the {halo} px halo that {deepest} needs "
            f"(the reach of its receptive field); use --tile {need} or more")
    t = tile // align * align
    h, w = int(shape[0]), int(shape[1])

    def balanced(side: int) -> int:  # n = ceil(side / t) tiles of equal size, none hanging over
        n = -(-side // t)
        per = -(-side // n)
        return min(t, -(-per // align) * align)

    return TilePlan(h, w, balanced(h), balanced(w), halo, align)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Problem:
    """The static part of a tiled cost: geometry, layers, and how the cost is formed."""

    plan: TilePlan
    content_layer: str | None
    style_layers: tuple[str, ...]
    pooling: str = "max"
    style_loss: str = "gram"
    normalization: str = "lecture"
    dtype: str = "float32"

    def level(self, layer: str) -> int:
        return int(layer[4]) - 1

    def owned(self, a: Array, layer: str) -> Array:
        """The cells of a window's activations ``a`` that its tile owns."""
        f = 2 ** self.level(layer)
        p = self.plan
        return a[p.halo // f: (p.halo + p.tile_h) // f, p.halo // f: (p.halo + p.tile_w) // f]

    def owned_mask(self, i: Array, layer: str) -> Array:
        """``(h_l, w_l, 1)``: which owned cells of tile ``i`` lie inside the image."""
        f = 2 ** self.level(layer)
        p = self.plan
        r0, c0 = p.origin(i)
        rows = r0 // f + jnp.arange(p.tile_h // f)
        cols = c0 // f + jnp.arange(p.tile_w // f)
        ok = (rows < p.height // f)[:, None] & (cols < p.width // f)[None, :]
        return ok[..., None]

    def shape(self, layer: str, channels: int) -> tuple[int, int, int]:
        """The whole image's feature-map shape at ``layer``."""
        f = 2 ** self.level(layer)
        return self.plan.height // f, self.plan.width // f, channels

    def count(self, layer: str) -> float:
        f = 2 ** self.level(layer)
        return float((self.plan.height // f) * (self.plan.width // f))


def pad_canvas(x: Array, plan: TilePlan) -> Array:
    """The network input ``x (H, W, C)`` zero-padded to ``plan.canvas``."""
    ch, cw = plan.canvas
    h = plan.halo
    return jnp.pad(x, ((h, ch - h - plan.height), (h, cw - h - plan.width), (0, 0)))


def _window(prob: Problem, xpad: Array, i: Array) -> tuple[Array, tuple[Array, Array, int, int]]:
    p = prob.plan
    r0, c0 = p.origin(i)
    xw = lax.dynamic_slice(xpad, (r0, c0, 0), (*p.window, xpad.shape[-1]))
    return xw, (r0 - p.halo, c0 - p.halo, p.height, p.width)


def _features(prob: Problem, params: vgg.Params, xw: Array, extent: Any, layers: Sequence[str]):
    return vgg.vgg_features(params, xw.astype(prob.dtype), layers, pooling=prob.pooling, extent=extent)


def _tile_sums(prob: Problem, params: vgg.Params, xw: Array, extent: Any, i: Array,
               content_tile: Array | None, shifts: Mapping[str, Array] | None) -> dict[str, Any]:
    """The sums tile ``i`` contributes (its window ``xw``): ``content`` (the squared
    difference to ``content_tile``), per style layer ``gram`` (and ``sum``)."""
    layers = list(prob.style_layers) + ([prob.content_layer] if content_tile is not None else [])
    feats = _features(prob, params, xw, extent, layers)
    out: dict[str, Any] = {"style": {}}
    for layer in prob.style_layers:
        a = prob.owned(feats[layer], layer).astype(jnp.float32)
        if prob.style_loss == "gram":
            F = a.reshape(-1, a.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F)}
        else:
            shift = jnp.broadcast_to(shifts[layer], a.shape[-1:])[None, None, :]
            d = (a - shift) * prob.owned_mask(i, layer)
            F = d.reshape(-1, d.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F), "sum": jnp.sum(F, axis=0)}
    if content_tile is not None:
        a = prob.owned(feats[prob.content_layer], prob.content_layer).astype(jnp.float32)
        out["content"] = jnp.sum(jnp.square(content_tile - a))
    return out


def _scan_tiles(prob: Problem, content_tiles: Array | None, body: Any, init: Any) -> Any:
    """``lax.scan`` of ``body(carry, i, content_tile or None)`` over the tiles."""
    ids = jnp.arange(prob.plan.n_tiles)
    xs = (ids, content_tiles) if content_tiles is not None else (ids, ids)

    def step(carry, x):
        i, ct = x
        return body(carry, i, ct if content_tiles is not None else None), None

    return lax.scan(step, init, xs)[0]


def tiled_sums(prob: Problem, xpad: Array, params: vgg.Params, content_tiles: Array | None,
               shifts: Mapping[str, Array] | None) -> dict[str, Any]:
    """Pass 1: the sums over every tile, without keeping any activation."""
    xw0, ext0 = _window(prob, xpad, jnp.int32(0))
    shape = jax.eval_shape(lambda xw: _tile_sums(prob, params, xw, ext0, jnp.int32(0),
                                                 None if content_tiles is None else content_tiles[0],
                                                 shifts), xw0)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)

    def body(acc, i, ct):
        xw, ext = _window(prob, xpad, i)
        return jax.tree.map(jnp.add, acc, _tile_sums(prob, params, xw, ext, i, ct, shifts))

    return _scan_tiles(prob, content_tiles, body, init)


def _tiled_gradient(prob: Problem, xpad: Array, params: vgg.Params, content_tiles: Array | None,
                    shifts: Mapping[str, Array] | None, g_sums: dict[str, Any]) -> Array:
    """Pass 2: ``sum_t (ds_t/dx)^T g_sums`` over the padded canvas."""
    p = prob.plan

    def body(g, i, ct):
        xw, ext = _window(prob, xpad, i)

        def surrogate(xw):
            s = _tile_sums(prob, params, xw, ext, i, ct, shifts)
            return sum(jnp.vdot(a, b) for a, b in
                       zip(jax.tree.leaves(s), jax.tree.leaves(g_sums), strict=True))

        gw = jax.grad(surrogate)(xw)
        r0, c0 = p.origin(i)
        start = (r0, c0, jnp.int32(0))
        return lax.dynamic_update_slice(g, lax.dynamic_slice(g, start, gw.shape) + gw, start)

    return _scan_tiles(prob, content_tiles, body, jnp.zeros_like(xpad))


def moments_from_sums(prob: Problem, sums: Mapping[str, Any], shifts: Mapping[str, Array] | None
                      ) -> dict[str, dict[str, Array]]:
    """G's per-layer moments (as :func:`losses.layer_moments`) from the tile sums."""
    out = {}
    for layer in prob.style_layers:
        s, m = sums["style"][layer], prob.count(layer)
        if prob.style_loss == "gram":
            out[layer] = {"gram": s["gram"] / m}
        else:
            d = s["sum"] / m
            out[layer] = {"mu": shifts[layer] + d, "cov": s["gram"] / m - jnp.outer(d, d)}
    return out


def _shifts(prob: Problem, style_t: Mapping[str, Any]) -> dict[str, Array] | None:
    if prob.style_loss == "gram":
        return None
    return {k: lax.stop_gradient(style_t[k]["mu"]) for k in prob.style_layers}


def _from_sums(prob: Problem, sums: Mapping[str, Any], style_t: Mapping[str, Any], weights: Mapping[str, Any],
               channels: int) -> tuple[Array, Array, Array]:
    """``(alpha J_c + beta J_s, J_c, J_s)`` from the tile sums: the small function ``f``."""
    k = losses.content_scale(prob.shape(prob.content_layer, channels), prob.normalization)
    jc = k * sums["content"]
    moments = moments_from_sums(prob, sums, _shifts(prob, style_t))
    lw = dict(zip(prob.style_layers, weights["layers"], strict=True))
    js = losses.style_cost_from_moments(style_t, moments, lw, normalization=prob.normalization,
                                        style_loss=prob.style_loss)
    return weights["alpha"] * jc + weights["beta"] * js, jc, js


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def tiled_terms(prob: Problem, xpad: Array, params: vgg.Params, content_tiles: Array,
                style_t: Mapping[str, Any], weights: Mapping[str, Any]) -> tuple[Array, Array, Array]:
    """``(alpha J_content + beta J_style, J_content, J_style)`` of the padded network
    input ``xpad`` (:func:`pad_canvas`), exactly, one tile at a time.

    Args:
      prob: the static :class:`Problem`.
      xpad: ``plan.canvas + (3,)``.
      params: VGG params.
      content_tiles: ``(n_tiles, h_c, w_c, N)``, from :func:`layer_tiles` of C.
      style_t: ``{layer: target}`` as :func:`nst_jax.problem.compute_targets` makes them.
      weights: ``{"alpha", "beta", "layers": (lambda_l, ...)}`` (may be traced).
    """
    sums = tiled_sums(prob, xpad, params, content_tiles, _shifts(prob, style_t))
    return _from_sums(prob, sums, style_t, weights, content_tiles.shape[-1])


def _tiled_fwd(prob, xpad, params, content_tiles, style_t, weights):
    sums = tiled_sums(prob, xpad, params, content_tiles, _shifts(prob, style_t))
    out = _from_sums(prob, sums, style_t, weights, content_tiles.shape[-1])
    return out, (xpad, params, content_tiles, style_t, weights, sums)


def _tiled_bwd(prob, res, g_out):
    xpad, params, content_tiles, style_t, weights, sums = res
    n = content_tiles.shape[-1]
    _, vjp = jax.vjp(lambda s, w: _from_sums(prob, s, style_t, w, n), sums, weights)
    g_sums, g_w = vjp(g_out)
    g_x = _tiled_gradient(prob, xpad, params, content_tiles, _shifts(prob, style_t), g_sums)
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    return g_x, zeros(params), zeros(content_tiles), zeros(style_t), g_w


tiled_terms.defvjp(_tiled_fwd, _tiled_bwd)


def layer_tiles(prob: Problem, xpad: Array, params: vgg.Params, layer: str) -> Array:
    """``(n_tiles, h_l, w_l, N)``: each tile's own cells of ``layer`` (zero outside the
    image), the content target's layout. One forward pass per tile, nothing kept."""
    def one(i):
        xw, ext = _window(prob, xpad, i)
        a = _features(prob, params, xw, ext, [layer])[layer]
        return prob.owned(a, layer).astype(jnp.float32)

    return lax.map(one, jnp.arange(prob.plan.n_tiles))


def style_moments(prob: Problem, xpad: Array, params: vgg.Params) -> dict[str, dict[str, Array]]:
    """The style image's per-layer moments (as :func:`losses.layer_moments`), tiled:
    for ``meancov``/``w2`` one pass for the means, a second for the covariance about them."""
    if prob.style_loss == "gram":
        return moments_from_sums(prob, tiled_sums(prob, xpad, params, None, None), None)
    zero = {k: jnp.zeros((), jnp.float32) for k in prob.style_layers}
    first = moments_from_sums(prob, tiled_sums(prob, xpad, params, None, zero), zero)
    mu = {k: first[k]["mu"] for k in prob.style_layers}
    return moments_from_sums(prob, tiled_sums(prob, xpad, params, None, mu), mu)


def problem_for(shape: Sequence[int], config: Any, arch: str, *, dtype: str | None = None) -> Problem:
    """The :class:`Problem` of an image of ``shape`` under ``config`` (``config.tile`` > 0).

    The halo is that of the deepest layer of the content and style layers together, so
    the content image, G and the style images are cut alike. ``dtype``: the network's
    (default: ``bfloat16`` under ``precision="bf16"``, else ``float32``)."""
    plan = plan_tiles(shape, config.tile, arch, [config.content_layer, *config.style_layers])
    dtype = dtype or ("bfloat16" if config.precision == "bf16" else "float32")
    return Problem(plan, config.content_layer, tuple(config.style_layers), config.pooling,
                   config.style_loss, config.normalization, dtype)


__all__ = ["Problem", "TilePlan", "layer_tiles", "moments_from_sums", "pad_canvas", "plan_tiles",
           "problem_for", "receptive_halo", "style_moments", "tiled_sums", "tiled_terms"]
