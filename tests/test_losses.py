"""Costs against independent plain-numpy loop implementations, and their contracts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses as L

TRANSFORMS = [lambda f: f, jax.jit]
SHAPES = [(3, 5, 2), (4, 4, 3), (6, 2, 5)]


def np_gram(a: np.ndarray) -> np.ndarray:
    """G[c, d] = sum_{h, w} a[h, w, c] a[h, w, d], written as loops."""
    nH, nW, nC = a.shape
    g = np.zeros((nC, nC))
    for c in range(nC):
        for d in range(nC):
            for h in range(nH):
                for w in range(nW):
                    g[c, d] += a[h, w, c] * a[h, w, d]
    return g


def np_content(aC, aG, norm="lecture"):
    nH, nW, nC = aC.shape
    s = 0.0
    for idx in np.ndindex(aC.shape):
        s += (float(aC[idx]) - float(aG[idx])) ** 2
    return {"lecture": s / (4 * nH * nW * nC), "gatys": s / 2,
            "jcjohnson": s / (nH * nW * nC), "tf-tutorial": s / (nH * nW * nC)}[norm]


def np_layer_style(aS, aG, norm="lecture"):
    """Lecture: 1/(2 nH nW nC)^2 sum (G_S - G_G)^2; the presets per their own tools."""
    nH, nW, nC = aS.shape
    gs, gg = np_gram(aS), np_gram(aG)
    s = 0.0
    for c in range(nC):
        for d in range(nC):
            s += (gs[c, d] - gg[c, d]) ** 2
    lecture = s / (2 * nH * nW * nC) ** 2
    # jcjohnson: Gram / (nC nH nW), then MSE over nC^2 entries.
    jcj = sum(((gs[c, d] - gg[c, d]) / (nC * nH * nW)) ** 2
              for c in range(nC) for d in range(nC)) / nC**2
    # TF tutorial: Gram / (nH nW), then mean over nC^2 entries.
    tft = sum(((gs[c, d] - gg[c, d]) / (nH * nW)) ** 2
              for c in range(nC) for d in range(nC)) / nC**2
    return {"lecture": lecture, "gatys": lecture, "jcjohnson": jcj, "tf-tutorial": tft}[norm]


def np_tv(x):
    H, W, C = x.shape
    s = 0.0
    for i in range(H):
        for j in range(W):
            for c in range(C):
                if i + 1 < H:
                    s += (x[i + 1, j, c] - x[i, j, c]) ** 2
                if j + 1 < W:
                    s += (x[i, j + 1, c] - x[i, j, c]) ** 2
    return s / (H * W * C)


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 2, shape).astype(np.float32), rng.uniform(0, 2, shape).astype(np.float32))


@pytest.mark.parametrize("t", TRANSFORMS)
@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matches_loops(t, shape):
    a, _ = _pair(shape)
    np.testing.assert_allclose(t(L.gram_matrix)(a), np_gram(a), rtol=1e-5)


def test_gram_derivatives_match_the_plain_product():
    # gram_matrix has a hand-written JVP (one product in the gradient): reverse mode,
    # forward mode and second order must equal autodiff of the plain einsum.
    a = jnp.asarray(_pair((5, 4, 3))[0]) - 1.0
    T = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3)), jnp.float32)

    def f(a):
        return jnp.sum(L.gram_matrix(a) * T)

    def ref(a):
        return jnp.sum(jnp.einsum("hwc,hwd->cd", a, a, precision="highest") * T)

    np.testing.assert_allclose(jax.grad(f)(a), jax.grad(ref)(a), rtol=1e-5, atol=1e-6)
    v = jnp.cos(a)
    np.testing.assert_allclose(jax.jvp(f, (a,), (v,))[1], jax.jvp(ref, (a,), (v,))[1], rtol=1e-5)
    np.testing.assert_allclose(jax.hessian(f)(a), jax.hessian(ref)(a), rtol=1e-5, atol=1e-6)
    # the gradient of sum(G * T) is a (T + T^T): check against numpy directly too
    want = np.asarray(a).reshape(-1, 3) @ (np.asarray(T) + np.asarray(T).T)
    np.testing.assert_allclose(jax.grad(f)(a).reshape(-1, 3), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", TRANSFORMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", L.NORMALIZATIONS)
def test_content_cost_matches_loops(t, shape, norm):
    a, b = _pair(shape, 1)
    got = t(lambda x, y: L.content_cost(x, y, normalization=norm))(a, b)
    np.testing.assert_allclose(got, np_content(a, b, norm), rtol=1e-5)


@pytest.mark.parametrize("t", TRANSFORMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", L.NORMALIZATIONS)
def test_layer_style_cost_matches_loops(t, shape, norm):
    a, b = _pair(shape, 2)
    got = t(lambda x, y: L.layer_style_cost(x, y, normalization=norm))(a, b)
    np.testing.assert_allclose(got, np_layer_style(a, b, norm), rtol=1e-4)


def test_style_cost_is_weighted_sum():
    rng = np.random.default_rng(3)
    s = {"a": rng.uniform(size=(4, 3, 2)), "b": rng.uniform(size=(2, 2, 3))}
    g = {"a": rng.uniform(size=(4, 3, 2)), "b": rng.uniform(size=(2, 2, 3))}
    s = {k: v.astype(np.float32) for k, v in s.items()}
    g = {k: v.astype(np.float32) for k, v in g.items()}
    got = L.style_cost(s, g, {"a": 0.3, "b": 2.0})
    want = 0.3 * np_layer_style(s["a"], g["a"]) + 2.0 * np_layer_style(s["b"], g["b"])
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("t", TRANSFORMS)
def test_total_variation_matches_loops(t):
    x, _ = _pair((5, 4, 3), 4)
    np.testing.assert_allclose(t(L.total_variation)(x), np_tv(x), rtol=1e-5)


def test_total_cost_components():
    rng = np.random.default_rng(5)
    aC, aG = _pair((4, 4, 3), 6)
    sS, sG = _pair((4, 4, 2), 7)
    img = rng.uniform(size=(8, 8, 3)).astype(np.float32)
    j, c = L.total_cost(aC, {"s": L.style_target(sS)}, aG, {"s": sG}, img,
                        alpha=2.0, beta=3.0, layer_weights={"s": 0.5}, tv_weight=0.1)
    want_c = np_content(aC, aG)
    want_s = 0.5 * np_layer_style(sS, sG)
    np.testing.assert_allclose(c["content"], want_c, rtol=1e-5)
    np.testing.assert_allclose(c["style"], want_s, rtol=1e-5)
    np.testing.assert_allclose(j, 2 * want_c + 3 * want_s + 0.1 * np_tv(img), rtol=1e-5)


# ----------------------------------------------------------------------------- properties


def test_gram_invariant_to_pixel_shuffle():
    a, _ = _pair((4, 5, 3))
    perm = np.random.default_rng(0).permutation(20)
    shuffled = a.reshape(20, 3)[perm].reshape(4, 5, 3)
    np.testing.assert_allclose(L.gram_matrix(a), L.gram_matrix(shuffled), rtol=1e-5)


def test_zero_at_target():
    a, _ = _pair((4, 5, 3))
    assert float(L.content_cost(a, a)) == 0.0
    assert float(L.layer_style_cost(a, a)) == 0.0
    assert float(L.total_variation(jnp.full((5, 6, 3), 0.3))) == 0.0


def test_style_target_size_independent():
    """A tiled image has the same per-pixel Gram, so the cost against its tile is zero."""
    a, _ = _pair((3, 4, 2))
    big = np.tile(a, (2, 3, 1))
    np.testing.assert_allclose(L.layer_style_cost(a, big), 0.0, atol=1e-6)


@pytest.mark.slow  # real sizes are the point (7 s); the small-size algebra is tested above
def test_no_int32_overflow_at_real_sizes():
    a = jnp.ones((512, 512, 512), jnp.float32) * 0.0 + 1.0
    b = a * 2.0
    # (2 nH nW nC)^2 = 7.4e19 would overflow int32 (and int64 once squared).
    got = L.content_cost(a, b)
    np.testing.assert_allclose(got, 0.25, rtol=1e-5)


# ----------------------------------------------------------------------------- contracts


def _loss_fns():
    t = L.style_target(_pair((3, 3, 2), 9)[0])
    aC = _pair((3, 3, 2), 8)[0]
    return {
        "content_cost": lambda a: L.content_cost(aC, a[:, :, :2]),
        "layer_style_cost": lambda a: L.layer_style_cost(aC, a[:, :, :2]),
        "style_from_target": lambda a: L.layer_style_cost_from_target(t, a[:, :, :2]),
        "total_variation": L.total_variation,
    }


@pytest.mark.parametrize("name", list(_loss_fns()))
def test_loss_contract(name):
    f = _loss_fns()[name]
    x = jnp.asarray(_pair((3, 3, 3), 10)[0])
    v = f(x)
    assert v.shape == () and v.dtype == jnp.float32
    np.testing.assert_allclose(jax.jit(f)(x), v, rtol=1e-6)
    batch = jnp.stack([x, x * 0.5, x + 0.1])
    np.testing.assert_allclose(jax.vmap(f)(batch), [f(b) for b in batch], rtol=1e-5)
    g = jax.grad(f)(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", list(_loss_fns()))
def test_grad_matches_finite_differences(name):
    f = _loss_fns()[name]
    x = np.asarray(_pair((3, 3, 3), 11)[0], np.float64)
    g = np.asarray(jax.grad(f)(jnp.asarray(x, jnp.float32)))
    eps = 1e-2
    rng = np.random.default_rng(0)
    for idx in [tuple(rng.integers(0, 3, 3)) for _ in range(5)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (float(f(jnp.asarray(xp, jnp.float32))) - float(f(jnp.asarray(xm, jnp.float32)))) / (2 * eps)
        np.testing.assert_allclose(g[idx], fd, rtol=2e-2, atol=1e-4)


# ----------------------------------------------------------------------------- errors


def test_errors_name_what_is_wrong():
    a = jnp.ones((2, 2, 3))
    with pytest.raises(ValueError, match=r"a_G: expected shape \(2, 2, 3\) \(as a_C\), got \(2, 2, 4\)"):
        L.content_cost(a, jnp.ones((2, 2, 4)))
    with pytest.raises(ValueError, match=r"expected activations of shape \(nH, nW, nC\), got \(4, 3\)"):
        L.gram_matrix(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="normalization: expected one of"):
        L.content_cost(a, a, normalization="bogus")
    with pytest.raises(ValueError, match=r"style target: expected shape \(3, 3\), got \(2, 2\)"):
        L.layer_style_cost_from_target(jnp.ones((2, 2)), a)
    with pytest.raises(ValueError, match=r"style layers \['x'\] missing"):
        L.style_cost({}, {}, {"x": 1.0})
