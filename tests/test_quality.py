"""Colour control, averaging, convergence stopping, coarse-to-fine, resume (issue: quality)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image

from nst_jax import color, vgg
from nst_jax.config import Config
from nst_jax.optimize import (
    averaged,
    compute_targets,
    init_image,
    init_loop_state,
    iterate,
    make_optimizer,
    make_step,
    scale_sizes,
    stylize,
)

SPEC = vgg.CAFFE
TINY = Config(alpha=1.0, beta=1e-2, iterations=12, report_every=4, learning_rate=0.05)


def smooth_image(h, w, seed):
    """Mid-range, smooth colours (no pixel near 0 or 1, so clipping never bites)."""
    small = np.random.default_rng(seed).uniform(0.3, 0.7, (4, 4, 3)).astype(np.float32)
    return np.asarray(jax.image.resize(jnp.asarray(small), (h, w, 3), "linear"))


@pytest.fixture(scope="module")
def images():
    return smooth_image(32, 32, 1), rand_image(32, 32, 2)


# ----------------------------------------------------------------------------- colour


def test_yiq_round_trip():
    x = jnp.asarray(rand_image(5, 4))
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(x)), x, atol=1e-5)
    np.testing.assert_allclose(color.luminance(x)[..., 0],
                               0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2], rtol=1e-5)


def test_histogram_matching_gives_content_mean_and_covariance():
    rng = np.random.default_rng(0)
    style = rng.uniform(0, 1, (20, 30, 3)).astype(np.float32) * [1.0, 0.3, 0.6]
    content = rng.normal(0.5, 0.1, (25, 25, 3)).astype(np.float32) @ np.array(
        [[1, 0.2, 0], [0, 1, 0.3], [0.1, 0, 1]], np.float32)
    out = np.asarray(color.match_color(jnp.asarray(style), jnp.asarray(content))).reshape(-1, 3)
    c = content.reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), c.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(c, rowvar=False), atol=1e-4)


def test_luminance_mode_keeps_the_content_chroma(params16, images):
    C, S = images
    img, _ = stylize(C, S, params16, SPEC, config=TINY.replace(preserve_color="luminance"))
    assert img.shape == C.shape
    iq_out = np.asarray(color.rgb_to_yiq(jnp.asarray(img)))[..., 1:]
    iq_c = np.asarray(color.rgb_to_yiq(jnp.asarray(C)))[..., 1:]
    np.testing.assert_allclose(iq_out, iq_c, atol=1e-5)
    assert np.abs(img - C).max() > 1e-2  # the luminance did change


def test_original_colors_keeps_the_content_chroma(params16, images):
    C, S = images
    plain, _ = stylize(C, S, params16, SPEC, config=TINY)
    swapped, _ = stylize(C, S, params16, SPEC, config=TINY.replace(original_colors=True))
    want = np.clip(np.asarray(color.original_colors(jnp.asarray(plain), jnp.asarray(C))), 0, 1)
    np.testing.assert_allclose(swapped, want, atol=1e-5)


def test_histogram_mode_uses_matched_style(params16, images):
    from nst_jax.optimize import network_inputs

    C, S = images
    cfg = TINY.replace(preserve_color="histogram").validate("vgg16")
    _, (s_net,) = network_inputs(C, [S], cfg)
    want = np.clip(np.asarray(color.match_color(jnp.asarray(S), jnp.asarray(C))), 0, 1)
    np.testing.assert_allclose(s_net, want, atol=1e-6)
    img, _ = stylize(C, S, params16, SPEC, config=cfg)
    assert np.all(np.isfinite(img))


# ----------------------------------------------------------------------------- averaging


def test_ema_equals_hand_computation(params16, images):
    C, S = images
    d = 0.6
    # The engine's program and this one differ in fusions and summation order: an ulp apart, a
    # near-tie in max pooling can route a pixel's gradient the other way. SGD keeps that
    # local (Adam's first steps are ~lr sign(g): up to lr where g is ~0); measured: 2 of
    # 3072 values 3e-5 apart, the rest within 1e-6.
    cfg = TINY.replace(iterations=3, report_every=3, avg_decay=d, optimizer="sgd",
                       learning_rate=1.0).validate("vgg16")
    out, _ = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(0))
    tx = make_optimizer(cfg)
    step = jax.jit(make_step(tx, SPEC))
    t = compute_targets(params16, SPEC, C, S, cfg)
    G = init_image(jnp.asarray(C), cfg, key=jax.random.key(0))
    s = tx.init(G)
    avg = np.zeros_like(C)
    for _ in range(3):
        G, s, _ = step(G, s, params16, t, cfg)
        avg = d * avg + (1 - d) * np.asarray(G)
    want = avg / (1 - d**3)
    G0 = init_image(jnp.asarray(C), cfg, key=jax.random.key(0))
    assert np.abs(np.asarray(G) - np.asarray(G0)).max() > 1e-2  # the steps moved it
    diff = np.abs(out - np.clip(want, 0, 1))
    assert np.mean(diff > 1e-5) < 0.005 and diff.max() < 1e-3, (np.mean(diff > 1e-5), diff.max())


def test_averaged_before_first_step_is_x():
    cfg = Config(avg_decay=0.9)
    X = jnp.ones((2, 2, 3))
    ls = init_loop_state(make_optimizer(cfg), X, cfg)
    np.testing.assert_array_equal(averaged(X, ls, cfg), X)


# ----------------------------------------------------------------------------- stopping


def test_tolerance_stops_early(params16, images):
    C, S = images
    cfg = TINY.replace(iterations=400, report_every=10, tol=0.05, tol_window=5,
                       learning_rate=0.002)
    _, hist = stylize(C, S, params16, SPEC, config=cfg)
    assert hist["converged"] and hist["steps"] < 400
    h = hist["total"]
    assert abs(h[-1] - h[-6]) < 0.05 * abs(h[-6])  # the test that stopped it
    _, hist2 = stylize(C, S, params16, SPEC, config=cfg.replace(tol=0.0, iterations=40))
    assert not hist2["converged"] and hist2["steps"] == 40


# ----------------------------------------------------------------------------- scales


def test_scale_sizes():
    assert scale_sizes(30, 60, Config()) == [(30, 60)]
    assert scale_sizes(30, 60, Config(scales=3)) == [(8, 15), (15, 30), (30, 60)]
    assert scale_sizes(300, 200, Config(scales=2, min_size=100)) == [(100, 67), (300, 200)]


def test_coarse_to_fine_runs_each_scale(params16):
    C, S = smooth_image(48, 64, 3), rand_image(40, 40, 4)
    reports = list(iterate(C, S, params16, SPEC, config=TINY.replace(scales=2, min_size=32,
                                                                       iterations=8)))
    assert [(r.scale, r.image.shape[:2]) for r in reports] == [
        (0, (24, 32)), (0, (24, 32)), (1, (48, 64)), (1, (48, 64))]
    assert reports[-1].step == 16 and reports[-1].finished
    assert not reports[1].finished


def test_first_scale_too_small_is_refused(params16):
    with pytest.raises(ValueError, match=r"content image: 8x8 at the first scale is too small"):
        list(iterate(rand_image(32, 32), rand_image(32, 32), params16, SPEC,
                     config=TINY.replace(scales=3)))


# ----------------------------------------------------------------------------- resume


@pytest.mark.slow
@pytest.mark.parametrize("opt", ["adam", "lbfgs"])
def test_resume_is_bitwise_equal_to_uninterrupted(params16, images, opt):
    C, S = images
    cfg = TINY.replace(optimizer=opt, avg_decay=0.5, scales=2, min_size=16, iterations=8)
    full = list(iterate(C, S, params16, SPEC, config=cfg, key=jax.random.key(7), snapshots=True))
    for cut in (1, 2):  # mid-scale, and exactly at the end of the first scale
        snap = full[cut - 1].snapshot
        resumed = list(iterate(C, S, params16, SPEC, config=cfg, key=jax.random.key(99),
                               resume=snap))
        # bitwise: the resumed chunks are the same programs on the same restored state
        np.testing.assert_array_equal(resumed[-1].image, full[-1].image)
        np.testing.assert_array_equal(resumed[-1].history, full[-1].history)
        assert resumed[-1].step == full[-1].step


def test_checkpoint_file_round_trip(params16, images, tmp_path):
    from nst_jax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    C, S = images
    cfg = TINY.replace(optimizer="lbfgs")
    first = next(iterate(C, S, params16, SPEC, config=cfg, snapshots=True))
    save_checkpoint(tmp_path / "c.ckpt", first.snapshot, {"beta": 0.01})
    snap, settings = load_checkpoint(tmp_path / "c.ckpt")
    assert settings == {"beta": 0.01}
    a = list(iterate(C, S, params16, SPEC, config=cfg, resume=first.snapshot))[-1]
    b = list(iterate(C, S, params16, SPEC, config=cfg, resume=snap))[-1]
    np.testing.assert_array_equal(a.image, b.image)  # bitwise: same program, same restored state
    (tmp_path / "bad.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint|not an nst_jax checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="does not match these settings"):
        list(iterate(C, S, params16, SPEC, config=cfg.replace(optimizer="adam"), resume=snap))


# ----------------------------------------------------------------------------- real weights


@pytest.mark.slow
@pytest.mark.real_weights
def test_lbfgs_beats_adam_at_equal_evaluations(real16, capsys):
    params, spec = real16
    from conftest import ROOT

    from nst_jax.image import load_image

    C = load_image(ROOT / "examples" / "content_chelsea.png", 64)
    S = load_image(ROOT / "examples" / "style_swirls.png", 64)
    budget = 40
    _, adam = stylize(C, S, params, spec, config=Config(iterations=budget, report_every=10))
    lb_cfg = Config(optimizer="lbfgs", iterations=budget, report_every=1)
    lb = None

    def stop(p):
        return p.evals >= budget - 2

    _, lb = stylize(C, S, params, spec, config=lb_cfg, callback=stop)
    with capsys.disabled():
        print(f"\n  64 px, {budget} evaluations: Adam J={adam['costs']['total']:.4g} "
              f"({adam['evals']} evals); L-BFGS J={lb['costs']['total']:.4g} "
              f"({lb['evals']} evals, {lb['steps']} iterations)")
    assert lb["evals"] <= budget
    assert lb["costs"]["total"] < adam["costs"]["total"]
