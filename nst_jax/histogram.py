"""[pure] Risser, Wilmot & Barnes 2017's histogram loss ("Stable and Controllable Neural
Texture Synthesis and Style Transfer Using Histogram Losses"), by CDF remapping.

Per layer and channel ``c``, the style's feature values define a quantile function
``Q_c(p)``; the style keeps :data:`QUANTILES` of them, ``q[j, c] = Q_c((j + 1/2) / Q)``
(by sorting, once; linear interpolation between order statistics), so style images of
any size, and blends of several (``sum_k w_k Q_k``: the 1D Wasserstein barycentre), are
one array. G's values are remapped to the style's distribution by histogram matching,
``R(F) = Q_c(CDF_G(F))``, with G's CDF from a histogram of :data:`BINS` bins per
channel between its min and max (linear within a bin), as Risser et al. do. The loss is

    J_hist = (1 / (M C)) sum_{m, c} (F[m, c] - R[m, c])^2

with ``R`` treated as a constant (``stop_gradient``): the gradient ``2 (F - R) / (M C)``
pulls every value towards its matched one. Exact ranks (:func:`remap_by_rank`, sorting G's
values at every step) give the same match up to the bin width, but XLA:CPU's sort made a
step 4-7.5x a Gram step at 256 px; the histogram is O(M C) (0.04 s against 1.0 s for
value and gradient of 65536 x 64 values).

It needs G's whole-image histogram, so it is not tiled (the tiles would need the global
CDF), and regions are not offered for it: both are refused with a message
(:class:`nst_jax.config.Config`, :func:`nst_jax.problem.compute_targets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

#: Quantiles stored per channel of each style layer.
QUANTILES = 256
#: Histogram bins per channel of G's features (Risser et al. use 256).
BINS = 256


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


def remap_by_rank(target_q: Array, F: Array) -> Array:
    """``R(F)`` by exact ranks: each value of ``F (M, C)`` replaced by the style's quantile at
    ``(rank + 1/2) / M`` within its channel (two argsorts; the reference for :func:`remap`)."""
    m = F.shape[0]
    ranks = jnp.argsort(jnp.argsort(F, axis=0), axis=0)
    return _interp_rows(target_q, (ranks + 0.5) / m)


def column_histogram(F: Array, bins: int) -> tuple[Array, Array, Array, Array, Array]:
    """Each column of ``F (M, C)`` in ``bins`` equal bins between its min and max:
    ``(lo (1, C), width (1, C), x (M, C) the position in bin units, b (M, C) the bin,
    counts (bins, C))``. What :func:`remap` and :func:`nst_jax.swd.quantile_table` share."""
    c = F.shape[1]
    lo, hi = jnp.min(F, axis=0, keepdims=True), jnp.max(F, axis=0, keepdims=True)
    width = jnp.maximum(hi - lo, 1e-12) / bins
    x = (F - lo) / width
    b = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, bins - 1)
    counts = jnp.zeros((bins, c), jnp.float32).at[b, jnp.arange(c)[None, :]].add(1.0)
    return lo, width, x, b, counts


def remap(target_q: Array, F: Array, bins: int = BINS) -> Array:
    """``R(F) = Q(CDF_G(F))`` per channel of ``F (M, C)``, with G's CDF from a ``bins``-bin
    histogram between the channel's min and max, linear within each bin."""
    m, c = F.shape
    _, _, x, b, counts = column_histogram(F, bins)
    cols = jnp.arange(c)[None, :]
    before = jnp.cumsum(counts, axis=0) - counts
    p = (before[b, cols] + jnp.clip(x - b, 0.0, 1.0) * counts[b, cols]) / m
    return _interp_rows(target_q, p)


def hist_cost(target: dict[str, Array], a_G: Array) -> Array:
    """``J_hist`` of one layer's activations ``a_G (nH, nW, C)`` against :func:`hist_target`."""
    F = a_G.reshape(-1, a_G.shape[-1]).astype(jnp.float32)
    R = jax.lax.stop_gradient(remap(target["q"], F))
    return jnp.mean(jnp.square(F - R))


__all__ = ["BINS", "QUANTILES", "column_histogram", "hist_cost", "hist_target", "quantiles", "remap",
           "remap_by_rank"]
