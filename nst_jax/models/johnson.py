"""[pure] Johnson et al. 2016's image transformation network, in Flax linen.

The network (Johnson, Alahi & Fei-Fei 2016, supplementary table 1), with the two
changes every later implementation adopted:

    c1  9x9 conv, 32w channels, stride 1      IN, ReLU
    c2  3x3 conv, 64w, stride 2               IN, ReLU
    c3  3x3 conv, 128w, stride 2              IN, ReLU
    r1..r5  residual blocks: [3x3 conv 128w, IN, ReLU, 3x3 conv 128w, IN] + skip
    u1  nearest 2x upsample, 3x3 conv 64w     IN, ReLU
    u2  nearest 2x upsample, 3x3 conv 32w     IN, ReLU
    out 9x9 conv, 3 channels                  sigmoid -> RGB in [0, 1]

- **Resize-then-convolve** instead of transposed convolutions (Odena, Dumoulin & Olah
  2016: transposed convolutions with a stride that does not divide the kernel paint
  checkerboards).
- **Instance normalisation** (Ulyanov, Vedaldi & Lempitsky 2016) instead of batch
  normalisation: ``IN(h)_c = gamma_c (h_c - mean_c) / sqrt(var_c + 1e-5) + beta_c``,
  the mean and (biased) variance over the image's pixels, per channel.
- **Conditional instance normalisation** (Dumoulin, Shlens & Kudlur 2017): with
  ``n_styles = N``, every IN layer holds N pairs ``(gamma_s, beta_s)``; a style
  weight vector ``w`` (N,) selects one (one-hot) or interpolates
  (``gamma = sum_s w_s gamma_s``, ``beta`` likewise) at apply time.
- Reflection padding (``k // 2`` per side) before every convolution, so borders see
  image content, not zeros; the input is reflection-padded to a multiple of 4 and the
  output cropped back, so any size works.
- The output is ``sigmoid`` of the last convolution: RGB in [0, 1], the pixel domain
  of :func:`nst_jax.problem.objective` (Johnson et al. used a scaled tanh).
- ``width`` multiplies every hidden width (0.5: a fast variant with ~1/4 the FLOPs).

**Why linen (and not NNX):** the parameters of a linen module are a plain nested dict,
which is what every other part of nst_jax passes around (the VGG params are one):
optax updates it, ``flax.serialization`` writes it, ``jax.sharding`` replicates it,
``jax.export`` and ``jax2onnx`` trace ``apply(params, x)`` as an ordinary pure
function, and ``jax.vmap``/``jax.jit`` take it with no split/merge step. NNX's
mutable objects would need ``nnx.split``/``nnx.merge`` at each of those boundaries.
The module only declares the parameters; every computation is one of the pure
functions below, which the tiled apply (:mod:`nst_jax.models.tiled`) calls layer by
layer, so there is one copy of the math.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Params = dict[str, dict[str, Array]]
EPS = 1e-5
#: The multiple of the input size the two stride-2 convolutions need.
MULTIPLE = 4


@dataclasses.dataclass(frozen=True)
class Layer:
    """One row of the network table: a convolution and what follows it.

    ``residual``: ``"start"`` keeps this layer's input as the block's skip,
    ``"end"`` adds the skip after this layer's IN (before any ReLU)."""

    name: str
    channels: int  # at width 1 (the output layer's 3 is not scaled)
    kernel: int
    stride: int = 1
    up: bool = False
    norm: bool = True
    relu: bool = True
    residual: str = ""


def layer_table(n_residual: int = 5) -> tuple[Layer, ...]:
    """The rows of the network, in forward order."""
    res = []
    for i in range(1, n_residual + 1):
        res += [Layer(f"r{i}a", 128, 3, residual="start"),
                Layer(f"r{i}b", 128, 3, relu=False, residual="end")]
    return (Layer("c1", 32, 9), Layer("c2", 64, 3, 2), Layer("c3", 128, 3, 2), *res,
            Layer("u1", 64, 3, up=True), Layer("u2", 32, 3, up=True),
            Layer("out", 3, 9, norm=False, relu=False))


@dataclasses.dataclass(frozen=True)
class Arch:
    """What fixes the parameter shapes: the hidden ``width`` multiplier, the number of
    styles of the conditional IN, and the number of residual blocks."""

    width: float = 1.0
    n_styles: int = 1
    n_residual: int = 5

    def __post_init__(self) -> None:
        if not 0.0625 <= self.width <= 4.0:
            raise ValueError(f"width: expected a multiplier in [0.0625, 4], got {self.width}")
        if not 1 <= self.n_styles <= 1024:
            raise ValueError(f"n_styles: expected 1..1024, got {self.n_styles}")
        if not 0 <= self.n_residual <= 32:
            raise ValueError(f"n_residual: expected 0..32, got {self.n_residual}")

    @property
    def layers(self) -> tuple[Layer, ...]:
        return layer_table(self.n_residual)

    def channels(self, layer: Layer) -> int:
        """Output channels of ``layer`` at this width (at least 4)."""
        return layer.channels if layer.name == "out" else max(4, round(layer.channels * self.width))

    def to_dict(self) -> dict[str, Any]:
        return {"name": "johnson2016", **dataclasses.asdict(self)}


def receptive_field(arch: Arch) -> int:
    """The side of the input window one output pixel depends on through the convolutions
    (with the IN statistics held fixed): ``sum_l (k_l - 1) * j_l + 1``, ``j_l`` the input
    pixels per step of layer l (x2 at a stride 2, /2 after an upsampling), plus one
    pixel per upsampling for the nearest-neighbour alignment. 109 + 2 = 111 for the
    default table."""
    rf, jump, ups = 1.0, 1.0, 0
    for layer in arch.layers:
        if layer.up:
            jump /= 2
            ups += 1
        rf += (layer.kernel - 1) * jump
        jump *= layer.stride
    return int(rf) + ups


# ----------------------------------------------------------------------------- pure layers


def upsample2(h: Array) -> Array:
    """Nearest-neighbour 2x upsampling of ``(H, W, C)`` to ``(2H, 2W, C)``."""
    return jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)


def reflect_pad(h: Array, pad: int) -> Array:
    """``(H, W, C)`` reflection-padded by ``pad`` on each side (edge pixel not repeated)."""
    return jnp.pad(h, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")


def conv(p: dict[str, Array], h: Array, stride: int = 1, *, pad: bool = True) -> Array:
    """``conv(h) + b`` of ``(H, W, Cin)`` with kernel ``(k, k, Cin, Cout)``, VALID after a
    reflection pad of ``k // 2`` (``pad=False``: ``h`` is already padded); no ``b`` when
    ``p`` has no ``bias`` (a convolution followed by IN: IN subtracts any bias)."""
    k = p["kernel"].shape[0]
    if pad:
        h = reflect_pad(h, k // 2)
    y = lax.conv_general_dilated(h[None], p["kernel"].astype(h.dtype), (stride, stride), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
    return y + p["bias"].astype(h.dtype)[None, None] if "bias" in p else y


def norm_stats(h: Array) -> tuple[Array, Array]:
    """Per-channel mean and biased variance of ``(H, W, C)`` over its pixels: ``(C,), (C,)``."""
    mean = jnp.mean(h, axis=(0, 1))
    return mean, jnp.mean(jnp.square(h - mean[None, None]), axis=(0, 1))


def affine(p: dict[str, Array], style_w: Array) -> tuple[Array, Array | float]:
    """``(gamma, beta)`` for the style weights ``w`` (N,): ``sum_s w_s gamma_s``, likewise
    beta (0 for a layer without ``shift``)."""
    return style_w @ p["scale"], (style_w @ p["shift"] if "shift" in p else 0.0)


def inorm(p: dict[str, Array], h: Array, style_w: Array,
          stats: tuple[Array, Array] | None = None) -> Array:
    """Conditional instance normalisation of ``(H, W, C)``; ``stats`` (mean, var) computed
    from ``h`` unless given (the tiled apply gives the whole image's)."""
    mean, var = norm_stats(h) if stats is None else stats
    gamma, beta = affine(p, style_w)
    y = (h - mean[None, None]) * (gamma * lax.rsqrt(var + EPS))[None, None]
    return y + beta[None, None] if "shift" in p else y


def pad_to_multiple(x: Array, m: int = MULTIPLE) -> Array:
    """``(H, W, C)`` reflection-padded at the bottom and right to multiples of ``m``."""
    h, w = x.shape[:2]
    ph, pw = -h % m, -w % m
    if ph > h - 1 or pw > w - 1:
        raise ValueError(f"image: expected at least {m} x {m} pixels, got {h} x {w}")
    return jnp.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else x


def forward(params: Params, x: Array, style_w: Array, arch: Arch) -> Array:
    """The network on one image ``(H, W, 3)`` in [0, 1] with style weights ``(N,)``:
    ``(H, W, 3)`` in [0, 1]. Pure; jit/vmap/grad compatible."""
    h0, w0 = x.shape[:2]
    h = pad_to_multiple(jnp.asarray(x, jnp.float32))
    skip = h
    for layer in arch.layers:
        if layer.residual == "start":
            skip = h
        if layer.up:
            h = upsample2(h)
        h = conv(params[layer.name], h, layer.stride)
        if layer.norm:
            h = inorm(params[layer.name], h, style_w)
        if layer.residual == "end":
            h = h + skip
        if layer.relu:
            h = jax.nn.relu(h)
    return jax.nn.sigmoid(h)[:h0, :w0]


# ----------------------------------------------------------------------------- linen


class _ConvIN(nn.Module):
    """Declares one row's parameters: the HWIO kernel, and either the (N, C) IN scales and
    shifts or (no IN) a bias. Left out, because their gradient is zero up to rounding
    (which Adam's ``g / |g|`` would turn into +-lr steps of noise): a bias before IN (IN
    subtracts it), and the shift of a residual block's second IN (``shift=False``): it
    adds a per-channel constant to the residual stream, which reaches only
    convolutions followed by IN (the next blocks, then ``u1``), and IN removes it."""

    cin: int
    cout: int
    kernel: int
    norm: bool
    n_styles: int
    shift: bool = True

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        p = {"kernel": self.param("kernel", nn.initializers.lecun_normal(),
                                  (self.kernel, self.kernel, self.cin, self.cout))}
        if not self.norm:
            p["bias"] = self.param("bias", nn.initializers.zeros, (self.cout,))
        else:
            p["scale"] = self.param("scale", nn.initializers.ones, (self.n_styles, self.cout))
            if self.shift:
                p["shift"] = self.param("shift", nn.initializers.zeros, (self.n_styles, self.cout))
        return p


class TransformNet(nn.Module):
    """The linen module: ``TransformNet(arch).init(key, x, w)`` builds the parameters;
    ``.apply({"params": params}, x, w)`` is :func:`forward`."""

    arch: Arch = Arch()

    @nn.compact
    def __call__(self, x: Array, style_w: Array) -> Array:
        params, cin = {}, 3
        for layer in self.arch.layers:
            cout = self.arch.channels(layer)
            params[layer.name] = _ConvIN(cin, cout, layer.kernel, layer.norm, self.arch.n_styles,
                                         shift=layer.residual != "end", name=layer.name)()
            cin = cout
        return forward(params, x, style_w, self.arch)


def init_params(arch: Arch, *, key: Array) -> Params:
    """Fresh parameters of ``arch`` (lecun-normal kernels, zero bias, IN scale 1 shift 0)."""
    x = jnp.zeros((16, 16, 3), jnp.float32)
    w = jnp.ones((arch.n_styles,), jnp.float32) / arch.n_styles
    variables = jax.jit(lambda k: TransformNet(arch).init(k, x, w))(key)
    return dict(variables["params"])


def param_shapes(arch: Arch) -> dict[str, dict[str, tuple[int, ...]]]:
    """The expected shape of every parameter of ``arch`` (no compute)."""
    x = jax.ShapeDtypeStruct((16, 16, 3), jnp.float32)
    w = jax.ShapeDtypeStruct((arch.n_styles,), jnp.float32)
    v = jax.eval_shape(lambda k, x, w: TransformNet(arch).init(k, x, w), jax.random.key(0), x, w)
    return jax.tree.map(lambda a: tuple(a.shape), dict(v["params"]))


def style_weights(arch: Arch, style: int | Array | None = None) -> Array:
    """The style weight vector ``(N,)``: one-hot of an index, a given vector, or (None)
    the first style."""
    if style is None:
        style = 0
    if isinstance(style, int):
        if not 0 <= style < arch.n_styles:
            raise ValueError(f"style: expected an index in 0..{arch.n_styles - 1}, got {style}")
        return jax.nn.one_hot(style, arch.n_styles, dtype=jnp.float32)
    w = jnp.asarray(style, jnp.float32)
    if w.shape != (arch.n_styles,):
        raise ValueError(f"style weights: expected {arch.n_styles} values, got shape {w.shape}")
    return w


def apply(params: Params, image: Array, style_w: Array | None = None, *, arch: Arch,
          strength: float | Array = 1.0) -> Array:
    """The stylised image: ``s * net(C) + (1 - s) * C`` for ``strength`` s in [0, 1].

    Args:
      params: from :func:`init_params` or a trained model.
      image: ``(H, W, 3)`` RGB in [0, 1], H and W at least 4 (any size: the network is
        fully convolutional).
      style_w: ``(N,)`` style weights (default: the first style); a convex combination
        interpolates the styles of a conditional model.
      arch: the parameters' :class:`Arch` (static).
      strength: blend towards the content (1: the network's output).

    Returns:
      ``(H, W, 3)`` in [0, 1].
    """
    w = style_weights(arch) if style_w is None else style_w
    y = forward(params, image, w, arch)
    return strength * y + (1.0 - strength) * jnp.asarray(image, jnp.float32)


#: :func:`apply` jitted (``arch`` static); compiles once per image shape.
apply_jit = jax.jit(apply, static_argnames=("arch",))

__all__ = ["Arch", "Layer", "TransformNet", "affine", "apply", "apply_jit", "conv", "forward",
           "init_params", "inorm", "layer_table", "norm_stats", "pad_to_multiple", "param_shapes",
           "receptive_field", "reflect_pad", "style_weights", "upsample2"]
