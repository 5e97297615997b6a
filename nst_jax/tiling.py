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

Geometry (:class:`TilePlan`, :mod:`nst_jax.tileplan`): windows on the deepest pooling
stride; the ``halo`` is how far a window's fake edge corrupts the deepest layer used;
tile ``k`` owns the cells from one halo past its window's start to one halo past the
next window's start, and no halo is spent on an image border. Every activation
outside the image's feature map is zeroed (``vgg_features(extent=)``), exactly the
SAME padding the whole image sees, and each tile's sums are masked to the cells it
owns. The result equals the untiled cost and gradient up to float rounding, for any
tile size.

Memory: the working set of one window's forward and backward pass, plus image-sized
arrays (the padded input, its gradient) and the content target, stored once in the
whole image's layout (:func:`layer_map`). Both passes are ``lax.scan``s over the tiles
inside the compiled step.

Regions (:func:`canvas_guides`): a region's statistics are sums weighted by its mask
(``sum_p m_p^2 F_p F_p^T`` for the guided Gram, ``sum_p m_p F_p`` and the weighted
second moment for ``meancov``/``w2``), and the content-strength map weights the content
sum: each window takes its part of the masks, laid out on the canvas like the content
target, and the sums carry a leading axis of regions. Exact, like the rest.

Devices (:func:`over_devices`): the scans become a ``shard_map`` in which each device
scans every ``D``-th tile, every input replicated, and the sums (pass 1) and the image
gradient (pass 2) are ``psum``-ed: two small all-reduces per step.

Differentiable (reverse mode, ``jax.grad``/``value_and_grad``, under ``vmap``) with
respect to the image and the loss weights; the targets and the params get zero
cotangents, and forward mode (``jvp``) is not defined (a ``custom_vjp``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from nst_jax import losses, vgg
from nst_jax.tileplan import TilePlan, _axis, plan_tiles, receptive_halo  # noqa: F401 (re-exported)

Array = jax.Array


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
    mesh: Mesh | None = None  # tiles spread over these devices (axis "tiles"): _scan_tiles

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


def _mask_window(prob: Problem, m: Array, i: Array, layer: str) -> Array:
    """Tile ``i``'s window ``(..., h_l, w_l)`` of a canvas-laid mask ``m (..., Hc/f, Wc/f)``."""
    f = 2 ** prob.level(layer)
    r0, c0 = prob.plan.origin(i)
    lead = m.shape[:-2]
    return lax.dynamic_slice(m, (*(0,) * len(lead), r0 // f, c0 // f), (*lead, *prob.cells(layer)))


def _region_sums(a: Array, own: Array, m: Array, shift: Array | None) -> dict[str, Array]:
    """The sums of one window's cells ``a (h, w, N)`` (owned: ``own (h, w, 1)``) per region
    of ``m (R, h, w)``: ``gram = sum_p m_p^2 F_p F_p^T`` (:func:`losses.guided_gram_matrix`'s
    numerator), or with a ``shift (R, N)`` (``meancov``/``w2``) the weighted moments'
    ``sum = sum_p m_p (F_p - s_r)`` and ``gram = sum_p m_p (F_p - s_r)(F_p - s_r)^T``."""
    w = m[..., None] * own[None]                                            # (R, h, w, 1)
    n = a.shape[-1]
    if shift is None:
        return {"gram": jax.vmap(losses._gram_sym)((a[None] * w).reshape(w.shape[0], -1, n))}
    D = (a[None] - shift[:, None, None, :]).reshape(w.shape[0], -1, n)     # (R, M, N)
    wD = D * w.reshape(w.shape[0], -1, 1)
    return {"gram": jnp.einsum("rmi,rmj->rij", wD, D, precision=lax.Precision.HIGHEST),
            "sum": jnp.sum(wD, axis=1)}


def _tile_sums(prob: Problem, params: vgg.Params, xw: Array, extent: Any, i: Array,
               content_map: Array | None, shifts: Mapping[str, Array] | None,
               guides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sums tile ``i`` contributes (its window ``xw``, the cells it owns): ``content``
    (the squared difference to the content target, weighted by ``guides["content"]``),
    per style layer ``gram`` (and ``sum``); per region of ``guides["masks"]`` when given
    (:func:`_region_sums`). ``guides``: canvas-laid masks (:func:`canvas_guides`)."""
    layers = list(prob.style_layers) + ([prob.content_layer] if content_map is not None else [])
    feats = _features(prob, params, xw, extent, layers)
    masks = None if guides is None else guides.get("masks")
    out: dict[str, Any] = {"style": {}}
    for layer in prob.style_layers:
        a, mask = feats[layer].astype(jnp.float32), prob.own_mask(i, layer)
        if masks is not None:
            shift = None if shifts is None else jnp.broadcast_to(
                shifts[layer], (masks[layer].shape[0], a.shape[-1]))
            out["style"][layer] = _region_sums(a, mask, _mask_window(prob, masks[layer], i, layer), shift)
        elif prob.style_loss == "gram":
            F = (a * mask).reshape(-1, a.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F)}
        else:
            shift = jnp.broadcast_to(shifts[layer], a.shape[-1:])[None, None, :]
            F = ((a - shift) * mask).reshape(-1, a.shape[-1])
            out["style"][layer] = {"gram": losses._gram_sym(F), "sum": jnp.sum(F, axis=0)}
    if content_map is not None:
        a = feats[prob.content_layer].astype(jnp.float32)
        d = _content_window(prob, content_map, i) - a
        own = prob.own_mask(i, prob.content_layer)
        if guides is not None and guides.get("content") is not None:
            own = own * _mask_window(prob, guides["content"], i, prob.content_layer)[..., None]
        out["content"] = jnp.sum(own * jnp.square(d))
    return out


def canvas_guides(prob: Problem, masks: Mapping[str, Array] | None, content: Array | None
                  ) -> dict[str, Any] | None:
    """Whole-image masks laid out on the canvas (zero-padded, bottom and right, to
    ``canvas / 2^level``): region masks ``{layer: (R, h_l, w_l)}`` (:func:`guides.at_layers`)
    and a content-strength map ``(h_c, w_c)`` at the content layer. ``None`` when neither."""
    if masks is None and content is None:
        return None
    ch, cw = prob.plan.canvas

    def pad(m: Array, layer: str) -> Array:
        f = 2 ** prob.level(layer)
        m = jnp.asarray(m, jnp.float32)
        return jnp.pad(m, [(0, 0)] * (m.ndim - 2) + [(0, ch // f - m.shape[-2]), (0, cw // f - m.shape[-1])])

    return {"masks": None if masks is None else {k: pad(masks[k], k) for k in prob.style_layers},
            "content": None if content is None else pad(content, prob.content_layer)}


#: The mesh axis the tiles are spread over (:func:`over_devices`).
AXIS = "tiles"
_DEVICES: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "nst_jax_tile_devices", default=None)


@contextlib.contextmanager
def over_devices(devices: Sequence[Any] | None) -> Iterator[None]:
    """Problems made inside (:func:`problem_for`, at trace time) spread their tiles over
    ``devices`` (one or none: a plain scan). Every input stays replicated; each device
    scans every ``D``-th tile and the sums (and the gradient) are ``psum``-ed."""
    token = _DEVICES.set(tuple(devices) if devices is not None and len(devices) > 1 else None)
    try:
        yield
    finally:
        _DEVICES.reset(token)


def _scan_tiles(prob: Problem, body: Any, init: Any) -> Any:
    """``lax.scan`` of ``body(carry, i)`` over the tiles, from a zero ``init``.

    With ``prob.mesh`` (``D`` devices): a ``shard_map`` in which device ``d`` scans tiles
    ``d, d + D, ...`` (``ceil(n / D)`` steps; a step past the last tile recomputes it and
    discards the result), then the partial carries are summed over the devices. The sum
    is the same, in another order: equal to the one-device scan up to float rounding."""
    n = prob.plan.n_tiles
    if prob.mesh is None or n == 1:
        return lax.scan(lambda carry, i: (body(carry, i), None), init, jnp.arange(n))[0]
    devices = prob.mesh.size

    def local(init):
        d = lax.axis_index(AXIS)

        def step(carry, j):
            i = j * devices + d
            new = body(carry, jnp.minimum(i, n - 1))
            return jax.tree.map(lambda a, b: jnp.where(i < n, b, a), carry, new), None

        part = lax.scan(step, init, jnp.arange(-(-n // devices)))[0]
        return jax.tree.map(lambda v: lax.psum(v, AXIS), part)

    return jax.shard_map(local, mesh=prob.mesh, in_specs=P(), out_specs=P(), check_vma=False)(init)


def tiled_sums(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array | None,
               shifts: Mapping[str, Array] | None, guides: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """Pass 1: the sums over every tile, without keeping any activation."""
    xw0, ext0 = _window(prob, xpad, jnp.int32(0))
    shape = jax.eval_shape(lambda xw: _tile_sums(prob, params, xw, ext0, jnp.int32(0), content_map,
                                                 shifts, guides), xw0)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)

    def body(acc, i):
        xw, ext = _window(prob, xpad, i)
        return jax.tree.map(jnp.add, acc, _tile_sums(prob, params, xw, ext, i, content_map, shifts, guides))

    return _scan_tiles(prob, body, init)


def _tiled_gradient(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array | None,
                    shifts: Mapping[str, Array] | None, guides: Mapping[str, Any] | None,
                    g_sums: dict[str, Any]) -> Array:
    """Pass 2: ``sum_t (ds_t/dx)^T g_sums`` over the padded canvas."""
    p = prob.plan

    def body(g, i):
        xw, ext = _window(prob, xpad, i)

        def surrogate(xw):
            s = _tile_sums(prob, params, xw, ext, i, content_map, shifts, guides)
            return sum(jnp.vdot(a, b) for a, b in
                       zip(jax.tree.leaves(s), jax.tree.leaves(g_sums), strict=True))

        gw = jax.grad(surrogate)(xw)
        r0, c0 = p.origin(i)
        start = (r0, c0, jnp.int32(0))
        return lax.dynamic_update_slice(g, lax.dynamic_slice(g, start, gw.shape) + gw, start)

    return _scan_tiles(prob, body, jnp.zeros_like(xpad))


def moments_from_sums(prob: Problem, sums: Mapping[str, Any], shifts: Mapping[str, Array] | None,
                      guides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Array]]:
    """G's per-layer moments (as :func:`losses.layer_moments`) from the tile sums; per
    region (a leading axis) with ``guides["masks"]``, each over its mass ``sum_p m_p``."""
    masks = None if guides is None else guides.get("masks")
    out = {}
    for layer in prob.style_layers:
        s = sums["style"][layer]
        m = prob.count(layer) if masks is None else jnp.sum(masks[layer], axis=(-2, -1))[:, None]
        if prob.style_loss == "gram":
            out[layer] = {"gram": s["gram"] / (m if masks is None else m[..., None])}
        else:
            d = s["sum"] / m
            cov = s["gram"] / (m if masks is None else m[..., None]) - d[..., :, None] * d[..., None, :]
            out[layer] = {"mu": shifts[layer] + d, "cov": cov}
    return out


def _shifts(prob: Problem, style_t: Mapping[str, Any]) -> dict[str, Array] | None:
    if prob.style_loss == "gram":
        return None
    return {k: lax.stop_gradient(style_t[k]["mu"]) for k in prob.style_layers}


def _from_sums(prob: Problem, sums: Mapping[str, Any], style_t: Mapping[str, Any], weights: Mapping[str, Any],
               channels: int, guides: Mapping[str, Any] | None = None) -> tuple[Array, Array, Array]:
    """``(alpha J_c + beta J_s, J_c, J_s)`` from the tile sums: the small function ``f``.
    With region masks, ``J_s = sum_r J_s(T_r, G's moments in region r)`` as
    :func:`losses.style_cost_from_targets` sums them."""
    k = losses.content_scale(prob.shape(prob.content_layer, channels), prob.normalization)
    jc = k * sums["content"]
    moments = moments_from_sums(prob, sums, _shifts(prob, style_t), guides)
    lw = dict(zip(prob.style_layers, weights["layers"], strict=True))

    def cost(t, m):
        return losses.style_cost_from_moments(t, m, lw, normalization=prob.normalization,
                                              style_loss=prob.style_loss)

    if guides is None or guides.get("masks") is None:
        js = cost(style_t, moments)
    else:
        js = jnp.sum(jax.vmap(cost)({k: style_t[k] for k in prob.style_layers}, moments))
    return weights["alpha"] * jc + weights["beta"] * js, jc, js


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def tiled_terms(prob: Problem, xpad: Array, params: vgg.Params, content_map: Array,
                style_t: Mapping[str, Any], weights: Mapping[str, Any],
                guides: Mapping[str, Any] | None = None) -> tuple[Array, Array, Array]:
    """``(alpha J_content + beta J_style, J_content, J_style)`` of the padded network
    input ``xpad`` (:func:`pad_canvas`), exactly, one tile at a time.

    Args:
      prob: the static :class:`Problem`.
      xpad: ``plan.canvas + (3,)``.
      params: VGG params.
      content_map: ``(canvas_h / f, canvas_w / f, N)``: C's content layer, from :func:`layer_map`.
      style_t: ``{layer: target}`` as :func:`nst_jax.problem.compute_targets` makes them
        (a leading axis of regions with ``guides["masks"]``).
      weights: ``{"alpha", "beta", "layers": (lambda_l, ...)}`` (may be traced).
      guides: regions and a content-strength map on the canvas (:func:`canvas_guides`),
        or ``None``. Masked sums are sums too: tiled exactly (no cotangent flows to them).
    """
    sums = tiled_sums(prob, xpad, params, content_map, _shifts(prob, style_t), guides)
    return _from_sums(prob, sums, style_t, weights, content_map.shape[-1], guides)


def _tiled_fwd(prob, xpad, params, content_map, style_t, weights, guides=None):
    sums = tiled_sums(prob, xpad, params, content_map, _shifts(prob, style_t), guides)
    out = _from_sums(prob, sums, style_t, weights, content_map.shape[-1], guides)
    return out, (xpad, params, content_map, style_t, weights, guides, sums)


def _tiled_bwd(prob, res, g_out):
    xpad, params, content_map, style_t, weights, guides, sums = res
    n = content_map.shape[-1]
    _, vjp = jax.vjp(lambda s, w: _from_sums(prob, s, style_t, w, n, guides), sums, weights)
    g_sums, g_w = vjp(g_out)
    g_x = _tiled_gradient(prob, xpad, params, content_map, _shifts(prob, style_t), guides, g_sums)
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    return g_x, zeros(params), zeros(content_map), zeros(style_t), g_w, zeros(guides)


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


def style_moments(prob: Problem, xpad: Array, params: vgg.Params, mask: Mapping[str, Array] | None = None
                  ) -> dict[str, dict[str, Array]]:
    """The style image's per-layer moments (as :func:`losses.layer_moments`), tiled:
    for ``meancov``/``w2`` one pass for the means, a second for the covariance about them.
    ``mask``: ``{layer: (h_l, w_l)}``, the part of the style image to learn from (its
    guided Gram / weighted moments, as ``layer_moments(a, mask=)``)."""
    one = None if mask is None else {k: mask[k][None] for k in prob.style_layers}
    guides = canvas_guides(prob, one, None)
    lead = () if mask is None else (1,)
    squeeze = (lambda m: m) if mask is None else functools.partial(jax.tree.map, lambda v: v[0])
    if prob.style_loss == "gram":
        return squeeze(moments_from_sums(prob, tiled_sums(prob, xpad, params, None, None, guides), None,
                                         guides))
    zero = {k: jnp.zeros((*lead, 1), jnp.float32) for k in prob.style_layers}
    first = moments_from_sums(prob, tiled_sums(prob, xpad, params, None, zero, guides), zero, guides)
    mu = {k: first[k]["mu"] for k in prob.style_layers}
    return squeeze(moments_from_sums(prob, tiled_sums(prob, xpad, params, None, mu, guides), mu, guides))


def problem_for(shape: Sequence[int], config: Any, arch: str, *, dtype: str | None = None) -> Problem:
    """The :class:`Problem` of an image of ``shape`` under ``config`` (``config.tile`` > 0),
    its tiles spread over the devices of an enclosing :func:`over_devices`.

    The halo is that of the deepest layer of the content and style layers together, so
    the content image, G and the style images are cut alike. ``dtype``: the network's
    (default: ``bfloat16`` under ``precision="bf16"``, else ``float32``)."""
    plan = plan_tiles(shape, config.tile, arch, [config.content_layer, *config.style_layers])
    dtype = dtype or ("bfloat16" if config.precision == "bf16" else "float32")
    devices = _DEVICES.get()
    mesh = None if devices is None else Mesh(np.asarray(devices), (AXIS,))
    return Problem(plan, config.content_layer, tuple(config.style_layers), config.pooling,
                   config.style_loss, config.normalization, dtype, mesh)


__all__ = ["AXIS", "Problem", "TilePlan", "canvas_guides", "layer_map", "moments_from_sums", "over_devices",
           "pad_canvas", "plan_tiles", "problem_for", "receptive_halo", "style_moments", "tiled_sums",
           "tiled_terms"]
