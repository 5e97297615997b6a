"""[pure] Video without flicker (Ruder, Dosovitskiy & Brox, "Artistic style transfer
for videos", GCPR 2016): warping by optical flow, the reliability of the flow, and
the temporal cost added to ``J``.

Flow convention: ``flow (H, W, 2)`` holds ``(dx, dy)`` per pixel of the frame it is
defined on, pointing to where that pixel is in the other frame (OpenCV's convention:
``a[y, x] ~ b[y + dy, x + dx]`` for the flow from ``a`` to ``b``). The stylized
previous frame is brought to frame ``t`` with the *backward* flow ``b`` (from ``t`` to
``t-1``): ``warp(O_{t-1}, b)[y, x] = O_{t-1}[y + b_y, x + b_x]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import problem

Array = jax.Array

#: Ruder et al.'s thresholds (eqs. 5 and 6) for pixel-unit flows.
DISOCCLUSION = (0.01, 0.5)
MOTION_BOUNDARY = (0.01, 0.002)


def warp(image: Array, flow: Array) -> tuple[Array, Array]:
    """Backward warp: ``out[y, x] = image[y + flow[y, x, 1], x + flow[y, x, 0]]``, bilinear.

    Args:
      image: ``(H, W, C)``.
      flow: ``(H, W, 2)`` ``(dx, dy)`` in pixels.

    Returns:
      ``(out (H, W, C), inside (H, W) bool)``: samples past the border take the edge
      value and are marked ``False`` in ``inside``.
    """
    H, W = image.shape[:2]
    yy, xx = jnp.meshgrid(jnp.arange(H, dtype=jnp.float32), jnp.arange(W, dtype=jnp.float32),
                          indexing="ij")
    sy, sx = yy + flow[..., 1], xx + flow[..., 0]
    inside = (sy >= 0) & (sy <= H - 1) & (sx >= 0) & (sx <= W - 1)
    sy, sx = jnp.clip(sy, 0, H - 1), jnp.clip(sx, 0, W - 1)
    y0, x0 = jnp.floor(sy), jnp.floor(sx)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    y1, x1 = jnp.minimum(y0 + 1, H - 1), jnp.minimum(x0 + 1, W - 1)
    out = ((1 - wy) * (1 - wx) * image[y0, x0] + (1 - wy) * wx * image[y0, x1]
           + wy * (1 - wx) * image[y1, x0] + wy * wx * image[y1, x1])
    return out, inside


def consistency(fwd: Array, bwd: Array) -> Array:
    """Where the backward flow is reliable (Ruder et al. 2016, section 3.1): ``(H, W)``
    float32, 1 where frame ``t``'s pixel was visible in frame ``t-1`` and is not on a
    motion boundary, else 0.

    With ``w~ = warp(fwd, bwd)`` (the forward flow, ``t-1 -> t``, read where each pixel of
    ``t`` came from): disoccluded where ``|w~ + b|^2 > 0.01 (|w~|^2 + |b|^2) + 0.5``;
    a motion boundary where ``|grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002``; and
    unreliable where ``b`` points outside the frame.

    Args:
      fwd: flow from frame ``t-1`` to ``t`` ``(H, W, 2)``, on frame ``t-1``'s grid.
      bwd: flow from frame ``t`` to ``t-1`` ``(H, W, 2)``, on frame ``t``'s grid.
    """
    w_tilde, inside = warp(fwd, bwd)
    sq = lambda v: jnp.sum(jnp.square(v), axis=-1)  # noqa: E731
    a, b = DISOCCLUSION
    disoccluded = sq(w_tilde + bwd) > a * (sq(w_tilde) + sq(bwd)) + b
    dy = jnp.diff(bwd, axis=0, append=bwd[-1:])
    dx = jnp.diff(bwd, axis=1, append=bwd[:, -1:])
    a, b = MOTION_BOUNDARY
    boundary = sq(dx) + sq(dy) > a * sq(bwd) + b
    return (inside & ~disoccluded & ~boundary).astype(jnp.float32)


def long_term_weights(c: Array) -> Array:
    """Ruder et al.'s long-term weights (eq. 8) from the consistencies ``c (K, H, W)`` of
    frames ``t-1 ... t-K``: ``c_j' = max(c_j - sum_{k<j} c_k, 0)``, so each pixel is held
    to the most recent previous frame in which it was visible."""
    before = jnp.cumsum(c, axis=0) - c
    return jnp.maximum(c - before, 0.0)


def temporal_cost(X: Array, prev: Array, weight: Array) -> Array:
    """``sum_k sum_{h,w,c} weight_k (X - prev_k)^2 / D`` with ``D = H W C``.

    Args:
      X: the frame being optimised ``(H, W, C)``.
      prev: earlier stylized frames warped to this one ``(K, H, W, C)``.
      weight: their reliabilities ``(K, H, W)`` (zeros: no temporal term).
    """
    d = jnp.square(X[None] - prev) * weight[..., None]
    return jnp.sum(d) / float(X.size)


def temporal_objective(
    X: Array, params: Any, targets: dict[str, Any], config: Any, spec: Any
) -> tuple[Array, dict[str, Array]]:
    """:func:`nst_jax.problem.objective` plus ``lambda_t * temporal_cost``, with
    ``targets["temporal"] = {"prev": (K, H, W, C), "weight": (K, H, W), "lambda": ()}``
    (traced, so one compiled step serves every frame); reported as ``"temporal"``."""
    j, terms = problem.objective(X, params, targets, config, spec)
    t = targets["temporal"]
    tc = temporal_cost(X, t["prev"], t["weight"])
    j = j + t["lambda"] * tc
    return j, {**terms, "total": j, "temporal": tc}


def warping_error(outputs: Array, flows_bwd: Array, weights: Array) -> Array:
    """``E = mean_t mean_{reliable px} |O_t - warp(O_{t-1}, b_t)|`` over ``t = 1..T-1``
    (the temporal-stability measure; use the flows of the *input* frames).

    Args:
      outputs: ``(T, H, W, C)`` stylized frames.
      flows_bwd: ``(T - 1, H, W, 2)``: flow from frame ``t`` to ``t-1`` for ``t = 1..T-1``.
      weights: ``(T - 1, H, W)`` reliabilities (:func:`consistency`).
    """
    def one(o_t, o_prev, b, c):
        w, _ = warp(o_prev, b)
        return jnp.sum(jnp.mean(jnp.abs(o_t - w), axis=-1) * c) / jnp.maximum(jnp.sum(c), 1.0)

    return jnp.mean(jax.vmap(one)(outputs[1:], outputs[:-1], flows_bwd, weights))


__all__ = ["DISOCCLUSION", "MOTION_BOUNDARY", "consistency", "long_term_weights", "temporal_cost",
           "temporal_objective", "warp", "warping_error"]
