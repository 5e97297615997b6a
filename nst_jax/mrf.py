"""[pure] Li & Wand 2016's patch (MRF) style loss ("Combining Markov Random Fields and
Convolutional Neural Networks for Image Synthesis").

Per layer, every 3x3 patch ``g_p`` of G's feature map (stride 1, ``P = (nH-2)(nW-2)``
patches of ``9C`` numbers) is matched to the style patch ``s_j`` (3x3, taken every
:data:`STRIDE` positions of the style's feature map) of highest normalised
cross-correlation,

    NN(p) = argmax_j  (g_p . s_j) / (|g_p| |s_j|),

and the loss is the mean squared distance to it,

    J_mrf = (1 / (P 9 C)) sum_p || g_p - s_NN(p) ||^2.

The match is a constant (``stop_gradient``, as in the paper): the gradient is
``2 (g_p - s_NN(p)) / (P 9 C)`` spread back over each patch's nine positions.

**Matching as a convolution.** ``|g_p|`` is the same for every candidate, so the argmax
is that of ``g_p . (s_j / |s_j|)``: one convolution of G's feature map with the
normalised style patches as ``(3, 3, C, N)`` filters (VALID), then an argmax over the
``N`` output channels. Many implementations get this wrong (they normalise G's patches
instead of the style's, or match by squared distance, which prefers dim patches):
:func:`nearest` is tested against a loop over every pair.

**Memory.** The responses are computed in bands of G's rows (:data:`MAX_RESPONSE`) and
the loss as nine gathers (one per patch offset), so neither the ``P x N`` responses nor
a ``(P, 9C)`` array of patches is ever whole.

**Cost.** The matching is ``P x N x 9C`` multiply-adds per layer: at 512 px and relu3_1
(``P`` = 126^2, ``N`` = 63^2 at stride 2, ``9C`` = 2304) 146 GFLOP, several VGG passes;
``STRIDE`` trades it against the choice of patches. With ``augment``, rotated (90, 180,
270 degrees) and rescaled (0.8x, 1.25x) copies of the style add their patches
(:func:`nst_jax.problem.compute_targets`), 6x the patches.

**Scale** (``losses.STATS_SCALE["mrf"]``, 7e2). The ratio that balances the other
statistics with the Gram cost (the Gram cost of the bundled photos is 7.7e3-2.4e4 times
their raw ``mrf`` cost at conv3_1 and conv4_1) let the style wipe the cat out: ``J_mrf``
falls only 1.4-1.6x from the content's, not 100x. By eye instead (the cat and the
swirls, 256 px, 200 Adam steps): a factor of 1.4e4 with beta 3e-6 / 1e-5 / 1e-4 gave
the cat in swirl strokes (the content leading) / swirls with a faint cat / no cat left;
7e2 with the default beta 1e-4 is beta 5e-6 there, between the first two.

Several styles: their patches are pooled (the nearest of all wins), so blend weights
do not apply and uneven ones are refused. Not tiled and no regions (refused with a
message): exact tiling would hold (each patch's term is local), but is not built.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

#: Style layers of ``--style-loss mrf`` when none are given (Li & Wand: relu3_1, relu4_1).
DEFAULT_LAYERS = ("conv3_1", "conv4_1")
#: Step between the style patches taken (in feature positions).
STRIDE = 2
#: Most matching responses (numbers) held at once by :func:`nearest` (128 MiB of float32).
MAX_RESPONSE = 2**25
#: Rotations (quarter turns) and scales of the style's copies with ``augment``.
AUGMENT = ((1, 1.0), (2, 1.0), (3, 1.0), (0, 0.8), (0, 1.25))


def patches(a: Array, stride: int = 1) -> Array:
    """``(P, 3, 3, C)``: the 3x3 patches of ``a (nH, nW, C)`` at ``stride`` (VALID)."""
    h, w = a.shape[0] - 2, a.shape[1] - 2
    if h < 1 or w < 1:
        raise ValueError(f"mrf: a {a.shape[0]}x{a.shape[1]} feature map has no 3x3 patch")
    rows = [jnp.stack([a[i:i + h:stride, j:j + w:stride] for j in range(3)], axis=2) for i in range(3)]
    p = jnp.stack(rows, axis=2)  # (h', w', 3, 3, C)
    return p.reshape(-1, 3, 3, a.shape[-1])


def mrf_target(a_S: Array, stride: int = STRIDE) -> Array:
    """The style side of one layer: its patches ``(N, 3, 3, C)`` (float32)."""
    return patches(a_S.astype(jnp.float32), stride)


def _argmax_ncc(kernel: Array, a: Array) -> Array:
    """``(h-2, w-2)``: argmax over the ``N`` filters of ``kernel (3, 3, C, N)`` of the
    VALID convolution of ``a (h, w, C)``."""
    r = lax.conv_general_dilated(a[None], kernel, (1, 1), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.argmax(r[0], axis=-1).astype(jnp.int32)


def nearest(style_patches: Array, a_G: Array, max_response: int = MAX_RESPONSE) -> Array:
    """``(nH-2, nW-2)`` int32: for each 3x3 patch of ``a_G``, the index of the style
    patch of highest normalised cross-correlation (a VALID convolution with the
    normalised style patches, then an argmax).

    The responses are ``(nH-2)(nW-2) N`` numbers, quadratic in the image size (4.2e9 at
    1024 px and conv3_1), so they are computed in bands of G's rows, each with its two
    rows of halo, at most ``max_response`` at a time: the same numbers, bounded memory.
    """
    s = style_patches.astype(jnp.float32)
    norms = jnp.sqrt(jnp.sum(jnp.square(s), axis=(1, 2, 3), keepdims=True))
    kernel = jnp.transpose(s / jnp.maximum(norms, 1e-8), (1, 2, 3, 0))  # (3, 3, C, N)
    a = a_G.astype(jnp.float32)
    h, w, n = a.shape[0] - 2, a.shape[1] - 2, s.shape[0]
    band = max(1, min(h, max_response // max(1, w * n)))
    if band >= h:
        return _argmax_ncc(kernel, a)
    bands = -(-h // band)
    a = jnp.pad(a, ((0, bands * band - h), (0, 0), (0, 0)))
    idx = lax.map(lambda r0: _argmax_ncc(kernel, lax.dynamic_slice_in_dim(a, r0, band + 2, axis=0)),
                  jnp.arange(bands, dtype=jnp.int32) * band)
    return idx.reshape(bands * band, w)[:h]


def mrf_cost(style_patches: Array, a_G: Array) -> Array:
    """``J_mrf`` of one layer's activations ``a_G (nH, nW, C)`` against the style's
    patches ``(N, 3, 3, C)`` (:func:`mrf_target`): summed over the nine offsets of a
    patch, each a gather of ``P`` style vectors, so no ``(P, 9C)`` array is formed."""
    idx = lax.stop_gradient(nearest(style_patches, a_G)).reshape(-1)
    a = a_G.astype(jnp.float32)
    h, w, c = a.shape[0] - 2, a.shape[1] - 2, a.shape[-1]
    s = lax.stop_gradient(style_patches.astype(jnp.float32))
    total = jnp.zeros((), jnp.float32)
    for di in range(3):
        for dj in range(3):
            g = a[di:di + h, dj:dj + w].reshape(-1, c)
            total = total + jnp.sum(jnp.square(g - s[idx, di, dj]))
    return total / (h * w * 9 * c)


def check_layers(shapes: dict[str, tuple[int, int]], what: str) -> None:
    """Refuse a layer whose feature map (``{layer: (nH, nW)}``) has no 3x3 patch."""
    for k, (h, w) in shapes.items():
        if h < 3 or w < 3:
            raise ValueError(
                f"style_loss 'mrf': layer {k} of the {what} is {w}x{h}, too small for 3x3 patches "
                "(it needs at least 3x3); use a larger image or shallower --style-layers "
                f"(default {','.join(DEFAULT_LAYERS)})")


__all__ = ["AUGMENT", "DEFAULT_LAYERS", "STRIDE", "check_layers", "mrf_cost", "mrf_target",
           "nearest", "patches"]
