"""VGG features against an independent scipy convolution; layer names; preprocessing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image
from scipy.signal import correlate2d

from nst_jax import vgg


def np_conv_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """SAME 3x3 cross-correlation (what deep-learning 'conv' means) + bias + ReLU, via scipy."""
    H, W, _ = x.shape
    out = np.zeros((H, W, kernel.shape[3]))
    for o in range(kernel.shape[3]):
        for i in range(kernel.shape[2]):
            out[..., o] += correlate2d(x[..., i], kernel[:, :, i, o], mode="same")
        out[..., o] += bias[o]
    return np.maximum(out, 0)


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_first_two_layers_match_scipy(params16, t):
    x = rand_image(7, 9) - 0.5
    p = {k: {kk: np.asarray(vv, np.float64) for kk, vv in v.items()} for k, v in params16.items()}
    want1 = np_conv_relu(x, p["conv1_1"]["kernel"], p["conv1_1"]["bias"])
    want2 = np_conv_relu(want1, p["conv1_2"]["kernel"], p["conv1_2"]["bias"])
    f = t(lambda im: vgg.vgg_features(params16, im, ["conv1_1", "relu1_2"]))
    got = f(jnp.asarray(x))
    np.testing.assert_allclose(got["conv1_1"], want1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["relu1_2"], want2, rtol=1e-4, atol=1e-5)


def test_pooling_max_and_avg():
    x = jnp.arange(5 * 4 * 2, dtype=jnp.float32).reshape(5, 4, 2)
    mx = vgg.pool2x2(x, "max")
    av = vgg.pool2x2(x, "avg")
    assert mx.shape == av.shape == (2, 2, 2)
    xn = np.asarray(x)
    for i in range(2):
        for j in range(2):
            win = xn[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            np.testing.assert_array_equal(mx[i, j], win.max(axis=(0, 1)))
            np.testing.assert_allclose(av[i, j], win.mean(axis=(0, 1)))


def test_custom_conv_vjp_matches_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 5, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(6, 5, 4)), jnp.float32)
    _, vjp_custom = jax.vjp(vgg.conv3x3, x, k)
    _, vjp_plain = jax.vjp(vgg._conv, x, k)
    for a, b in zip(vjp_custom(g), vjp_plain(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_precomputed_backward_kernels_same_values_and_gradients(params16):
    # conv3x3_pre with backward_kernel(k) is conv3x3; with_backward_kernels changes nothing
    # but where the flip happens (value, image gradient, kernel gradient).
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 5, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(6, 5, 4)), jnp.float32)
    flipped = np.transpose(np.asarray(k)[::-1, ::-1], (0, 1, 3, 2))
    np.testing.assert_array_equal(vgg.backward_kernel(k), flipped)
    y1, vjp1 = jax.vjp(vgg.conv3x3, x, k)
    y2, vjp2 = jax.vjp(lambda x, k: vgg.conv3x3_pre(x, k, vgg.backward_kernel(k)), x, k)
    # The same convolution, but traced into two programs (XLA may pick other kernels or
    # fusions for each): equal to float rounding.
    np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-6)
    for a, b in zip(vjp1(g), vjp2(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    prepared = vgg.with_backward_kernels(params16)
    assert set(prepared["conv2_1"]) == {"kernel", "bias", "kernel_t"}
    again = vgg.with_backward_kernels(prepared)
    assert again["conv2_1"]["kernel_t"] is prepared["conv2_1"]["kernel_t"]
    im = jnp.asarray(rand_image(12, 10))

    def cost(p):
        return lambda im: sum(jnp.sum(jnp.sin(f)) for f in vgg.vgg_features(p, im, ["conv3_1"]).values())

    np.testing.assert_allclose(jax.jit(cost(prepared))(im), cost(params16)(im), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(cost(prepared)))(im), jax.grad(cost(params16))(im),
                               rtol=1e-5, atol=1e-7)


def test_layer_aliases_and_vgg19(params19):
    x = jnp.asarray(rand_image(16, 16))
    f = vgg.vgg_features(params19, x, ["conv3_4", "relu3_4", "block3_conv4", "conv5_4"])
    np.testing.assert_array_equal(f["conv3_4"], f["relu3_4"])
    np.testing.assert_array_equal(f["conv3_4"], f["block3_conv4"])
    assert f["conv5_4"].shape == (1, 1, 16)
    assert float(f["conv3_4"].min()) >= 0.0  # post-ReLU


def test_unknown_layer_lists_valid_ones(params16):
    with pytest.raises(ValueError,
                       match=r"unknown layer 'conv3_4' for vgg16: valid layers are conv1_1, conv1_2"):
        vgg.vgg_features(params16, jnp.zeros((8, 8, 3)), ["conv3_4"])
    with pytest.raises(ValueError, match="unknown layer 'pool5'"):
        vgg.canonical_layer("pool5", "vgg19")


def test_bad_image_and_pooling(params16):
    with pytest.raises(ValueError, match=r"image: expected shape \(H, W, 3\), got \(8, 8\)"):
        vgg.vgg_features(params16, jnp.zeros((8, 8)), ["conv1_1"])
    with pytest.raises(ValueError, match="pooling: expected one of"):
        vgg.vgg_features(params16, jnp.zeros((8, 8, 3)), ["conv1_1"], pooling="l2")


def _n_convs(params, layers):
    jaxpr = jax.make_jaxpr(lambda x: vgg.vgg_features(params, x, layers))(jnp.zeros((16, 16, 3)))
    return str(jaxpr).count("conv_general_dilated")


def test_stops_after_deepest_layer(params16):
    # conv3x3 is a custom_vjp: its forward body is one conv per layer.
    assert _n_convs(params16, ["conv1_1"]) == 1
    assert _n_convs(params16, ["conv2_1", "conv1_1"]) == 3
    assert _n_convs(params16, ["conv5_3"]) == 13


def test_vmap_equals_loop(params16):
    xs = jnp.stack([jnp.asarray(rand_image(8, 8, s)) for s in range(3)])
    f = jax.vmap(lambda x: vgg.vgg_features(params16, x, ["conv2_2"])["conv2_2"])(xs)
    for i in range(3):
        np.testing.assert_allclose(
            f[i], vgg.vgg_features(params16, xs[i], ["conv2_2"])["conv2_2"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", [vgg.CAFFE, vgg.TORCHVISION])
def test_preprocess_round_trip(spec):
    x = jnp.asarray(rand_image(4, 5))
    np.testing.assert_allclose(vgg.deprocess(vgg.preprocess(x, spec), spec), x, atol=1e-5)


def test_caffe_preprocess_is_bgr_minus_mean():
    rgb = jnp.asarray([[[1.0, 0.5, 0.0]]])
    np.testing.assert_allclose(vgg.preprocess(rgb, vgg.CAFFE)[0, 0],
                               [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)


def test_min_image_size():
    assert vgg.min_image_size("conv1_1") == 1
    assert vgg.min_image_size("conv5_1") == 16


def np_pool(x: np.ndarray, kind: str) -> np.ndarray:
    """2x2 stride-2 pooling by explicit loops, odd trailing rows/columns dropped."""
    H, W, C = x.shape
    out = np.zeros((H // 2, W // 2, C))
    for i in range(H // 2):
        for j in range(W // 2):
            win = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            out[i, j] = win.max(axis=(0, 1)) if kind == "max" else win.mean(axis=(0, 1))
    return out


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_whole_network_every_layer_matches_numpy(params16, params19, arch, pooling):
    """Every conv layer of VGG16/VGG19, in float64 NumPy (scipy correlation + loops for
    pooling), against vgg_features in float32, jitted."""
    params = params16 if arch == "vgg16" else params19
    p = {k: {kk: np.asarray(vv, np.float64) for kk, vv in v.items()} for k, v in params.items()}
    x = rand_image(20, 18, 3) - 0.5
    names = vgg.layer_names(arch)
    got = jax.jit(lambda im: vgg.vgg_features(params, im, names, pooling=pooling))(jnp.asarray(x))
    a = x.astype(np.float64)
    for i, name in enumerate(names):
        if i > 0 and name.endswith("_1"):
            a = np_pool(a, pooling)
        a = np_conv_relu(a, p[name]["kernel"], p[name]["bias"])
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(got[name], a, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    assert got[names[-1]].shape == (1, 1, params[names[-1]]["bias"].shape[0])

