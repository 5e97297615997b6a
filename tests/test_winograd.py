"""Winograd F(2x2, 3x3) convolutions (nst_jax.winograd) against independent references.

Tolerances: Winograd is another algorithm, not another order of the same sums: its
transforms add and subtract inputs (and G halves the kernel), so it agrees with the
direct convolution to float32 rounding of those sums, ~1e-6 relative (2.7e-7 to
1.1e-6 measured on VGG16's real layers), never bitwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image, tiny_params
from test_vgg import np_conv_relu

from nst_jax import vgg, winograd
from nst_jax.layout import Layout


def _direct(x, k):
    return jax.lax.conv_general_dilated(x[None], k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]


def _case(h, w, cin, cout, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((h, w, cin)).astype(np.float32)
    k = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
    return x, k


@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (2, 3, 3, 2), (7, 9, 5, 6), (8, 8, 4, 4), (6, 11, 3, 5)])
def test_equals_scipy_correlation(shape):
    """Odd and even sizes (tiles padded past the edge), 1x1 (one tile, all padding)."""
    x, k = _case(*shape)
    got = winograd.conv3x3_winograd(jnp.asarray(x), winograd.winograd_kernel(k))
    # the ReLU-free reference: correlate2d with SAME padding, in float64
    ref = np_conv_relu(x.astype(np.float64), k.astype(np.float64), np.zeros(k.shape[3])) \
        - np_conv_relu(-x.astype(np.float64), k.astype(np.float64), np.zeros(k.shape[3]))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_gradients_equal_the_direct_convolutions(t):
    """dx against lax's convolution VJP; the kernel gradient through U = G g G^T."""
    x, k = _case(7, 6, 4, 5, seed=1)
    g = np.random.default_rng(2).standard_normal((7, 6, 5)).astype(np.float32)
    y0, vjp0 = jax.vjp(_direct, jnp.asarray(x), jnp.asarray(k))

    def wino(x, k):
        return winograd.conv3x3_winograd(x, winograd.winograd_kernel(k))

    def both(x, k, g):
        y, vjp = jax.vjp(wino, x, k)
        return (y, *vjp(g))

    got = t(both)(jnp.asarray(x), jnp.asarray(k), jnp.asarray(g))
    for a, b in zip((y0, *vjp0(jnp.asarray(g))), got, strict=True):
        scale = float(jnp.abs(a).max())
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5 * scale)


def test_input_gradient_matches_finite_differences():
    x, k = _case(5, 6, 3, 4, seed=3)
    U = winograd.winograd_kernel(k)
    w = jnp.asarray(np.random.default_rng(4).standard_normal((5, 6, 4)), jnp.float32)

    def f(x):
        return jnp.vdot(w, jnp.tanh(winograd.conv3x3_winograd(x, U)))

    d = jnp.asarray(np.random.default_rng(5).standard_normal(x.shape), jnp.float32)
    xs = jnp.asarray(x)
    eps = 1e-2
    fd = (f(xs + eps * d) - f(xs - eps * d)) / (2 * eps)  # f32 central difference: ~1e-3 relative
    assert abs(float(jnp.vdot(jax.grad(f)(xs), d)) - float(fd)) <= 2e-3 * abs(float(fd))


def test_kernels_only_for_wide_layers_and_idempotent():
    params = vgg.synthetic_params("vgg16", vgg.CHANNELS, seed=0)
    once = vgg.with_backward_kernels(params, winograd=True)
    assert {n for n, p in once.items() if "kernel_w" in p} == {n for n in params if n[4] in "45"}
    assert once["conv4_2"]["kernel_w"].shape == (16, 512, 512)
    twice = vgg.with_backward_kernels(once, winograd=True)
    assert twice["conv4_2"]["kernel_w"] is once["conv4_2"]["kernel_w"]
    assert "kernel_w" not in vgg.with_backward_kernels(params)["conv4_2"]


def test_where_winograd_wins():
    # the measured table (winograd.winograd_wins' docstring): wide layers, or 256 -> 512 when small
    assert winograd.winograd_wins(16, 16, 512, 512) and winograd.winograd_wins(128, 128, 512, 512)
    assert winograd.winograd_wins(32, 32, 256, 512) and not winograd.winograd_wins(64, 64, 256, 512)
    assert not winograd.winograd_wins(16, 16, 256, 256) and not winograd.winograd_wins(256, 256, 64, 64)


def test_features_and_gradient_with_winograd_layers(monkeypatch):
    """Every layer of the tiny network through Winograd (forced) against the direct
    path: the features and the gradient of a cost of them."""
    monkeypatch.setattr(winograd, "winograd_wins", lambda h, w, cin, cout: True)
    params = tiny_params("vgg16")
    direct = vgg.with_backward_kernels(params)
    wino = {n: {**p, "kernel_w": winograd.winograd_kernel(p["kernel"])} for n, p in direct.items()}
    x = vgg.preprocess(jnp.asarray(rand_image(37, 30)), vgg.CAFFE)
    names = ["conv1_1", "conv2_2", "conv3_1", "conv4_2", "conv5_1"]

    def cost(p, x):
        f = vgg.vgg_features(p, x, names)
        return sum(jnp.sum(jnp.square(v)) for v in f.values())

    assert "conv_general_dilated" not in str(jax.make_jaxpr(lambda x: vgg.vgg_features(wino, x, names))(x))
    a, b = (jax.jit(lambda x, p=p: vgg.vgg_features(p, x, names))(x) for p in (direct, wino))
    for n in names:
        np.testing.assert_allclose(np.asarray(b[n]), np.asarray(a[n]), rtol=1e-5,
                                   atol=1e-5 * float(jnp.abs(a[n]).max()), err_msg=n)
    g0, g1 = (jax.jit(jax.grad(cost, argnums=1))(p, x) for p in (direct, wino))
    assert float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0)) < 1e-5


def test_layouts_choose_winograd_on_one_cpu_device():
    assert Layout().winograd() == (jax.default_backend() == "cpu")
    assert not Layout().winograd("bf16")  # bf16 convolutions keep XLA's
    assert not Layout.by_rows(jax.devices()[:1]).winograd()  # XLA's convolutions exchange the halos
