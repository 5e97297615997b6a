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

Geometry (:class:`TilePlan`): each side gets ``n = ceil(side / tile)`` windows of one
size, inside the image rounded up to the deepest pooling stride ``2^P`` and on that
stride (so every window sees the image's own pooling grid): the first starts at the
image's edge, the last ends at its far edge, the others spread evenly between. The
``halo`` is the number of pixels by which a window's fake edge corrupts the deepest
layer used (3x3 convolutions widen it by one cell, ``2^p`` pixels at level ``p``;
pooling rounds it up to a whole cell). Tile ``k`` owns the cells from one halo past
its window's start to one halo past the next window's start (the first from the
image's edge, the last to its end): unequal shares, each exact, and no halo spent
on an image border, where the window's edge is the image's own. Every activation
outside the image's feature map is zeroed (``vgg_features(extent=)``), exactly the
SAME padding the whole image sees, and each tile's sums are masked to the cells it
owns. The result equals the untiled cost and gradient up to float rounding, for any
tile size.

Memory: the working set of one window's forward and backward pass, plus image-sized
arrays (the padded input, its gradient) and the content target, stored once in the
whole image's layout (:func:`layer_map`). Both passes are ``lax.scan``s over the tiles
inside the compiled step.

Differentiable (reverse mode, ``jax.grad``/``value_and_grad``, under ``vmap``) with
respect to the image and the loss weights; the targets and the params get zero
cotangents, and forward mode (``jvp``) is not defined (a ``custom_vjp``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
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


def _starts(side: int, n: int, win: int, align: int) -> tuple[int, ...]:
    """``n`` window starts spread evenly over ``[0, side - win]``, multiples of ``align``."""
    if n == 1:
        return (0,)
    last = side - win
    return (*(k * last // (n - 1) // align * align for k in range(n - 1)), last)


def _axis(side: int, tile: int, halo: int, align: int) -> tuple[int, tuple[int, ...]]:
    """``(window, starts)`` along one side of ``side`` pixels, tiles of at most ``tile``.

    ``n = ceil(side / tile)`` windows of one size ``win`` lie inside the image rounded
    up to ``align`` (``side_a``); the first starts at 0, the last ends at ``side_a``.
    Tile ``k`` owns ``[starts[k] + halo, starts[k+1] + halo)`` (the first from 0, the
    last to ``side_a``): it is exact there when neighbouring starts are at most
    ``win - 2 halo`` apart, so ``win`` is the smallest multiple of ``align`` with
    ``n win - 2 (n - 1) halo >= side_a`` for which the rounded starts keep that gap.
    A window's edge on the image border needs no halo (the image's own zero padding).
    """
    side_a = -(-side // align) * align
    n = -(-side // tile)
    if n == 1:
        return side_a, (0,)
    win = -(-(side_a + 2 * (n - 1) * halo) // n // align) * align
    while win < side_a:
        starts = _starts(side_a, n, win, align)
        if all(b - a <= win - 2 * halo for a, b in itertools.pairwise(starts)):
            return win, starts
        win += align
    return side_a, (0,)  # one window of the whole side is no larger


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How an ``height x width`` image is cut: ``rows x cols`` windows of ``window``
    pixels at ``row_starts x col_starts``, inside the image rounded up to ``align``
    (the ``canvas``). Tiles own unequal shares (see :func:`_axis`): the first and last
    along each side own their window less one halo, the others less two."""

    height: int
    width: int
    halo: int
    align: int
    win_h: int
    win_w: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.row_starts)

    @property
    def cols(self) -> int:
        return len(self.col_starts)

    @property
    def n_tiles(self) -> int:
        return self.rows * self.cols

    @property
    def window(self) -> tuple[int, int]:
        return self.win_h, self.win_w

    @property
    def canvas(self) -> tuple[int, int]:
        """The padded input: the image rounded up to ``align`` (where the last windows end)."""
        return self.row_starts[-1] + self.win_h, self.col_starts[-1] + self.win_w

    def origin(self, i: Array) -> tuple[Array, Array]:
        """Top-left pixel of tile ``i``'s window (row-major) in the image."""
        return (jnp.asarray(self.row_starts)[i // self.cols], jnp.asarray(self.col_starts)[i % self.cols])

    def owns(self, i: Array) -> tuple[Array, Array, Array, Array]:
        """``(row0, row1, col0, col1)``: the pixels tile ``i`` owns, ``[row0, row1) x [col0, col1)``."""
        def bounds(starts: tuple[int, ...], end: int, k: Array) -> tuple[Array, Array]:
            lo = jnp.asarray((0, *(s + self.halo for s in starts[1:]), end))
            return lo[k], lo[k + 1]

        r0, r1 = bounds(self.row_starts, self.canvas[0], i // self.cols)
        c0, c1 = bounds(self.col_starts, self.canvas[1], i % self.cols)
        return r0, r1, c0, c1


def plan_tiles(shape: Sequence[int], tile: int, arch: str, layers: Sequence[str]) -> TilePlan:
    """The tiling of an image of ``shape (H, W, ...)`` with tiles of at most ``tile`` px.

    Each side gets ``n = ceil(side / tile)`` windows of the smallest size that covers
    it with exact tiles (:func:`_axis`), at most ``tile + 2 halo`` (a 1024 px side with
    ``tile=512`` and VGG19's 80 px halo: two 592 px windows; with ``tile=1024``, one
    window and no halo at all). Windows stay inside the image: no compute is spent on
    halos past its border.

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
    win_h, rs = _axis(h, t, halo, align)
    win_w, cs = _axis(w, t, halo, align)
    return TilePlan(h, w, halo, align, win_h, win_w, rs, cs)


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

    def own_mask(self, i: Array, layer: str) -> Array:
        """``(h_l, w_l, 1)`` float32 over tile ``i``'s window at ``layer``: 1 at the cells
        the tile owns that lie inside the image's feature map (``floor(H / 2^l)`` rows)."""
        f = 2 ** self.level(layer)
        p = self.plan
        r, c = p.origin(i)
        r0, r1, c0, c1 = p.owns(i)
        rows = r // f + jnp.arange(p.win_h // f)
        cols = c // f + jnp.arange(p.win_w // f)
        ok_r = (rows >= r0 // f) & (rows < jnp.minimum(r1 // f, p.height // f))
        ok_c = (cols >= c0 // f) & (cols < jnp.minimum(c1 // f, p.width // f))
        return (ok_r[:, None] & ok_c[None, :])[..., None].astype(jnp.float32)

    def cells(self, layer: str) -> tuple[int, int]:
        """``(h, w)`` of a window's feature map at ``layer``."""
        f = 2 ** self.level(layer)
        return self.plan.win_h // f, self.plan.win_w // f

    def shape(self, layer: str, channels: int) -> tuple[int, int, int]:
        """The whole image's feature-map shape at ``layer``."""
        f = 2 ** self.level(layer)
        return self.plan.height // f, self.plan.width // f, channels

    def count(self, layer: str) -> float:
        f = 2 ** self.level(layer)
        return float((self.plan.height // f) * (self.plan.width // f))


def pad_canvas(x: Array, plan: TilePlan) -> Array:
    """The network input ``x (H, W, C)`` zero-padded (bottom, right) to ``plan.canvas``."""
    ch, cw = plan.canvas
    return jnp.pad(x, ((0, ch - plan.height), (0, cw - plan.width), (0, 0)))


def _window(prob: Problem, xpad: Array, i: Array) -> tuple[Array, tuple[Array, Array, int, int]]:
    p = prob.plan
    r0, c0 = p.origin(i)
    xw = lax.dynamic_slice(xpad, (r0, c0, 0), (*p.window, xpad.shape[-1]))
    return xw, (r0, c0, p.height, p.width)


def _features(prob: Problem, params: vgg.Params, xw: Array, extent: Any, layers: Sequence[str]):
    return vgg.vgg_features(params, xw.astype(prob.dtype), layers, pooling=prob.pooling, extent=extent)


def _content_window(prob: Problem, content_map: Array, i: Array) -> Array:
    """Tile ``i``'s window of the content target (the whole image's map, :func:`layer_map`)."""
    f = 2 ** prob.level(prob.content_layer)
    r0, c0 = prob.plan.origin(i)
    return lax.dynamic_slice(content_map, (r0 // f, c0 // f, 0), (*prob.cells(prob.content_layer),
                                                                 content_map.shape[-1]))


def _tile_sums(prob: Problem, params: vgg.Params, xw: Array, extent: Any, i: Array,
               content_map: Array | None, shifts: Mapping[str, Array] | None) -> dict[str, Any]:
    """The sums tile ``i`` contributes (its window ``xw``, the cells it owns): ``content``
    (the squared difference to the content target), per style layer ``gram`` (and ``sum``)."""
    layers = list(prob.style_layers) + ([prob.content_layer] if content_map is not None else [])
    feats = _features(prob, params, xw, extent, layers)
    out: dict[str, Any] = {"style": {}}
    for layer in prob.style_layers:
        a, mask = feats[layer].astype(jnp.float32), prob.own_mask(i, layer)
        if prob.style_loss == "gram":
            F = (a * mask).reshape(-1, a.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F)}
        else:
            shift = jnp.broadcast_to(shifts[layer], a.shape[-1:])[None, None, :]
            F = ((a - shift) * mask).reshape(-1, a.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F), "sum": jnp.sum(F, axis=0)}
    if content_map is not None:
        a = feats[prob.content_layer].astype(jnp.float32)
        d = _content_window(prob, content_map, i) - a
        out["content"] = jnp.sum(prob.own_mask(i, prob.content_layer) * jnp.square(d))
    return out


def _scan_tiles(prob: Problem, body: Any, init: Any) -> Any:
    """``lax.scan`` of ``body(carry, i)`` over the tiles."""
    return lax.scan(lambda carry, i: (body(carry, i), None), init, jnp.arange(prob.plan.n_tiles))[0]


def tiled_sums(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array | None,
               shifts: Mapping[str, Array] | None) -> dict[str, Any]:
    """Pass 1: the sums over every tile, without keeping any activation."""
    xw0, ext0 = _window(prob, xpad, jnp.int32(0))
    shape = jax.eval_shape(lambda xw: _tile_sums(prob, params, xw, ext0, jnp.int32(0), content_map,
                                                 shifts), xw0)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)

    def body(acc, i):
        xw, ext = _window(prob, xpad, i)
        return jax.tree.map(jnp.add, acc, _tile_sums(prob, params, xw, ext, i, content_map, shifts))

    return _scan_tiles(prob, body, init)


def _tiled_gradient(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array | None,
                    shifts: Mapping[str, Array] | None, g_sums: dict[str, Any]) -> Array:
    """Pass 2: ``sum_t (ds_t/dx)^T g_sums`` over the padded canvas."""
    p = prob.plan

    def body(g, i):
        xw, ext = _window(prob, xpad, i)

        def surrogate(xw):
            s = _tile_sums(prob, params, xw, ext, i, content_map, shifts)
            return sum(jnp.vdot(a, b) for a, b in
                       zip(jax.tree.leaves(s), jax.tree.leaves(g_sums), strict=True))

        gw = jax.grad(surrogate)(xw)
        r0, c0 = p.origin(i)
        start = (r0, c0, jnp.int32(0))
        return lax.dynamic_update_slice(g, lax.dynamic_slice(g, start, gw.shape) + gw, start)

    return _scan_tiles(prob, body, jnp.zeros_like(xpad))


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
def tiled_terms(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array,
                style_t: Mapping[str, Any], weights: Mapping[str, Any]) -> tuple[Array, Array, Array]:
    """``(alpha J_content + beta J_style, J_content, J_style)`` of the padded network
    input ``xpad`` (:func:`pad_canvas`), exactly, one tile at a time.

    Args:
      prob: the static :class:`Problem`.
      xpad: ``plan.canvas + (3,)``.
      params: VGG params.
      content_map: ``(canvas_h / f, canvas_w / f, N)``: C's content layer, from :func:`layer_map`.
      style_t: ``{layer: target}`` as :func:`nst_jax.problem.compute_targets` makes them.
      weights: ``{"alpha", "beta", "layers": (lambda_l, ...)}`` (may be traced).
    """
    sums = tiled_sums(prob, xpad, params, content_map, _shifts(prob, style_t))
    return _from_sums(prob, sums, style_t, weights, content_map.shape[-1])


def _tiled_fwd(prob, xpad, params, content_map, style_t, weights):
    sums = tiled_sums(prob, xpad, params, content_map, _shifts(prob, style_t))
    out = _from_sums(prob, sums, style_t, weights, content_map.shape[-1])
    return out, (xpad, params, content_map, style_t, weights, sums)


def _tiled_bwd(prob, res, g_out):
    xpad, params, content_map, style_t, weights, sums = res
    n = content_map.shape[-1]
    _, vjp = jax.vjp(lambda s, w: _from_sums(prob, s, style_t, w, n), sums, weights)
    g_sums, g_w = vjp(g_out)
    g_x = _tiled_gradient(prob, xpad, params, content_map, _shifts(prob, style_t), g_sums)
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    return g_x, zeros(params), zeros(content_map), zeros(style_t), g_w


tiled_terms.defvjp(_tiled_fwd, _tiled_bwd)


def layer_map(prob: Problem, xpad: Array, params: vgg.Params, layer: str) -> Array:
    """``(canvas_h / f, canvas_w / f, N)``: the whole image's activations at ``layer``
    (zero outside the image), assembled from the cells each tile owns (``f = 2^level``):
    the content target's layout, stored once. One forward pass per tile, nothing kept."""
    f = 2 ** prob.level(layer)
    p = prob.plan
    n = params[vgg.canonical_layer(layer, vgg.arch_of(params))]["bias"].shape[0]

    def body(m, i):
        xw, ext = _window(prob, xpad, i)
        a = _features(prob, params, xw, ext, [layer])[layer].astype(jnp.float32) * prob.own_mask(i, layer)
        r0, c0 = p.origin(i)
        start = (r0 // f, c0 // f, jnp.int32(0))
        return lax.dynamic_update_slice(m, lax.dynamic_slice(m, start, a.shape) + a, start)

    return _scan_tiles(prob, body, jnp.zeros((p.canvas[0] // f, p.canvas[1] // f, n), jnp.float32))


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


__all__ = ["Problem", "TilePlan", "layer_map", "moments_from_sums", "pad_canvas", "plan_tiles",
           "problem_for", "receptive_halo", "style_moments", "tiled_sums", "tiled_terms"]
