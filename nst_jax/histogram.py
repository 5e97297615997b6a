"""[pure] Risser, Wilmot & Barnes 2017's histogram loss ("Stable and Controllable Neural
Texture Synthesis and Style Transfer Using Histogram Losses"), exactly by sorting.

Per layer and channel ``c``, the style's feature values define a quantile function
``Q_c(p)``; the style keeps :data:`QUANTILES` of them, ``q[j, c] = Q_c((j + 1/2) / Q)``
(linear interpolation between order statistics), so style images of any size, and
blends of several (``sum_k w_k Q_k``: the 1D Wasserstein barycentre), are one array.
For G's features ``F (M, C)`` the remap ``R(F)`` replaces each value by the style's
quantile at its own rank, ``R[m, c] = Q_c((rank_c(m) + 1/2) / M)``: histogram
matching, with ties broken by position. The loss is

    J_hist = (1 / (M C)) sum_{m, c} (F[m, c] - R[m, c])^2

with ``R`` treated as a constant (``stop_gradient``), as Risser et al. do: the gradient
``2 (F - R) / (M C)`` pulls every value towards its matched one. ``J_hist`` is 0 exactly
when each channel of G has the style's distribution (up to the quantile grid).

It needs the global ranks of G's values, so it is not tiled (a tiled run would need
exact quantiles across tiles), and regions are not offered for it: both are refused
with a message (:class:`nst_jax.config.Config`, :func:`nst_jax.problem.compute_targets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

#: Quantiles stored per channel of each style layer.
QUANTILES = 256


def quantiles(F: Array, q: int = QUANTILES) -> Array:
    """``(q, C)``: each column's quantile function at ``(j + 1/2) / q``, from ``F (M, C)``."""
    s = jnp.sort(F.astype(jnp.float32), axis=0)
    return _interp_rows(s, (jnp.arange(q) + 0.5) / q)


def _interp_rows(s: Array, p: Array) -> Array:
    """The sorted columns ``s (M, C)`` read at probabilities ``p (P,)`` (order statistic
    ``m`` sits at ``(m + 1/2) / M``), linearly interpolated, clamped at the ends:
    ``(P, C)``; or with ``p (P, C)``, each column at its own probabilities."""
    m = s.shape[0]
    x = jnp.clip(p * m - 0.5, 0.0, m - 1.0)
    lo = jnp.floor(x).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, m - 1)
    t = x - lo
    if p.ndim == 1:
        return s[lo] * (1 - t)[:, None] + s[hi] * t[:, None]
    cols = jnp.arange(s.shape[1])[None, :]
    return s[lo, cols] * (1 - t) + s[hi, cols] * t


def hist_target(a_S: Array) -> dict[str, Array]:
    """The style side of one layer, ``{"q": (QUANTILES, C)}``, from ``a_S (nH, nW, C)``."""
    return {"q": quantiles(a_S.reshape(-1, a_S.shape[-1]))}


def remap(target_q: Array, F: Array) -> Array:
    """``R(F)`` (see the module): each value of ``F (M, C)`` replaced by the style's quantile
    at its rank within its channel."""
    m = F.shape[0]
    ranks = jnp.argsort(jnp.argsort(F, axis=0), axis=0)
    return _interp_rows(target_q, (ranks + 0.5) / m)


def hist_cost(target: dict[str, Array], a_G: Array) -> Array:
    """``J_hist`` of one layer's activations ``a_G (nH, nW, C)`` against :func:`hist_target`."""
    F = a_G.reshape(-1, a_G.shape[-1]).astype(jnp.float32)
    R = jax.lax.stop_gradient(remap(target["q"], F))
    return jnp.mean(jnp.square(F - R))


__all__ = ["QUANTILES", "hist_cost", "hist_target", "quantiles", "remap"]
