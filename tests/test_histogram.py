"""Risser et al.'s histogram loss (nst_jax.histogram, --style-loss hist) against NumPy,
its gradient by finite differences, blends, and its refusals (tiles, regions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST, rand_image, tiny_params

from nst_jax import histogram, problem, vgg
from nst_jax.cli import stylize_main
from nst_jax.config import Config


def test_quantiles_are_numpys_hazen_quantiles():
    F = np.random.default_rng(0).normal(size=(37, 4))
    got = np.asarray(histogram.quantiles(jnp.asarray(F, jnp.float32), 10))
    ref = np.quantile(F, (np.arange(10) + 0.5) / 10, axis=0, method="hazen")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_rank_remap_matches_each_value_to_the_style_quantile_at_its_rank():
    rng = np.random.default_rng(1)
    S, F = rng.gamma(2.0, size=(50, 3)), rng.normal(size=(30, 3))
    q = histogram.quantiles(jnp.asarray(S, jnp.float32), 50)  # Q = M_S: the order statistics
    got = np.asarray(histogram.remap_by_rank(q, jnp.asarray(F, jnp.float32)))
    ref = np.empty_like(F)
    for c in range(3):  # a loop: rank of each value, then the style's quantile there
        for m in range(30):
            rank = int(np.sum(F[:, c] < F[m, c]))
            ref[m, c] = np.quantile(S[:, c], (rank + 0.5) / 30, method="hazen")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_histogram_remap_is_the_rank_remap_to_the_bin_width():
    rng = np.random.default_rng(3)
    S, F = rng.gamma(2.0, size=(4000, 3)), rng.normal(size=(5000, 3))
    q = histogram.quantiles(jnp.asarray(S, jnp.float32))
    binned = np.asarray(histogram.remap(q, jnp.asarray(F, jnp.float32)))
    exact = np.asarray(histogram.remap_by_rank(q, jnp.asarray(F, jnp.float32)))
    # the CDF within a bin is linear: off by a fraction of a bin's mass (1/256 of the
    # values here), so the matched quantiles differ by a small share of the spread
    assert np.mean(np.abs(binned - exact)) < 0.01 * S.std()
    assert np.max(np.abs(binned - exact)) < 0.2 * S.std()


def test_cost_is_small_for_the_styles_own_values_and_its_gradient_is_finite_differences():
    rng = np.random.default_rng(2)
    a_S = rng.uniform(0, 2, (32, 32, 3)).astype(np.float32)
    t = histogram.hist_target(jnp.asarray(a_S))
    shuffled = rng.permutation(a_S.reshape(-1, 3), axis=0).reshape(32, 32, 3)
    own = float(histogram.hist_cost(t, jnp.asarray(shuffled)))
    other = float(histogram.hist_cost(t, jnp.asarray(rng.normal(1, 1, (32, 32, 3)), jnp.float32)))
    assert own < 1e-3 * other  # the style's own distribution: only the bins' rounding is left
    a_G = jnp.asarray(rng.normal(size=(6, 7, 3)), jnp.float32)
    g = np.asarray(jax.grad(lambda a: histogram.hist_cost(t, a))(a_G), np.float64)
    # the loss with the remap frozen at a_G (Risser et al.'s constant R): central differences
    R = np.asarray(histogram.remap(t["q"], a_G.reshape(-1, 3)), np.float64).reshape(6, 7, 3)
    f = lambda a: float(np.mean((a - R) ** 2))  # noqa: E731
    x = np.asarray(a_G, np.float64)
    for idx in [(0, 0, 0), (3, 2, 1), (5, 6, 2)]:
        e = np.zeros_like(x)
        e[idx] = 1e-4
        fd = (f(x + e) - f(x - e)) / 2e-4
        assert fd == pytest.approx(g[idx], rel=1e-3, abs=1e-7)


def test_objective_with_hist_jit_and_blend():
    params = tiny_params()
    C, S1, S2 = rand_image(40, 48, 1), rand_image(32, 32, 2), rand_image(36, 30, 3)
    cfg = Config(style_loss="hist").validate("vgg16")
    t = problem.compute_targets(params, vgg.CAFFE, C, [S1, S2], cfg, style_blend=[0.25, 0.75])
    t1 = problem.compute_targets(params, vgg.CAFFE, C, [S1], cfg)
    t2 = problem.compute_targets(params, vgg.CAFFE, C, [S2], cfg)
    for k in cfg.style_layers:  # the blend of the quantile functions
        np.testing.assert_allclose(np.asarray(t["style"][k]["q"]), 0.25 * np.asarray(t1["style"][k]["q"])
                                   + 0.75 * np.asarray(t2["style"][k]["q"]), rtol=1e-5, atol=1e-4)
    X = jnp.asarray(rand_image(40, 48, 4))
    j, terms = problem.objective(X, params, t, cfg, vgg.CAFFE)
    jj = jax.jit(lambda x: problem.objective(x, params, t, cfg, vgg.CAFFE)[0])(X)
    assert float(jj) == pytest.approx(float(j), rel=1e-5)  # jit against eager: rounding
    assert float(terms["style"]) > 0
    with pytest.raises(ValueError, match="tiled runs need quantiles of the whole image"):
        Config(style_loss="hist", tile=64).validate("vgg16")


def test_cli_hist_runs_and_refuses_tiles_and_regions(work, tmp_path, capsys):
    base = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "--style-loss", "hist", "--overwrite"]
    assert stylize_main([*base, "-o", str(work / "h.png")]) == 0
    assert stylize_main([*base, "-o", str(tmp_path / "r.png"), "--tile", "64"]) == 2
    assert "style_loss 'hist': tiled runs need quantiles" in capsys.readouterr().err
    assert stylize_main([*base, "-o", str(tmp_path / "r.png"), "--content-mask", str(work / "s.png"),
                         "--mask-resize", "stretch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'hist': regions and masks are not offered" in err[0], err
