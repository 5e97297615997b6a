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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Levin et al.'s regulariser for images in [0, 1] (Luan et al. use the same).
EPS = 1e-7
_OFFSETS = tuple((a, b) for a in range(3) for b in range(3))


def _slices(x: Any, h: int, w: int) -> list[Any]:
    """The nine ``(h - 2, w - 2, ...)`` views of ``x``: pixel ``(a, b)`` of each 3x3 window."""
    return [x[a: a + h - 2, b: b + w - 2] for a, b in _OFFSETS]


def matting_stats(content: np.ndarray, eps: float = EPS) -> dict[str, Array]:
    """What the energy needs of the content ``(H, W, 3)`` in [0, 1] (``H, W >= 3``):
    ``{"dev": (9, H-2, W-2, 3) I_i - mu_k, "A": (H-2, W-2, 3, 3)}``, float32 arrays
    computed in float64 (two-pass window moments)."""
    img = np.asarray(content, np.float64)
    if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 3:
        raise ValueError(f"content: expected an (H, W, 3) image of at least 3x3, got {img.shape}")
    h, w = img.shape[:2]
    sl = _slices(img, h, w)
    mu = sum(sl) / 9.0
    dev = np.stack([s - mu for s in sl])                                     # (9, h-2, w-2, 3)
    cov = np.einsum("khwi,khwj->hwij", dev, dev) / 9.0
    A = np.linalg.inv(cov + (eps / 9.0) * np.eye(3))
    return {"dev": jnp.asarray(dev, jnp.float32), "A": jnp.asarray(A, jnp.float32)}


def matting_energy(V: Array, stats: dict[str, Array]) -> Array:
    """``sum_c V_c^T L V_c`` for an image ``V (H, W, C)`` (any channels; Luan et al.'s
    ``L_m`` with ``C = 3``) against the content's :func:`matting_stats`. Scalar float32;
    pure, jit/vmap/grad-able, ``>= 0`` up to rounding (``L`` is positive semi-definite)."""
    h, w = V.shape[:2]
    if stats["A"].shape[:2] != (h - 2, w - 2):
        raise ValueError(f"V: expected {stats['A'].shape[0] + 2}x{stats['A'].shape[1] + 2} (the "
                         f"content's size), got {h}x{w}")
    sl = jnp.stack(_slices(V.astype(jnp.float32), h, w))                     # (9, h-2, w-2, C)
    s0 = jnp.sum(sl, axis=0)
    spread = jnp.sum(jnp.square(sl - s0[None] / 9.0), axis=0)                # (h-2, w-2, C)
    d = jnp.einsum("khwc,khwi->hwci", sl, stats["dev"])                      # (h-2, w-2, C, 3)
    q = jnp.einsum("hwci,hwij,hwcj->hwc", d, stats["A"], d)
    return jnp.sum(spread - q / 9.0)


def laplacian_apply(V: Array, stats: dict[str, Array]) -> Array:
    """``L V`` per channel (``(H, W, C)``): half the gradient of the quadratic energy."""
    return 0.5 * jax.grad(matting_energy)(V, stats)


def smooth(Y: Array, stats: dict[str, Array], lam: float, *, tol: float = 1e-5,
           maxiter: int = 500) -> Array:
    """``argmin_R ||R - Y||^2 + lam sum_c R_c^T L R_c`` (Li et al. 2018's smoothing):
    ``(Id + lam L) R = Y`` by conjugate gradients (``jax.scipy.sparse.linalg.cg``; the
    operator is symmetric positive definite), started from ``Y``.

    Args:
      Y: ``(H, W, C)`` the stylized image.
      stats: the content's :func:`matting_stats`.
      lam: ``> 0``; larger keeps more of the content's local colour structure.
    """
    if not lam > 0:
        raise ValueError(f"lam: expected a weight > 0, got {lam}")
    Y = jnp.asarray(Y, jnp.float32)
    R, _ = jax.scipy.sparse.linalg.cg(lambda r: r + lam * laplacian_apply(r, stats), Y, x0=Y,
                                      tol=tol, maxiter=maxiter)
    return R


__all__ = ["EPS", "laplacian_apply", "matting_energy", "matting_stats", "smooth"]
