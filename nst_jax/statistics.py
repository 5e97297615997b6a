"""[pure] Style statistics other than the Gram matrix: mean + covariance, and the
Wasserstein-2 distance between Gaussians fitted to the features.

For one layer's activations ``a (nH, nW, nC)`` with ``M = nH nW`` positions and the
unrolled features ``F (M, nC)``: ``mu = mean_m F``, ``C = (F - mu)^T (F - mu) / M``
(population covariance). Per layer, with ``N = nC``:

- ``meancov``: ``J = ||mu_S - mu_G||^2 / (4 N) + ||C_S - C_G||_F^2 / (4 N^2)``, the
  lecture's Gram cost with the raw second moment split into its mean and its
  covariance (per-entry averages, as the Gram cost is).
- ``w2``: ``J = (||mu_S - mu_G||^2 + tr(C_S + C_G - 2 (C_S^1/2 C_G C_S^1/2)^1/2)) / N``,
  the squared Wasserstein-2 distance between ``N(mu_S, C_S)`` and ``N(mu_G, C_G)``
  per channel (Huang & Gupta 2020, "Style is a Distribution of Features"; the style
  loss of crowsonkb/style-transfer-pytorch).

Matrix square roots come from ``jnp.linalg.eigh`` with eigenvalues clamped at
``EIG_FLOOR`` (relative to the largest). The style side's ``C_S^1/2`` is computed once,
as a target. On the generated side only ``tr(sqrt(X))`` with ``X = C_S^1/2 C_G C_S^1/2``
is needed, and it has a custom JVP, ``d tr(X^1/2) = tr(X^-1/2 dX) / 2``, which uses the
eigenvalues only and never the eigenvector derivatives: those blow up where
eigenvalues repeat, which real feature covariances do. The alternative, Newton-Schulz
iterations, needs a good normalisation and many matmuls per step at 512 channels.
Everything is float32 at ``Precision.HIGHEST``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

STYLE_LOSSES = ("gram", "meancov", "w2", "hist", "swd", "mrf")
#: The statistics that need the whole image at once (ranks, histograms, patch matches):
#: no tiles, no regions.
WHOLE_IMAGE_LOSSES = ("hist", "swd", "mrf")
#: Eigenvalues below ``EIG_FLOOR * max(eigenvalue)`` are clamped (PSD rounding noise).
EIG_FLOOR = 1e-6
_HI = lax.Precision.HIGHEST


def feature_stats(a: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """``(mu (nC,), C (nC, nC))`` of activations ``a (nH, nW, nC)``: the mean over
    positions and the population covariance ``(F - mu)^T (F - mu) / M``.

    With ``weights`` ``w (nH, nW)`` (a region's mask carried to this layer, values in
    [0, 1]) they are the weighted moments ``mu = sum_m w_m F_m / sum_m w_m`` and
    ``C = sum_m w_m (F_m - mu)(F_m - mu)^T / sum_m w_m``: the statistics of the region,
    a soft edge counting a position in part.
    """
    if a.ndim != 3:
        raise ValueError(f"activations: expected shape (nH, nW, nC), got {a.shape}")
    F = a.reshape(-1, a.shape[-1]).astype(jnp.float32)
    if weights is None:
        mu = jnp.mean(F, axis=0)
        D = F - mu[None, :]
        cov = jnp.einsum("mi,mj->ij", D, D, precision=_HI) / float(F.shape[0])
        return mu, cov
    if weights.shape != a.shape[:2]:
        raise ValueError(f"weights: expected shape {a.shape[:2]} (the activations' nH, nW), "
                         f"got {weights.shape}")
    w = weights.reshape(-1).astype(jnp.float32)
    total = jnp.sum(w)
    mu = jnp.einsum("m,mi->i", w, F, precision=_HI) / total
    D = F - mu[None, :]
    cov = jnp.einsum("m,mi,mj->ij", w, D, D, precision=_HI) / total
    return mu, cov


@jax.custom_batching.sequential_vmap
def _eigh(m: Array) -> tuple[Array, Array]:
    """``jnp.linalg.eigh``, one matrix after another under ``vmap`` (a grid's points, a
    style's regions). Measured: XLA:CPU's batched eigh of 512 x 512 matrices inside the
    compiled step deadlocked (every thread idle, no progress) unless XLA_FLAGS has
    ``--xla_cpu_enable_concurrency_optimized_scheduler=false``; a loop of single ones
    does not, and costs the same arithmetic."""
    return jnp.linalg.eigh(m)


def _eigh_clamped(m: Array) -> tuple[Array, Array]:
    w, v = _eigh((m + m.T) / 2)
    return jnp.maximum(w, EIG_FLOOR * jnp.maximum(w[-1], 1e-30)), v


def sqrtm_psd(m: Array) -> Array:
    """Symmetric square root of a PSD matrix (eigendecomposition, clamped eigenvalues)."""
    w, v = _eigh_clamped(m)
    return jnp.einsum("ik,k,jk->ij", v, jnp.sqrt(w), v, precision=_HI)


@jax.custom_jvp
def trace_sqrtm(m: Array) -> Array:
    """``tr(m^1/2)`` of a PSD matrix, ``sum_k sqrt(lambda_k)``; JVP ``tr(m^-1/2 dm) / 2``."""
    w, _ = _eigh_clamped(m)
    return jnp.sum(jnp.sqrt(w))


@trace_sqrtm.defjvp
def _trace_sqrtm_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (m,), (dm,) = primals, tangents
    w, v = _eigh_clamped(m)
    inv_sqrt = jnp.einsum("ik,k,jk->ij", v, 1.0 / jnp.sqrt(w), v, precision=_HI)
    dm = (dm + dm.T) / 2
    return jnp.sum(jnp.sqrt(w)), 0.5 * jnp.sum(inv_sqrt * dm)


def stats_target(a_S: Array, style_loss: str) -> dict[str, Array]:
    """The style side of ``meancov``/``w2``, computed once: ``mu``, ``cov`` and, for
    ``w2``, ``cov_sqrt = C_S^1/2`` and ``tr_cov = tr(C_S)``; for ``hist`` the quantiles
    of :func:`nst_jax.histogram.hist_target`."""
    if style_loss == "hist":
        from nst_jax import histogram

        return histogram.hist_target(a_S)
    mu, cov = feature_stats(a_S)
    return finish_target({"mu": mu, "cov": cov}, style_loss)


def finish_target(t: dict[str, Array], style_loss: str) -> dict[str, Array]:
    """Add what ``w2`` derives from ``cov`` (after blending several styles' moments)."""
    if style_loss == "w2":
        return {**t, "cov_sqrt": sqrtm_psd(t["cov"]), "tr_cov": jnp.trace(t["cov"])}
    return t


def meancov_cost(target: dict[str, Array], a_G: Array) -> Array:
    """``||mu_S - mu_G||^2 / (4 N) + ||C_S - C_G||_F^2 / (4 N^2)`` (see the module)."""
    mu, cov = feature_stats(a_G)
    return meancov_from_moments(target, mu, cov)


def meancov_from_moments(target: dict[str, Array], mu: Array, cov: Array) -> Array:
    """:func:`meancov_cost` from G's mean ``mu (N,)`` and covariance ``cov (N, N)``."""
    n = float(mu.shape[-1])
    return (jnp.sum(jnp.square(target["mu"] - mu)) / (4.0 * n)
            + jnp.sum(jnp.square(target["cov"] - cov)) / (4.0 * n * n))


def w2_cost(target: dict[str, Array], a_G: Array) -> Array:
    """``(||mu_S - mu_G||^2 + tr(C_S) + tr(C_G) - 2 tr((C_S^1/2 C_G C_S^1/2)^1/2)) / N``."""
    mu, cov = feature_stats(a_G)
    return w2_from_moments(target, mu, cov)


def w2_from_moments(target: dict[str, Array], mu: Array, cov: Array) -> Array:
    """:func:`w2_cost` from G's mean ``mu (N,)`` and covariance ``cov (N, N)``."""
    s = target["cov_sqrt"]
    cross = jnp.einsum("ij,jk,kl->il", s, cov, s, precision=_HI)
    w2 = (jnp.sum(jnp.square(target["mu"] - mu)) + target["tr_cov"] + jnp.trace(cov)
          - 2.0 * trace_sqrtm(cross))
    return jnp.maximum(w2, 0.0) / float(mu.shape[-1])


__all__ = [
    "EIG_FLOOR",
    "STYLE_LOSSES",
    "WHOLE_IMAGE_LOSSES",
    "feature_stats",
    "finish_target",
    "meancov_cost",
    "meancov_from_moments",
    "sqrtm_psd",
    "stats_target",
    "trace_sqrtm",
    "w2_cost",
    "w2_from_moments",
]
