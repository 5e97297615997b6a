"""[pure] Colour control after Gatys et al. 2017, "Controlling Perceptual Factors in
Neural Style Transfer" (CVPR 2017), section 4.

All functions take RGB images ``(H, W, 3)`` in [0, 1] and use the YIQ colour space
(NTSC): ``Y`` is luminance, ``I`` and ``Q`` the chroma.

- :func:`match_color` ("histogram" mode): an affine map of the style image's pixels so
  that their mean and covariance equal the content's (Gatys et al. 2017, eq. 4-6, with
  the symmetric matrix square root).
- :func:`luminance`/:func:`with_chroma` ("luminance" mode): the optimiser sees only the
  luminance and the output takes the content's chroma.
- :func:`original_colors`: the post-hoc luminance swap of the older tools.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Rows: Y, I, Q as linear combinations of R, G, B (FCC NTSC). NumPy constants, so that
# importing the package starts no JAX backend (devices and XLA flags are still the
# user's to choose after ``import nst_jax``); jnp turns them into constants when traced.
_RGB_TO_YIQ = np.array([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ.astype(np.float64)).astype(np.float32)

PRESERVE_COLOR = ("none", "luminance", "histogram")


def rgb_to_yiq(rgb: Array) -> Array:
    """``(..., 3)`` RGB -> YIQ."""
    return jnp.einsum("...c,dc->...d", rgb, _RGB_TO_YIQ, precision=jax.lax.Precision.HIGHEST)


def yiq_to_rgb(yiq: Array) -> Array:
    """``(..., 3)`` YIQ -> RGB (not clipped)."""
    return jnp.einsum("...c,dc->...d", yiq, _YIQ_TO_RGB, precision=jax.lax.Precision.HIGHEST)


def luminance(rgb: Array) -> Array:
    """``Y = 0.299 R + 0.587 G + 0.114 B``, shape ``(H, W, 1)``."""
    return rgb_to_yiq(rgb)[..., :1]


def grey(y: Array) -> Array:
    """A luminance image ``(H, W, 1)`` as a grey RGB image ``(H, W, 3)``."""
    return jnp.concatenate([y, y, y], axis=-1)


def with_chroma(y: Array, chroma_rgb: Array) -> Array:
    """RGB image with luminance ``y (H, W, 1)`` and the I, Q of ``chroma_rgb (H, W, 3)``."""
    iq = rgb_to_yiq(chroma_rgb)[..., 1:]
    return yiq_to_rgb(jnp.concatenate([y, iq], axis=-1))


def match_luminance(y_s: Array, y_c: Array) -> Array:
    """Affine map of the style luminance to the content's mean and standard deviation:
    ``(Y_S - mu_S) * sigma_C / sigma_S + mu_C`` (Gatys et al. 2017, eq. 3)."""
    return (y_s - y_s.mean()) * (y_c.std() / jnp.maximum(y_s.std(), 1e-6)) + y_c.mean()


def _sqrtm_psd(m: Array) -> tuple[Array, Array]:
    """Symmetric square root and inverse square root of a PSD 3x3 matrix."""
    w, v = jnp.linalg.eigh(m)
    w = jnp.maximum(w, 1e-8)
    sw = jnp.sqrt(w)[None, :]
    return (v * sw) @ v.T, (v / sw) @ v.T


def match_color(style_rgb: Array, content_rgb: Array) -> Array:
    """Colour-transfer the content's colour statistics onto the style image.

    ``x' = A (x - mu_S) + mu_C`` for every style pixel ``x``, with
    ``A = Sigma_C^{1/2} Sigma_S^{-1/2}``, so the result has the content's mean ``mu_C``
    and covariance ``Sigma_C`` (exactly, before clipping to [0, 1]).

    Args:
      style_rgb: ``(H, W, 3)``.
      content_rgb: ``(H', W', 3)``.

    Returns:
      ``(H, W, 3)`` (unclipped; the caller clips).
    """
    xs = style_rgb.reshape(-1, 3).astype(jnp.float32)
    xc = content_rgb.reshape(-1, 3).astype(jnp.float32)
    mu_s, mu_c = xs.mean(0), xc.mean(0)
    cs = jnp.cov(xs, rowvar=False) + 1e-6 * jnp.eye(3)
    cc = jnp.cov(xc, rowvar=False) + 1e-6 * jnp.eye(3)
    _, cs_inv_sqrt = _sqrtm_psd(cs)
    cc_sqrt, _ = _sqrtm_psd(cc)
    a = cc_sqrt @ cs_inv_sqrt
    out = (xs - mu_s[None, :]) @ a.T + mu_c[None, :]
    return out.reshape(style_rgb.shape)


def original_colors(output_rgb: Array, content_rgb: Array) -> Array:
    """Post-hoc colour preservation: the output's luminance with the content's chroma."""
    return with_chroma(luminance(output_rgb), content_rgb)
