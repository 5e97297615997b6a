"""VGG16/VGG19 convolutional stacks as pure functions of ``(params, image)``.

Everything here is pure: the layer table, the preprocess/deprocess pair and
:func:`vgg_features`. Parameters are a plain dict ``{layer: {"kernel", "bias"}}``
with HWIO kernels (``3 x 3 x C_in x C_out``), as :func:`nst_jax.weights.load_weights`
returns them.

Layer names follow the paper (``conv4_2``); the activation returned for a conv
layer is the one *after* its ReLU, which is what Gatys et al. use, so ``relu4_2``
is accepted as the same layer. Keras names (``block4_conv2``) are accepted too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nst_jax import winograd as wino  # (``winograd`` is with_backward_kernels' flag)

Array = jax.Array
Params = Mapping[str, Mapping[str, Any]]

#: Number of conv layers in each of the five blocks.
BLOCKS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
#: Output channels of the convs of each block in the ImageNet networks.
CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
POOLINGS = ("max", "avg")
#: What the convolutions see beyond the image's border (:func:`vgg_features`).
PADDINGS = ("zero", "reflect", "circular")


def layer_names(arch: str) -> tuple[str, ...]:
    """The conv layer names of ``arch`` in forward order, e.g. ``("conv1_1", ..., "conv5_3")``."""
    if arch not in BLOCKS:
        raise ValueError(f"unknown architecture {arch!r}: expected one of {sorted(BLOCKS)}")
    return tuple(
        f"conv{b}_{c}" for b, n in enumerate(BLOCKS[arch], start=1) for c in range(1, n + 1)
    )


def conv_shapes(
    arch: str, channels: Sequence[int] = CHANNELS
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Expected ``(kernel_shape, bias_shape)`` per layer, kernels HWIO.

    Args:
      arch: ``"vgg16"`` or ``"vgg19"``.
      channels: output channels of blocks 1..5; ``(64, 128, 256, 512, 512)`` for the
        real networks, smaller for synthetic test weights.
    """
    if len(channels) != 5:
        raise ValueError(f"channels: expected 5 block widths, got {len(channels)}")
    shapes = {}
    c_in = 3
    for name in layer_names(arch):
        c_out = int(channels[int(name[4]) - 1])
        shapes[name] = ((3, 3, c_in, c_out), (c_out,))
        c_in = c_out
    return shapes


def arch_of(params: Params) -> str:
    """``"vgg19"`` when the params hold ``conv3_4``, else ``"vgg16"``."""
    return "vgg19" if "conv3_4" in params else "vgg16"


_NAME = re.compile(r"^(?:conv|relu)(\d)_(\d)$|^block(\d)_conv(\d)$")


def canonical_layer(name: str, arch: str) -> str:
    """Map ``conv4_2``, ``relu4_2`` or ``block4_conv2`` to ``conv4_2``.

    Raises:
      ValueError: naming the valid layers of ``arch`` when ``name`` is not one.
    """
    m = _NAME.match(name.strip().lower()) if isinstance(name, str) else None
    valid = layer_names(arch)
    if m:
        b, c = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        canon = f"conv{b}_{c}"
        if canon in valid:
            return canon
    raise ValueError(
        f"unknown layer {name!r} for {arch}: valid layers are {', '.join(valid)} "
        "(reluB_C and Keras blockB_convC names are accepted too)"
    )


def min_image_size(layer: str) -> int:
    """Smallest image side for which ``layer`` has at least one pixel (1, 2, 4, 8, 16)."""
    return 2 ** (int(canonical_layer(layer, "vgg19")[4]) - 1)


# ----------------------------------------------------------------------------- preprocessing


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How the network expects its input, stored with the weights.

    The network input is ``x = (P(rgb) * scale - mean) / std`` where ``rgb`` is in
    [0, 1] and ``P`` reorders channels to ``channel_order``; ``mean`` and ``std`` are in
    that order and in the ``scale`` units.

    A static pytree (no leaves, hashable): it may be passed to jitted functions as an
    ordinary argument (``jax.jit(objective)(X, params, targets, config, spec)``).

    Keras/ONNX ("caffe" mode): BGR, scale 255, mean (103.939, 116.779, 123.68), std 1.
    torchvision: RGB, scale 1, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    """

    channel_order: str = "BGR"
    scale: float = 255.0
    mean: tuple[float, float, float] = (103.939, 116.779, 123.68)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order: expected 'RGB' or 'BGR', got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std: expected 3 values each")
        if self.scale <= 0 or min(self.std) <= 0:
            raise ValueError("scale and std must be positive")


CAFFE = Preprocessing()
TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _chan(v: tuple[float, ...], x: Array) -> Array:
    """Per-channel constants shaped to broadcast against ``x (..., 3)`` without rank promotion."""
    return jnp.asarray(v, x.dtype).reshape((1,) * (x.ndim - 1) + (3,))


def preprocess(rgb: Array, spec: Preprocessing) -> Array:
    """RGB pixels in [0, 1], shape ``(H, W, 3)`` (or any ``(..., 3)``) -> network input."""
    x = rgb * spec.scale
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    return (x - _chan(spec.mean, x)) / _chan(spec.std, x)


def deprocess(x: Array, spec: Preprocessing) -> Array:
    """Inverse of :func:`preprocess`: network input ``(..., 3)`` -> RGB in [0, 1] (unclipped)."""
    x = x * _chan(spec.std, x) + _chan(spec.mean, x)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    return x / spec.scale


# ----------------------------------------------------------------------------- layers


def _conv(x: Array, kernel: Array) -> Array:
    """3x3 stride-1 SAME convolution of one image ``(H, W, Cin)`` with HWIO ``kernel``."""
    return lax.conv_general_dilated(
        x[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]


def _pad1(x: Array, padding: str) -> Array:
    """``x (H, W, C)`` with a 1 px border of ``padding``: ``reflect`` (mirrored without
    repeating the edge) or ``circular`` (the opposite edge: the image is a torus). A 3x3
    convolution of it, cropped by 1 px, is the convolution with that padding."""
    return jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode={"reflect": "reflect", "circular": "wrap"}[padding])


def backward_kernel(kernel: Array) -> Array:
    """``kernel[::-1, ::-1]`` with in/out channels swapped: ``(3, 3, Cout, Cin)``.

    The input gradient of ``y = x * k`` is ``dx = dy * backward_kernel(k)``."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


@jax.custom_vjp
def conv3x3_pre(x: Array, kernel: Array, kernel_t: Array) -> Array:
    """:func:`conv3x3` with the backward kernel given (``kernel_t = backward_kernel(kernel)``).

    Computing ``kernel_t`` once, outside the optimisation loop
    (:func:`with_backward_kernels`), saves re-flipping every kernel at every step
    (measured: 11 transposes, ~18 ms of a 0.46 s VGG16 step at 256 px on CPU).
    ``kernel_t`` gets no gradient.
    """
    return _conv(x, kernel)


def _conv3x3_pre_fwd(x: Array, kernel: Array, kernel_t: Array):
    return _conv(x, kernel), (x, kernel, kernel_t)


def _conv3x3_pre_bwd(res: tuple[Array, Array, Array], g: Array):
    x, kernel, kernel_t = res
    _, vjp_k = jax.vjp(lambda k: _conv(x, k), kernel)  # unused w.r.t. the image; XLA drops it
    return _conv(g, kernel_t), vjp_k(g)[0], jnp.zeros_like(kernel_t)


conv3x3_pre.defvjp(_conv3x3_pre_fwd, _conv3x3_pre_bwd)


def conv3x3(x: Array, kernel: Array) -> Array:
    """``y = x * kernel`` (3x3, stride 1, SAME), ``x (H, W, Cin)``, ``kernel (3, 3, Cin, Cout)``.

    Same values as ``lax.conv_general_dilated``; the custom VJP (:func:`conv3x3_pre`)
    computes the input gradient as an ordinary forward convolution of the cotangent
    with the spatially flipped, in/out-transposed kernel. XLA:CPU otherwise lowers the
    input gradient to a slow path when the step sits inside a loop body (``lax.scan``,
    the L-BFGS line search); see ``benchmarks/bench_step.py``. The flip is computed
    here, per call; :func:`with_backward_kernels` computes it once instead.
    """
    return conv3x3_pre(x, kernel, backward_kernel(kernel))


def with_backward_kernels(params: Params, winograd: bool = False) -> dict[str, dict[str, Array]]:
    """``params`` with ``"kernel_t" = backward_kernel(kernel)`` added to every layer, and
    with ``winograd`` also ``"kernel_w" = winograd.winograd_kernel(kernel)`` to the
    512-channel ones (:mod:`nst_jax.winograd`).

    :func:`vgg_features` then uses :func:`conv3x3_pre`, or
    :func:`nst_jax.winograd.conv3x3_winograd` where
    :func:`nst_jax.winograd.winograd_wins` (float32 only). Costs the kernels' memory once
    more (and 16/9 of the 512-channel ones for ``kernel_w``); idempotent (layers that have
    them keep theirs). ``winograd``: for XLA:CPU; GPUs and TPUs have their own
    convolution algorithms.
    """
    out = {}
    for name, p in params.items():
        q = dict(p)
        if "kernel_t" not in q:
            q["kernel_t"] = backward_kernel(jnp.asarray(p["kernel"]))
        if winograd and "kernel_w" not in q and p["kernel"].shape[-1] >= 512:
            q["kernel_w"] = wino.winograd_kernel(p["kernel"])
        out[name] = q
    return out


def pool2x2(x: Array, kind: str = "max") -> Array:
    """2x2, stride-2, VALID pooling of ``(H, W, C)`` -> ``(H // 2, W // 2, C)``.

    Written as a reshape and a reduction (not ``lax.reduce_window``), whose gradient
    is a cheap mask on XLA:CPU. ``max`` ties share the gradient equally.
    """
    h, w, c = x.shape
    x = x[: h - h % 2, : w - w % 2].reshape(h // 2, 2, w // 2, 2, c)
    if kind == "max":
        return x.max(axis=(1, 3))
    if kind == "avg":
        return x.mean(axis=(1, 3))
    raise ValueError(f"pooling: expected one of {POOLINGS}, got {kind!r}")


def vgg_features(
    params: Params,
    image: Array,
    layers: Sequence[str],
    *,
    pooling: str = "max",
    extent: tuple[Array, Array, int, int] | None = None,
    padding: str = "zero",
) -> dict[str, Array]:
    """Post-ReLU activations of the requested layers for one preprocessed image.

    ``a_l = relu(conv_l(a_{l-1}) + b_l)``, with 2x2 pooling between blocks. The stack
    is built only up to the deepest requested layer.

    Args:
      params: ``{layer: {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}}``, optionally
        with ``"kernel_t"`` and ``"kernel_w"`` (see :func:`with_backward_kernels`).
      image: network input ``(H, W, 3)`` (see :func:`preprocess`); batch with ``jax.vmap``.
      layers: names such as ``"conv4_2"``, ``"relu4_2"`` or ``"block4_conv2"``.
      pooling: ``"max"`` (VGG's own) or ``"avg"`` (Gatys et al. 2016 recommend it).
      extent: for a window cut from a larger image (:mod:`nst_jax.tiling`):
        ``(row0, col0, H, W)``, the window's top-left pixel in the image (traced ints,
        negative above/left of it; multiples of the deepest pooling stride) and the
        image's static size. Every activation at a position outside the image's
        feature map at its level (``floor(H / 2^p)`` rows after ``p`` poolings) is
        set to zero, which is exactly the zero padding the whole image's SAME
        convolutions see at its border: the window's features then equal the whole
        image's wherever the window's own edges are far enough (the halo).
      padding: what every convolution sees beyond the border: ``"zero"`` (VGG's own SAME
        padding, default), ``"reflect"`` or ``"circular"`` (the image wraps around: a
        texture made with it tiles seamlessly when its sides are multiples of the
        deepest pooling stride, 16 at ``conv5_1``). Not with ``extent``.

    Returns:
      ``{name: (H_l, W_l, C_l)}`` keyed by the names as given.

    Example:
      >>> feats = vgg_features(params, preprocess(rgb, spec), ["conv4_2"])
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected shape (H, W, 3), got {tuple(image.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")
    if padding != "zero" and extent is not None:
        raise ValueError(f"padding {padding!r}: windows of a tiled image need zero padding")
    arch = arch_of(params)
    wanted = {name: canonical_layer(name, arch) for name in layers}
    if not wanted:
        return {}
    order = layer_names(arch)
    deepest = max(order.index(c) for c in wanted.values())
    out: dict[str, Array] = {}
    x = image
    for i, name in enumerate(order[: deepest + 1]):
        if i > 0 and name.endswith("_1"):
            x = pool2x2(x, pooling)
            if extent is not None:  # a pair cut off by the image's floor(H / 2) is not a cell
                x = _inside(x, extent, pools=int(name[4]) - 1)
        p = params[name]
        k = p["kernel"].astype(x.dtype)
        # The driver's fast path (params with "kernel_t", see with_backward_kernels) uses
        # the custom VJP; plain params use lax's convolution, so forward mode (jvp,
        # jacfwd, Hessian-vector products) works through the public function.
        # Other paddings: the map padded by 1 px of it, the same convolutions (fast paths
        # included: XLA:CPU's own input gradient is slow inside loops), the border cropped.
        xin = x if padding == "zero" else _pad1(x, padding)
        if "kernel_w" in p and x.dtype == jnp.float32 and wino.winograd_wins(*xin.shape, k.shape[-1]):
            y = wino.conv3x3_winograd(xin, p["kernel_w"])
        elif "kernel_t" in p:
            y = conv3x3_pre(xin, k, p["kernel_t"].astype(x.dtype))
        else:
            y = _conv(xin, k)
        if padding != "zero":
            y = y[1:-1, 1:-1]
        x = jax.nn.relu(y + p["bias"].astype(x.dtype)[None, None, :])
        if extent is not None:
            x = _inside(x, extent, pools=int(name[4]) - 1)
        for given, canon in wanted.items():
            if canon == name:
                out[given] = x
    return out


def _inside(x: Array, extent: tuple[Array, Array, int, int], pools: int) -> Array:
    """``x (h, w, C)`` at level ``pools`` with positions outside the image zeroed."""
    row0, col0, H, W = extent
    f = 2 ** pools
    rows = row0 // f + jnp.arange(x.shape[0])
    cols = col0 // f + jnp.arange(x.shape[1])
    ok = (((rows >= 0) & (rows < H // f))[:, None] & ((cols >= 0) & (cols < W // f))[None, :])
    return jnp.where(ok[..., None], x, jnp.zeros((), x.dtype))


def synthetic_params(
    arch: str = "vgg16",
    channels: Sequence[int] = (4, 8, 8, 16, 16),
    *,
    key: Array | None = None,
    seed: int | None = None,
) -> dict[str, dict[str, Array]]:
    """Random He-initialised params of the given shapes (for tests and timings):
    kernels ``N(0, 2 / (9 C_in))``, biases ``N(0, 0.01)``. With ``key``, drawn by
    ``jax.random`` (``jax.Array`` leaves); with ``seed``, by NumPy (NumPy leaves: no
    JAX computation, so nothing compiles)."""
    shapes = conv_shapes(arch, channels)
    if (key is None) == (seed is None):
        raise ValueError("synthetic_params: give exactly one of key= (jax) or seed= (numpy)")
    params: dict[str, dict[str, Any]] = {}
    if seed is not None:
        rng = np.random.default_rng(seed)
        for name, (ks, bs) in shapes.items():
            params[name] = {
                "kernel": (np.sqrt(2.0 / (9 * ks[2])) * rng.standard_normal(ks)).astype(np.float32),
                "bias": (0.1 * rng.standard_normal(bs)).astype(np.float32),
            }
        return params
    keys = jax.random.split(key, len(shapes))
    for k, (name, (ks, bs)) in zip(keys, shapes.items(), strict=True):
        k1, k2 = jax.random.split(k)
        std = np.sqrt(2.0 / (9 * ks[2]))
        params[name] = {
            "kernel": std * jax.random.normal(k1, ks, jnp.float32),
            "bias": 0.1 * jax.random.normal(k2, bs, jnp.float32),
        }
    return params
