"""The transformation network on images beyond device memory: layer by layer, in tiles.

The network is fully convolutional except for one thing: every instance normalisation
uses the mean and variance of the *whole* feature map. A tile with a halo of the
receptive field (111 px) therefore does not see what the whole image would; its IN
statistics would be its own, and the seams would show. So the whole image is streamed
through the network one layer at a time:

1. the layer's input map lives in host memory, reflection-padded once by ``k // 2``;
2. the convolution runs on the device over output tiles of ``tile`` pixels (scaled
   with the layer's resolution), each reading its input window (the tile plus the
   kernel's halo ``k // 2``, at the layer's stride); tiles are clamped inside the map,
   so every tile has the same shape and each layer compiles once;
3. the IN statistics are reduced over the whole output map on the host (float64), then
   the normalisation, residual skip and ReLU are applied elementwise.

The result equals :func:`nst_jax.models.johnson.apply` of the whole image up to float
rounding (the statistics are summed in another order); device memory holds one tile's
window, host memory two or three full feature maps (at 4096 px: 32 channels x 4 bytes
x 4096^2 = 2 GiB each at the first layer).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from nst_jax.models import johnson as J

Array = jax.Array


@functools.lru_cache(maxsize=64)
def _conv_program(stride: int):
    return jax.jit(lambda p, w: J.conv(p, w, stride, pad=False))


def _starts(n: int, t: int) -> list[int]:
    """Tile starts covering ``[0, n)`` with tiles of ``min(t, n)``, the last clamped inside."""
    t = min(t, n)
    s = list(range(0, n - t + 1, t))
    if s[-1] + t < n:
        s.append(n - t)
    return s


def _conv_tiled(p: dict, h: np.ndarray, layer: J.Layer, tile: int) -> np.ndarray:
    """``conv(p, h, stride)`` of a host map ``(H, W, C)``, computed tile by tile."""
    k, s = layer.kernel, layer.stride
    hp = np.pad(h, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="reflect")
    ho = (hp.shape[0] - k) // s + 1
    wo = (hp.shape[1] - k) // s + 1
    cout = p["kernel"].shape[-1]
    out = np.empty((ho, wo, cout), np.float32)
    th, tw = min(tile, ho), min(tile, wo)
    run = _conv_program(s)
    for r in _starts(ho, th):
        for c in _starts(wo, tw):
            window = hp[r * s:(r + th - 1) * s + k, c * s:(c + tw - 1) * s + k]
            out[r:r + th, c:c + tw] = np.asarray(run(p, window))
    return out


def apply_tiled(params: J.Params, image: np.ndarray, style_w: np.ndarray | None = None, *,
                arch: J.Arch, tile: int = 512, strength: float = 1.0) -> np.ndarray:
    """:func:`nst_jax.models.johnson.apply` computed layer by layer in tiles of ``tile``
    pixels (at the image's resolution; ``tile / 4`` at the quarter-resolution layers).

    Args:
      params, arch, strength: as for ``apply``.
      image: ``(H, W, 3)`` float RGB in [0, 1] (NumPy; it stays on the host).
      style_w: ``(N,)`` style weights (default: the first style).
      tile: output tile side at full resolution, at least 16.

    Returns:
      ``(H, W, 3)`` float32 in [0, 1], NumPy.
    """
    if tile < 16:
        raise ValueError(f"tile: expected at least 16 pixels, got {tile}")
    x = np.asarray(image, np.float32)
    w = np.asarray(J.style_weights(arch) if style_w is None else J.style_weights(arch, style_w))
    h0, w0 = x.shape[:2]
    h = np.asarray(J.pad_to_multiple(x))
    res = 1.0  # the current map's resolution relative to the padded image
    skip = h
    host = jax.tree.map(np.asarray, params)
    for layer in arch.layers:
        if layer.residual == "start":
            skip = h
        if layer.up:
            h = np.repeat(np.repeat(h, 2, axis=0), 2, axis=1)
            res *= 2
        out_res = res / layer.stride
        h = _conv_tiled(params[layer.name], h, layer, max(8, int(tile * out_res)))
        res = out_res
        if layer.norm:
            mean = h.mean(axis=(0, 1), dtype=np.float64)
            var = np.square(h - mean.astype(np.float32), dtype=np.float64).mean(axis=(0, 1))
            gamma = w @ host[layer.name]["scale"]
            beta = w @ host[layer.name]["shift"] if "shift" in host[layer.name] else np.zeros(1)
            a = (gamma / np.sqrt(var + J.EPS)).astype(np.float32)
            h -= mean.astype(np.float32)
            h *= a
            h += beta.astype(np.float32)
        if layer.residual == "end":
            h += skip
        if layer.relu:
            np.maximum(h, 0.0, out=h)
    y = (1.0 / (1.0 + np.exp(-h[:h0, :w0]))).astype(np.float32)
    return strength * y + (1.0 - strength) * x


__all__ = ["apply_tiled"]
