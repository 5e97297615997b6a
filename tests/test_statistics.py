"""Mean+covariance and Wasserstein-2 style statistics against independent NumPy/SciPy
computations, their derivatives against finite differences, and end to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image
from scipy.linalg import sqrtm

from nst_jax import grid as Gd
from nst_jax import statistics as St
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import stylize
from nst_jax.problem import compute_targets, objective


def _acts(seed: int, h: int = 5, w: int = 4, c: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 2, (h, w, c)).astype(np.float32)


def _np_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population covariance by explicit loops (float64)."""
    F = a.reshape(-1, a.shape[-1]).astype(np.float64)
    mu = np.array([sum(F[m, i] for m in range(len(F))) / len(F) for i in range(F.shape[1])])
    cov = np.zeros((F.shape[1], F.shape[1]))
    for i in range(F.shape[1]):
        for j in range(F.shape[1]):
            cov[i, j] = sum((F[m, i] - mu[i]) * (F[m, j] - mu[j]) for m in range(len(F))) / len(F)
    return mu, cov


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_feature_stats_match_loops(t):
    a = _acts(0)
    mu, cov = t(St.feature_stats)(jnp.asarray(a))
    want_mu, want_cov = _np_stats(a)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-5)
    np.testing.assert_allclose(cov, want_cov, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_w2_and_meancov_match_scipy(t):
    aS, aG = _acts(1), _acts(2)
    muS, cS = _np_stats(aS)
    muG, cG = _np_stats(aG)
    s = sqrtm(cS).real
    w2 = (np.sum((muS - muG) ** 2) + np.trace(cS) + np.trace(cG)
          - 2 * np.trace(sqrtm(s @ cG @ s).real)) / 3
    mc = np.sum((muS - muG) ** 2) / 12 + np.sum((cS - cG) ** 2) / 36
    for loss, want in (("w2", w2), ("meancov", mc)):
        target = St.stats_target(jnp.asarray(aS), loss)
        cost = St.w2_cost if loss == "w2" else St.meancov_cost
        np.testing.assert_allclose(float(t(cost)(target, jnp.asarray(aG))), want, rtol=1e-4)


def test_costs_vanish_on_the_style_itself():
    a = jnp.asarray(_acts(3, 6, 6, 4))
    assert float(St.meancov_cost(St.stats_target(a, "meancov"), a)) == 0.0
    assert abs(float(St.w2_cost(St.stats_target(a, "w2"), a))) < 1e-4 * float(jnp.mean(a ** 2))


def test_trace_sqrtm_gradient_is_finite_differences():
    rng = np.random.default_rng(4)
    b = rng.standard_normal((4, 4))
    m = b @ b.T + 0.5 * np.eye(4)
    d = rng.standard_normal((4, 4))
    d = (d + d.T) / 2
    g = np.asarray(jax.grad(St.trace_sqrtm)(jnp.asarray(m, jnp.float32)), np.float64)
    eps = 1e-3
    fd = (np.trace(sqrtm(m + eps * d).real) - np.trace(sqrtm(m - eps * d).real)) / (2 * eps)
    np.testing.assert_allclose(np.sum(g * d), fd, rtol=1e-3)


def test_w2_gradient_is_finite_differences_and_stable_with_repeated_eigenvalues():
    aS = jnp.asarray(_acts(5, 6, 6, 3))
    target = St.stats_target(aS, "w2")
    aG = _acts(6, 6, 6, 3).astype(np.float64)
    g = np.asarray(jax.grad(lambda a: St.w2_cost(target, a))(jnp.asarray(aG, jnp.float32)), np.float64)
    v = np.random.default_rng(7).standard_normal(aG.shape)
    v /= np.linalg.norm(v)
    eps = 1e-2
    f = jax.jit(lambda a: St.w2_cost(target, a))
    fd = (float(f(jnp.asarray(aG + eps * v, jnp.float32)))
          - float(f(jnp.asarray(aG - eps * v, jnp.float32)))) / (2 * eps)
    np.testing.assert_allclose(np.vdot(g, v), fd, rtol=2e-2)
    # a constant channel (zero variance, repeated zero eigenvalues): still finite
    flat = aG.copy()
    flat[..., 1] = 0.7
    flat[..., 2] = 0.7
    grad_flat = jax.grad(lambda a: St.w2_cost(target, a))(jnp.asarray(flat, jnp.float32))
    assert np.isfinite(np.asarray(grad_flat)).all()


@pytest.mark.parametrize("loss", ["meancov", "w2"])
def test_contract_scalar_jit_vmap_grad(loss):
    a = jnp.asarray(_acts(8))
    target = St.stats_target(jnp.asarray(_acts(9)), loss)
    cost = St.w2_cost if loss == "w2" else St.meancov_cost
    j = cost(target, a)
    assert j.shape == () and j.dtype == jnp.float32
    np.testing.assert_allclose(float(jax.jit(cost)(target, a)), float(j), rtol=1e-5)
    batch = jax.vmap(cost, in_axes=(None, 0))(target, jnp.stack([a, a * 1.1]))
    np.testing.assert_allclose(batch[0], j, rtol=1e-5)
    assert np.isfinite(np.asarray(jax.grad(cost, argnums=1)(target, a))).all()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["meancov", "w2"])
def test_stylize_blend_and_grid_with_each_statistic(params16, loss):
    C, S1, S2 = rand_image(32, 32, 1), rand_image(32, 32, 2), rand_image(32, 32, 3)
    cfg = Config(alpha=1.0, beta=1e-2, iterations=6, report_every=3, learning_rate=0.05,
                 style_loss=loss, style_layers=("conv1_1", "conv2_1", "conv3_1"),
                 style_weights=(1 / 3, 1 / 3, 1 / 3))
    _, hist = stylize(C, [S1, S2], params16, vgg.CAFFE, config=cfg, style_blend=[0.5, 0.5])
    assert np.isfinite(hist["total"]).all() and hist["total"][-1] < hist["total"][0]
    only_first = compute_targets(params16, vgg.CAFFE, C, [S1, S2], cfg.validate("vgg16"), [1.0, 0.0])
    direct = compute_targets(params16, vgg.CAFFE, C, S1, cfg.validate("vgg16"))
    np.testing.assert_allclose(only_first["style"]["conv2_1"]["cov"], direct["style"]["conv2_1"]["cov"],
                               rtol=1e-6)
    g = Gd.stylize_grid(C, S1, params16, vgg.CAFFE, config=cfg, betas=[1e-2, 1e-1])
    assert g.images.shape == (2, 32, 32, 3) and np.isfinite(g.costs["style"]).all()
    J = objective(jnp.asarray(C), params16, direct, cfg.validate("vgg16"), vgg.CAFFE)[1]
    assert float(J["style"]) > 0


def test_bad_style_loss_and_too_few_positions(params16):
    expected = r"style_loss: expected one of \('gram', 'meancov', 'w2', 'hist', 'swd', 'mrf'\)"
    with pytest.raises(ValueError, match=expected):
        Config(style_loss="kl").validate("vgg16")
    cfg = Config(style_loss="w2", iterations=2, report_every=2)
    with pytest.raises(ValueError, match=r"conv5_1 1 position.*needs at least 2 to estimate a covariance"):
        stylize(rand_image(16, 16), rand_image(32, 32), params16, vgg.CAFFE, config=cfg)


HANG = r"""
import sys
sys.path.insert(0, ".")
import numpy as np
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.grid import stylize_grid
params = vgg.synthetic_params("vgg16", vgg.CHANNELS, seed=0)
C = np.random.default_rng(0).uniform(0, 1, (96, 96, 3)).astype(np.float32)
r = stylize_grid(C, C, params, vgg.CAFFE, config=Config(iterations=2, report_every=2, style_loss="w2"),
                 betas=[1e-4, 1e-3])
print("ok", r.images.shape)
"""


@pytest.mark.slow
def test_w2_under_vmap_does_not_deadlock_without_the_cli_xla_flag():
    """A grid (vmap over points) of w2 runs with 512-channel layers, with XLA's default
    CPU scheduler: the batched eigh deadlocked there before ``_eigh`` became sequential
    under vmap (every thread idle, forever)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", HANG], capture_output=True, text=True, env=env,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0 and "ok (2, 96, 96, 3)" in r.stdout, r.stderr[-2000:]
