"""[pure] The sliced Wasserstein style loss (Heitz, Vanhoey, Chambon & Belcour, "A
Sliced Wasserstein Loss for Neural Texture Synthesis", CVPR 2021).

Per layer, the features of G (``M`` vectors of ``C`` channels) and of the style are
projected on ``K`` random unit directions ``v_k``; along each direction the two sets of
numbers are matched by rank (sorted against sorted: the 1D optimal transport), and

    J_swd = (1 / (M K)) sum_{m, k} (F[m] . v_k - R[m, k])^2

where ``R[m, k]`` is the style's quantile at the rank of ``F[m] . v_k`` among G's
projections (``stop_gradient``: the matching is a constant, as in the paper, whose
gradient is exactly this one where the ranks do not change). This is the mean over the
directions of the squared 1D Wasserstein-2 distance between the projected distributions;
when the counts differ the style's quantile function is read at G's ranks
(``(rank + 1/2) / M``), i.e. the style is resampled to G's count.

**No sorting per step.** XLA:CPU's sort took 40 ms for 4096 x 64 values (0.9 s for
65536 x 64), which would make a step several Gram steps. Both sides go through
histograms instead, as :mod:`nst_jax.histogram` does: the style's projections give a
quantile table of :data:`nst_jax.histogram.QUANTILES` rows per direction by inverting
a :data:`STYLE_BINS`-bin CDF (linear within a bin), and G's values are matched with
:func:`nst_jax.histogram.remap` (its :data:`~nst_jax.histogram.BINS`-bin CDF). The
match equals the exact sort-against-sort one up to the bins' widths (tested against a
NumPy sort on small arrays).

**Directions.** New directions at every step, as Heitz et al. draw them, from a key the
step derives from the run's seed and the step number (:func:`layer_keys`): the same
seed gives the same run. The targets hold the seed's key (``targets["swd_key"]``) and
the loop puts the step in (``targets["swd_step"]``, :func:`at_step`); a caller of
:func:`nst_jax.problem.objective` without a step gets step 0's directions.

**Style side.** At most :data:`SAMPLES` feature vectors of each style image per layer
(a fixed random subset, without replacement), kept as they are since the directions
change; several styles are blended per direction, ``Q = sum_i w_i Q_i`` (their sliced
Wasserstein barycentre's quantile functions).

Not tiled (the ranks are the whole image's, as for ``hist``) and no regions: both are
refused with a message.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nst_jax import histogram

Array = jax.Array

#: Directions per layer and step (Heitz et al. use as many as the layer has channels).
DIRECTIONS = 64
#: Style feature vectors kept per style image and layer.
SAMPLES = 16384
#: Bins of the style projections' CDF (inverted into the quantile table).
STYLE_BINS = 1024


def swd_target(a_S: Array, samples: int = SAMPLES) -> Array:
    """``(min(M_S, samples), C)`` feature vectors of ``a_S (nH, nW, C)``: all of them, or a
    fixed random subset (``jax.random.key(0)``: the same for every run)."""
    F = a_S.reshape(-1, a_S.shape[-1]).astype(jnp.float32)
    if F.shape[0] <= samples:
        return F
    idx = jax.random.choice(jax.random.key(0), F.shape[0], (samples,), replace=False)
    return F[idx]


def directions(key: Array, channels: int, count: int) -> Array:
    """``(channels, count)`` unit vectors, uniformly distributed on the sphere."""
    v = jax.random.normal(key, (channels, count), jnp.float32)
    return v / jnp.linalg.norm(v, axis=0, keepdims=True)


def quantile_table(P: Array, q: int = histogram.QUANTILES, bins: int = STYLE_BINS) -> Array:
    """``(q, K)``: each column of ``P (M, K)`` at the probabilities ``(j + 1/2) / q``, by
    inverting its ``bins``-bin histogram CDF between the column's min and max (the CDF
    is linear within a bin, so this is the exact quantile of a piecewise-uniform
    density)."""
    m, k = P.shape
    lo, width, _, _, counts = histogram.column_histogram(P, bins)
    edges = jnp.concatenate([jnp.zeros((1, k)), jnp.cumsum(counts, axis=0)], axis=0) / m  # (bins+1, K)
    p = (jnp.arange(q, dtype=jnp.float32) + 0.5) / q

    def column(e: Array, lo_k: Array, w_k: Array) -> Array:
        j = jnp.clip(jnp.searchsorted(e, p, side="right") - 1, 0, bins - 1)
        t = jnp.clip((p - e[j]) / jnp.maximum(e[j + 1] - e[j], 1e-12), 0.0, 1.0)
        return lo_k + (j + t) * w_k

    return jax.vmap(column, in_axes=(1, 0, 0), out_axes=1)(edges, lo[0], width[0])


def style_quantiles(samples: Sequence[Array], w: Array, dirs: Array) -> Array:
    """``(Q, K)``: the blend ``sum_i w_i Q_i`` of each style's quantile table along the
    directions ``dirs (C, K)``."""
    hi = jax.lax.Precision.HIGHEST
    return sum(w[i] * quantile_table(jnp.dot(s, dirs, precision=hi)) for i, s in enumerate(samples))


def swd_cost(target: dict, a_G: Array, key: Array, count: int = DIRECTIONS) -> Array:
    """``J_swd`` of one layer's activations ``a_G (nH, nW, C)`` against ``target``
    (``{"samples": (styles' (M_i, C) arrays), "w": (styles,)}``) along ``count``
    directions drawn from ``key``."""
    F = a_G.reshape(-1, a_G.shape[-1]).astype(jnp.float32)
    dirs = directions(key, F.shape[-1], count)
    P = jnp.dot(F, dirs, precision=jax.lax.Precision.HIGHEST)  # (M, K)
    table = jax.lax.stop_gradient(style_quantiles(target["samples"], target["w"], dirs))
    R = jax.lax.stop_gradient(histogram.remap(table, P))
    return jnp.mean(jnp.square(P - R))


def at_step(targets: dict, step: Array) -> dict:
    """``targets`` for step ``step`` of the loop (a no-op unless they are ``swd``'s)."""
    return {**targets, "swd_step": jnp.asarray(step, jnp.int32)} if "swd_key" in targets else targets


def layer_keys(targets: dict, layers: Sequence[str]) -> dict[str, Array]:
    """``{layer: key}``: the seed's key (``targets["swd_key"]``, raw key data) folded with
    the step (``targets["swd_step"]``, 0 when absent) and then the layer's index."""
    base = jax.random.wrap_key_data(jnp.asarray(targets["swd_key"], jnp.uint32))
    step = jax.random.fold_in(base, targets.get("swd_step", jnp.int32(0)))
    return {k: jax.random.fold_in(step, i) for i, k in enumerate(layers)}


def seed_key(key: Array, scale: int = 0) -> Array:
    """The raw key data of ``targets["swd_key"]`` for a run seeded with ``key`` (a typed
    ``jax.random.key``), at coarse-to-fine scale ``scale``."""
    return jax.random.key_data(jax.random.fold_in(key, scale))


__all__ = ["DIRECTIONS", "SAMPLES", "STYLE_BINS", "at_step", "directions", "layer_keys",
           "quantile_table", "seed_key", "style_quantiles", "swd_cost", "swd_target"]
