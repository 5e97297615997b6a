"""[pure] The photorealism term of Luan et al. 2017, matrix-free: the matting Laplacian
energy of Levin et al. 2008 without ever forming the ``N x N`` matrix.

The matting Laplacian of a content image ``I`` (``H x W x 3`` in [0, 1]) sums, over
every 3x3 window ``w_k`` inside the image (``|w| = 9``), for pixels ``i, j`` of the window::

    L_ij += delta_ij - (1 + (I_i - mu_k)^T A_k (I_j - mu_k)) / 9,
    A_k = (Sigma_k + eps / 9 * Id_3)^-1

with ``mu_k``, ``Sigma_k`` the window's colour mean and (population) covariance. For one
channel ``V`` of an output image the energy ``V^T L V`` is then a sum of window terms::

    E_k = sum_i (V_i - s0 / 9)^2 - d^T A_k d / 9,   s0 = sum_i V_i,  d = sum_i V_i (I_i - mu_k)

(``= s2 - s0^2 / 9 - d^T A_k d / 9``, Luan et al.'s Eq. 3 ``sum_c V_c^T M_I V_c`` per channel).
Every sum is over the window's 9 pixels: nine shifted slices, O(N) time and memory, and
local, so it tiles with a 1 px halo. ``mu_k``, ``A_k`` and ``I_i - mu_k`` depend on the
content only: :func:`matting_stats` computes them once, in float64 on the host (the
covariance of a flat window is ~0 and ``A_k ~ 9 / eps``; two-pass sums keep ``I_i - mu_k``
exactly 0 there, so ``d`` is too and nothing large is multiplied by rounding noise).

:func:`smooth` is the photo-smoothing post-pass of Li et al. 2018 (FastPhotoStyle):
``argmin_R ||R - Y||^2 + lambda R^T L R`` per channel, i.e. ``(Id + lambda L) R = Y``,
solved by conjugate gradients with ``L v = grad(E)(v) / 2`` (``E`` is quadratic).

References:
  Levin, Lischinski & Weiss, "A Closed-Form Solution to Natural Image Matting" (PAMI 2008).
  Luan, Paris, Shechtman & Bala, "Deep Photo Style Transfer" (CVPR 2017), Eq. 2-3.
  Li, Liu, Li, Yang & Kautz, "A Closed-form Solution to Photorealistic Image
  Stylization" (ECCV 2018), the smoothing step.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

#: Levin et al.'s regulariser for images in [0, 1] (Luan et al. use the same).
EPS = 1e-7
#: Window rows per band in the objective (:func:`matting_energy`'s ``band``): the band's
#: temporaries are ~466 B per pixel of it, so 64 rows of a 4096 px wide image hold 0.12 GB.
BAND = 64
_OFFSETS = tuple((a, b) for a in range(3) for b in range(3))


def _slices(x: Any, h: int, w: int) -> list[Any]:
    """The nine ``(h - 2, w - 2, ...)`` views of ``x``: pixel ``(a, b)`` of each 3x3 window."""
    return [x[a: a + h - 2, b: b + w - 2] for a, b in _OFFSETS]


def matting_stats(content: np.ndarray, eps: float = EPS, *, band: int = 256) -> dict[str, Array]:
    """What the energy needs of the content ``(H, W, 3)`` in [0, 1] (``H, W >= 3``):
    ``{"dev": (9, H-2, W-2, 3) I_i - mu_k, "A": (H-2, W-2, 3, 3)}``, float32 arrays
    computed in float64 (two-pass window moments), ``band`` window rows at a time so the
    float64 temporaries stay small at print sizes."""
    img = np.asarray(content, np.float64)
    if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 3:
        raise ValueError(f"content: expected an (H, W, 3) image of at least 3x3, got {img.shape}")
    h, w = img.shape[:2]
    dev = np.empty((9, h - 2, w - 2, 3), np.float32)
    A = np.empty((h - 2, w - 2, 3, 3), np.float32)
    for r in range(0, h - 2, band):
        rows = min(band, h - 2 - r)
        sl = _slices(img[r: r + rows + 2], rows + 2, w)
        mu = sum(sl) / 9.0
        d = np.stack([s - mu for s in sl])                                   # (9, rows, w-2, 3)
        cov = np.einsum("khwi,khwj->hwij", d, d) / 9.0
        dev[:, r: r + rows] = d
        A[r: r + rows] = np.linalg.inv(cov + (eps / 9.0) * np.eye(3))
    return {"dev": jnp.asarray(dev), "A": jnp.asarray(A)}


def _check_size(V: Array, stats: dict[str, Array]) -> None:
    h, w = V.shape[:2]
    if V.ndim != 3 or stats["A"].shape[:2] != (h - 2, w - 2):
        raise ValueError(f"V: expected ({stats['A'].shape[0] + 2}, {stats['A'].shape[1] + 2}, C) "
                         f"(the content's size), got {V.shape}")


def window_energies(V: Array, stats: dict[str, Array]) -> Array:
    """``E_k`` per window and channel, ``(H-2, W-2, C)``, of ``V (H, W, C)``; ``stats``
    holds the same windows' :func:`matting_stats` (any band of them)."""
    h, w = V.shape[:2]
    sl = jnp.stack(_slices(V.astype(jnp.float32), h, w))                     # (9, h-2, w-2, C)
    s0 = jnp.sum(sl, axis=0)
    spread = jnp.sum(jnp.square(sl - s0[None] / 9.0), axis=0)                # (h-2, w-2, C)
    d = jnp.einsum("khwc,khwi->hwci", sl, stats["dev"])                      # (h-2, w-2, C, 3)
    q = jnp.einsum("hwci,hwij,hwcj->hwc", d, stats["A"], d)
    return spread - q / 9.0


def matting_energy(V: Array, stats: dict[str, Array], *, band: int = 0) -> Array:
    """``sum_c V_c^T L V_c`` for an image ``V (H, W, C)`` (any channels; Luan et al.'s
    ``L_m`` with ``C = 3``) against the content's :func:`matting_stats`. Scalar float32;
    pure, jit/vmap/grad-able, ``>= 0`` up to rounding (``L`` is positive semi-definite).

    ``band > 0`` sums ``band`` window rows at a time (a ``lax.scan`` over row bands, each
    reading ``band + 2`` image rows: the 1 px halo on each side), so the ``(9, H, W, C)``
    temporaries of the whole image are never held: the same sum, for tiled runs."""
    _check_size(V, stats)
    if not band or band >= V.shape[0] - 2:
        return jnp.sum(window_energies(V, stats))
    nw = V.shape[0] - 2                     # window rows
    starts = jnp.minimum(jnp.arange(-(-nw // band)) * band, nw - band)
    V = V.astype(jnp.float32)

    # The last band is moved up to end at the last window row (no padded copies of the
    # statistics); the rows it shares with the band before it count once (``new``).
    def one(total: Array, b: Array) -> tuple[Array, None]:
        r0 = starts[b]
        e = window_energies(lax.dynamic_slice_in_dim(V, r0, band + 2, 0),
                            {"dev": lax.dynamic_slice_in_dim(stats["dev"], r0, band, 1),
                             "A": lax.dynamic_slice_in_dim(stats["A"], r0, band, 0)})
        new = (r0 + jnp.arange(band) >= b * band).astype(jnp.float32)
        return total + jnp.sum(e * new[:, None, None]), None

    # rematerialised: the backward pass recomputes each band instead of keeping every
    # band's temporaries (which would add up to the whole image's)
    total, _ = lax.scan(jax.checkpoint(one), jnp.zeros((), jnp.float32), jnp.arange(starts.shape[0]))
    return total


def photo_cost(V: Array, stats: dict[str, Array], *, band: int = 0) -> Array:
    """The photorealism cost of this package: ``J_photo = (1 / (H W C)) sum_c V_c^T L V_c``,
    the matting energy per pixel and channel (as :func:`nst_jax.losses.total_variation` is
    per pixel), so one weight serves every image size; see README "Photo mode" for how it
    relates to Luan et al.'s ``lambda``."""
    return matting_energy(V, stats, band=band) / float(V.size)


def laplacian_apply(V: Array, stats: dict[str, Array], *, band: int = 0) -> Array:
    """``L V`` per channel (``(H, W, C)``): half the gradient of the quadratic energy
    (``band``: as :func:`matting_energy`, the same product)."""
    return 0.5 * jax.grad(lambda v: matting_energy(v, stats, band=band))(V)


def smooth(Y: Array, stats: dict[str, Array], lam: float, *, tol: float = 1e-5,
           maxiter: int = 500, band: int = 0) -> Array:
    """``argmin_R ||R - Y||^2 + lam sum_c R_c^T L R_c`` (Li et al. 2018's smoothing):
    ``(Id + lam L) R = Y`` by conjugate gradients (``jax.scipy.sparse.linalg.cg``; the
    operator is symmetric positive definite), started from ``Y``.

    Args:
      Y: ``(H, W, C)`` the stylized image.
      stats: the content's :func:`matting_stats`.
      lam: ``> 0``; larger keeps more of the content's local colour structure.
      band: window rows per slice of :func:`laplacian_apply` (0: all): the same operator,
        so tiled smoothing is exact; memory of one band's temporaries.
    """
    if not lam > 0:
        raise ValueError(f"lam: expected a weight > 0, got {lam}")
    Y = jnp.asarray(Y, jnp.float32)
    return _cg(Y, stats, jnp.float32(lam), tol, maxiter, band)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _cg(Y: Array, stats: dict[str, Array], lam: Array, tol: float, maxiter: int, band: int) -> Array:
    R, _ = jax.scipy.sparse.linalg.cg(lambda r: r + lam * laplacian_apply(r, stats, band=band), Y, x0=Y,
                                      tol=tol, maxiter=maxiter)
    return R


__all__ = ["BAND", "EPS", "laplacian_apply", "matting_energy", "matting_stats", "photo_cost", "smooth",
           "window_energies"]
