"""[pure] Winograd F(2x2, 3x3) convolutions: what XLA:CPU's direct convolution loses on
the wide, small layers (VGG's blocks 4 and 5), won back with 2.25x fewer multiplications.

:func:`nst_jax.vgg.with_backward_kernels` (``winograd=True``) stores each 512-channel
kernel's transform once; :func:`nst_jax.vgg.vgg_features` then runs those layers here
wherever :func:`winograd_wins`. Measurements: benchmarks/README.md "Winograd".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
# each 2x2 output tile is Y = A^T [(G g G^T) . (B^T d B)] A for its 4x4 input tile d, so a
# layer becomes 16 batched (tiles x Cin) @ (Cin x Cout) dots: 16 multiplications per 2x2
# outputs instead of 36 (2.25x fewer), plus additions that are memory traffic.
_WINO_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINO_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_WINO_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def winograd_kernel(kernel: Array) -> Array:
    """``U = G g G^T`` of a ``(3, 3, Cin, Cout)`` kernel: ``(16, Cin, Cout)``, float32."""
    G = jnp.asarray(_WINO_G, jnp.float32)
    U = jnp.einsum("ai,ijcd,bj->abcd", G, jnp.asarray(kernel, jnp.float32), G,
                   precision=lax.Precision.HIGHEST)
    return U.reshape(16, *kernel.shape[2:])


def _combine(matrix: tuple[tuple[int, ...], ...], xs: list[Array]) -> list[Array]:
    """``[sum_j matrix[r][j] xs[j] for r]`` for coefficients in {-1, 0, 1} (adds only)."""
    out = []
    for row in matrix:
        terms = [x if c == 1 else -x for c, x in zip(row, xs, strict=True) if c]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        out.append(acc)
    return out


_SAME = (0, 1, 2, 3)
_FLIP = (3, 1, 2, 0)  # G R = P G for R the 3-tap reversal, P this row swap (an involution)


def _wino_in(x: Array, order: tuple[int, ...]) -> Array:
    """``(16, th tw, C)``: ``B^T d B`` of every 4x4 input tile of ``x (H, W, C)`` (SAME
    padding, tiles at stride 2), stacked at ``(order[r], order[c])``."""
    H, W, C = x.shape
    th, tw = (H + 1) // 2, (W + 1) // 2
    xp = jnp.pad(x, ((1, 2 * th + 1 - H), (1, 2 * tw + 1 - W), (0, 0)))
    d = [[xp[a:a + 2 * th:2, b:b + 2 * tw:2] for b in range(4)] for a in range(4)]
    t = [_combine(_WINO_BT, [d[a][b] for a in range(4)]) for b in range(4)]  # B^T d: t[b][r]
    v = [_combine(_WINO_BT, [t[b][r] for b in range(4)]) for r in range(4)]  # (B^T d) B: v[r][c]
    return jnp.stack([v[order[r]][order[c]] for r in range(4) for c in range(4)]).reshape(16, th * tw, C)


def _wino_out(M: Array, H: int, W: int, order: tuple[int, ...]) -> Array:
    """``A^T m A`` of every tile of ``M (16, th tw, N)`` (read at ``(order[r], order[c])``)
    -> ``(H, W, N)``."""
    th, tw = (H + 1) // 2, (W + 1) // 2
    m = M.reshape(4, 4, th, tw, M.shape[-1])
    o = [_combine(_WINO_AT, [m[order[r], order[c]] for r in range(4)]) for c in range(4)]  # o[c][i]
    y = [_combine(_WINO_AT, [o[c][i] for c in range(4)]) for i in range(2)]  # y[i][j]
    tiles = jnp.stack([jnp.stack(y[i], axis=2) for i in range(2)], axis=1)  # (th, 2, tw, 2, N)
    return tiles.reshape(2 * th, 2 * tw, -1)[:H, :W]


@jax.custom_vjp
def conv3x3_winograd(x: Array, U: Array) -> Array:
    """:func:`nst_jax.vgg.conv3x3` by Winograd's F(2x2, 3x3): ``x (H, W, Cin)``, ``U`` from
    :func:`winograd_kernel` -> ``(H, W, Cout)``, equal to the direct convolution up to
    float32 rounding (relative ~1e-6: the transforms add and subtract, G halves).

    Any ``H, W``: the input is zero-padded to whole tiles (SAME's one pixel, plus one
    more row/column when odd) and the output cropped. The input gradient is itself a
    Winograd convolution, of the cotangent with the flipped, transposed kernel, whose
    transform is ``U`` read at swapped tile indices and contracted over ``Cout``
    (:data:`_FLIP`): nothing stored, no scatter of 16 strided slices (autodiff's
    transpose, which measured 27% more memory at 512 px). ``U`` gets its true gradient.
    """
    return _wino_out(jnp.einsum("ktc,kcd->ktd", _wino_in(x, _SAME), U.astype(x.dtype)),
                     x.shape[0], x.shape[1], _SAME)


def _winograd_fwd(x: Array, U: Array):
    return conv3x3_winograd(x, U), (x, U)


def _winograd_bwd(res: tuple[Array, Array], g: Array):
    x, U = res
    H, W = x.shape[:2]
    Ux = U.astype(x.dtype)
    dx = _wino_out(jnp.einsum("ktd,kcd->ktc", _wino_in(g, _FLIP), Ux), H, W, _FLIP)
    M0 = jnp.zeros((16, ((H + 1) // 2) * ((W + 1) // 2), U.shape[-1]), x.dtype)
    dM = jax.vjp(lambda M: _wino_out(M, H, W, _SAME), M0)[1](g)[0]
    dU = jnp.einsum("ktc,ktd->kcd", _wino_in(x, _SAME), dM)  # unused w.r.t. the image: XLA drops it
    return dx, dU.astype(U.dtype)


conv3x3_winograd.defvjp(_winograd_fwd, _winograd_bwd)


def winograd_wins(h: int, w: int, cin: int, cout: int) -> bool:
    """Whether :func:`conv3x3_winograd` beats XLA:CPU's convolution for this layer.

    Measured, forward + input gradient + ReLU, jitted, on a 2-core AVX-512 EPYC (see
    benchmarks/README.md "Winograd"): 512 -> 512 channels 1.23x (128^2) to 1.76x
    (32^2); 256 -> 512 1.32-1.42x at 48^2 and less, 0.98-1.06x at 64^2-128^2; 256
    channels and fewer 0.34-0.95x (the transforms' memory traffic outweighs the
    multiplications saved).
    """
    return cout >= 512 and (cin >= 512 or h * w <= 48 * 48)


__all__ = ["conv3x3_winograd", "winograd_kernel", "winograd_wins"]
