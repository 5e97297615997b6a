"""The matrix-free matting Laplacian (nst_jax.photo) against a dense one built from
Levin et al.'s definition with NumPy loops, its gradient against finite differences,
and the conjugate-gradient smoothing against a direct solve."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import photo


def dense_laplacian(img: np.ndarray, eps: float) -> np.ndarray:
    """``L (N, N)`` of Levin et al. 2008, Eq. 12, window by window, pixel by pixel."""
    h, w, _ = img.shape
    L = np.zeros((h * w, h * w))
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            idx = [(y + a) * w + (x + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
            P = np.array([img[i // w, i % w] for i in idx], np.float64)        # (9, 3)
            mu = P.mean(0)
            cov = (P - mu).T @ (P - mu) / 9
            A = np.linalg.inv(cov + eps / 9 * np.eye(3))
            for a, i in enumerate(idx):
                for b, j in enumerate(idx):
                    L[i, j] += (i == j) - (1 + (P[a] - mu) @ A @ (P[b] - mu)) / 9
    return L


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1, (6, 7, 3))
    img[:3, :3] = 0.4  # a flat patch: covariance 0, A = 9 / eps
    V = rng.uniform(0, 1, (6, 7, 3)).astype(np.float32)
    return img, V


@pytest.mark.parametrize("eps", [photo.EPS, 1e-3])
def test_energy_equals_the_dense_laplacian(small, eps):
    img, V = small
    L = dense_laplacian(img, eps)
    Vf = V.astype(np.float64).reshape(-1, 3)
    ref = sum(Vf[:, c] @ L @ Vf[:, c] for c in range(3))
    stats = photo.matting_stats(img, eps)
    got = float(photo.matting_energy(jnp.asarray(V), stats))
    # float32 against float64; A reaches 9 / eps = 9e7 in the flat patch, where d is exactly 0
    assert abs(got - ref) <= 1e-4 * abs(ref) + 1e-4, (got, ref)
    g = np.asarray(jax.grad(photo.matting_energy)(jnp.asarray(V), stats), np.float64).reshape(-1, 3)
    np.testing.assert_allclose(g, 2 * L @ Vf, rtol=1e-3, atol=1e-3 * np.abs(2 * L @ Vf).max())


def test_the_laplacian_is_psd_and_kills_locally_affine_images(small):
    img, V = small
    stats = photo.matting_stats(img, 1e-3)
    assert float(photo.matting_energy(jnp.asarray(V), stats)) >= 0
    # a colour transform of the content itself (V = M img + b): L V ~ 0 as eps -> 0
    stats0 = photo.matting_stats(img, 1e-9)
    M = np.array([[0.5, 0.2, 0.0], [0.1, 0.9, 0.3], [0.0, 0.4, 0.6]])
    aff = (img @ M.T + 0.1).astype(np.float32)
    assert float(photo.matting_energy(jnp.asarray(aff), stats0)) < 1e-4 * float(
        photo.matting_energy(jnp.asarray(V), stats0))


def test_gradient_against_finite_differences(small):
    img, V = small
    stats = photo.matting_stats(img, 1e-3)
    f = lambda v: photo.matting_energy(v, stats)  # noqa: E731
    g = jax.grad(f)(jnp.asarray(V))
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = rng.normal(size=V.shape).astype(np.float32)
        h = 1e-2  # the energy is quadratic: central differences are exact up to rounding
        fd = (float(f(jnp.asarray(V + h * u))) - float(f(jnp.asarray(V - h * u)))) / (2 * h)
        assert abs(fd - float(jnp.vdot(g, u))) <= 1e-3 * abs(fd) + 1e-3


def test_jit_equals_eager(small):
    img, V = small
    stats = photo.matting_stats(img)
    a = photo.matting_energy(jnp.asarray(V), stats)
    b = jax.jit(photo.matting_energy)(jnp.asarray(V), stats)
    # another program (fused): the same sums up to float32 rounding
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5)


def test_smoothing_by_cg_equals_a_direct_solve(small):
    img, V = small
    eps, lam = 1e-3, 0.5
    L = dense_laplacian(img, eps)
    direct = np.linalg.solve(np.eye(L.shape[0]) + lam * L, V.astype(np.float64).reshape(-1, 3))
    R = photo.smooth(jnp.asarray(V), photo.matting_stats(img, eps), lam, tol=1e-7, maxiter=2000)
    np.testing.assert_allclose(np.asarray(R).reshape(-1, 3), direct, atol=2e-4)


@pytest.mark.parametrize(("call", "msg"), [
    (lambda: photo.matting_stats(np.zeros((2, 5, 3))), "at least 3x3"),
    (lambda: photo.matting_energy(jnp.zeros((5, 5, 3)), photo.matting_stats(np.zeros((6, 5, 3)))),
     r"expected \(6, 5, C\)"),
    (lambda: photo.smooth(jnp.zeros((5, 5, 3)), photo.matting_stats(np.zeros((5, 5, 3))), 0.0),
     "lam: expected a weight > 0"),
])
def test_refusals(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
