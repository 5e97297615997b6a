"""Exact tiled cost and gradient (nst_jax.tiling) against the whole-image computation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, rand_image, tiny_params

from nst_jax import problem, tiling, vgg
from nst_jax.config import Config
from nst_jax.engine import at_scale, stylize


def _costs(params, C, S, X, cfg, tile):
    """(J, dJ/dX) untiled and tiled, each jitted."""
    out = []
    for t in (0, tile):
        c = dataclasses.replace(cfg, tile=t)
        targets = problem.compute_targets(params, vgg.CAFFE, C, [S], c)
        f = jax.jit(jax.value_and_grad(
            lambda x, c=c, t=targets: problem.objective(x, params, t, c, vgg.CAFFE)[0]))
        out.append(f(jnp.asarray(X)))
    return out


@pytest.mark.parametrize(("arch", "layer", "halo", "align"), [
    ("vgg16", "conv5_1", 64, 16), ("vgg19", "conv5_1", 80, 16), ("vgg16", "conv4_2", 40, 8),
    ("vgg16", "conv1_2", 2, 1), ("vgg19", "conv3_4", 24, 4),
])
def test_receptive_halo(arch, layer, halo, align):
    # By hand: each 3x3 conv at level p widens the corrupted band by 2^p pixels, each
    # pooling rounds it up to whole cells; e.g. conv4_2: 1+1 -> 2, +2+2 -> 6, cell 4 -> 8,
    # +4*3 -> 20, cell 8 -> 24, +8+8 -> 40.
    assert tiling.receptive_halo(arch, ["conv1_1", layer]) == (halo, align)


@pytest.mark.parametrize(("arch", "shape"), [
    ("vgg16", (50, 61)), pytest.param("vgg19", (67, 75), marks=pytest.mark.slow)])
def test_window_features_equal_the_whole_image(arch, shape):
    params = tiny_params(arch)
    x = vgg.preprocess(jnp.asarray(rand_image(*shape)), vgg.CAFFE)
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_2", "conv5_1"]
    cfg = Config(tile=64 if arch == "vgg16" else 80).validate(arch)
    prob = tiling.problem_for(x.shape, cfg, arch)
    assert prob.plan.n_tiles == 1  # one window: the image padded to the stride, its own borders
    xw, ext = tiling._window(prob, tiling.pad_canvas(x, prob.plan), jnp.int32(0))
    whole = vgg.vgg_features(params, x, layers)
    win = vgg.vgg_features(params, xw, layers, extent=ext)
    for k in layers:
        h, w, _ = whole[k].shape
        own = win[k]
        # Equal to float rounding, not bitwise: the window is another program on another
        # array (other shapes and offsets), and XLA:CPU may vectorise its sums differently
        # (3 of 12200 values differed by up to 7.6e-6 on an AVX2 EPYC).
        ref = np.asarray(whole[k])
        np.testing.assert_allclose(np.asarray(own[:h, :w]), ref, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(ref).max()))
        assert float(jnp.max(jnp.abs(own[h:]))) == 0.0 and float(jnp.max(jnp.abs(own[:, w:]))) == 0.0


@pytest.mark.parametrize(("arch", "shape", "style_loss", "norm", "tile"), [
    ("vgg16", (150, 200), "gram", "lecture", 64),      # 3 x 4 tiles, odd-free sizes
    ("vgg16", (97, 130), "gram", "jcjohnson", 80),     # odd sizes, tile not dividing
    # VGG19's 80 px halo and meancov: the slow suite (9 s); VGG16 above covers the method
    pytest.param("vgg19", (170, 141), "meancov", "gatys", 80, marks=pytest.mark.slow),
    pytest.param("vgg16", (130, 97), "w2", "tf-tutorial", 64, marks=pytest.mark.slow),
])
def test_tiled_value_and_gradient_equal_the_untiled(arch, shape, style_loss, norm, tile):
    params = tiny_params(arch)
    C, S, X = rand_image(*shape, seed=1), rand_image(90, 61, seed=2), rand_image(*shape, seed=3)
    cfg = Config(style_loss=style_loss, normalization=norm, tv_weight=0.1).validate(arch)
    (j0, g0), (j1, g1) = _costs(params, C, S, X, cfg, tile)
    assert abs(float(j1 - j0)) <= 1e-5 * abs(float(j0))
    rel = float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0))
    # w2: d tr(sqrt(X)) = tr(X^-1/2 dX)/2 amplifies float rounding of the covariance by the
    # inverse square root of its smallest eigenvalues (16 synthetic channels, near-singular).
    assert rel <= (1e-4 if style_loss == "w2" else 1e-5), rel


def test_halo_is_needed():
    """With one stride less than the halo, interior tiles see their fake edges."""
    params = tiny_params("vgg16")
    cfg = Config(tile=64).validate("vgg16")
    x = vgg.preprocess(jnp.asarray(rand_image(256, 256)), vgg.CAFFE)
    good = tiling.problem_for(x.shape, cfg, "vgg16")
    assert good.plan.rows == 4  # interior tiles: owned cells one halo from the windows' fake edges
    short = dataclasses.replace(good, plan=dataclasses.replace(good.plan, halo=good.plan.halo - 16))
    sums = [tiling.tiled_sums(p, tiling.pad_canvas(x, p.plan), params, None, None)["style"]["conv5_1"]["gram"]
            for p in (good, short)]
    whole = vgg.vgg_features(params, x, ["conv5_1"])["conv5_1"]
    ref = np.einsum("hwi,hwj->ij", np.asarray(whole, np.float64), np.asarray(whole, np.float64))
    np.testing.assert_allclose(np.asarray(sums[0]), ref, rtol=1e-5)
    assert not np.allclose(np.asarray(sums[1]), ref, rtol=1e-3)


@pytest.mark.slow
def test_eager_jit_and_vmap_over_loss_weights(params16):
    C, S, X = rand_image(100, 90, 1), rand_image(64, 64, 2), rand_image(100, 90, 3)
    cfg = Config(tile=64).validate("vgg16")
    targets = problem.compute_targets(params16, vgg.CAFFE, C, [S], cfg)

    def vg(x, alpha, beta):
        c = cfg.replace(alpha=alpha, beta=beta)
        return jax.value_and_grad(lambda x: problem.objective(x, params16, targets, c, vgg.CAFFE)[0])(x)

    X = jnp.asarray(X)
    alphas, betas = jnp.asarray([1.0, 0.5]), jnp.asarray([1e-4, 1e-2])
    jb, gb = jax.jit(jax.vmap(vg, in_axes=(None, 0, 0)))(X, alphas, betas)
    for k in range(2):
        je, ge = vg(X, alphas[k], betas[k])  # eager
        # another program (eager ops against one fused, vmapped one): float32 rounding of
        # the tile sums, 1.07e-6 relative seen with the masked windows
        np.testing.assert_allclose(float(jb[k]), float(je), rtol=1e-5)
        assert float(jnp.linalg.norm(gb[k] - ge) / jnp.linalg.norm(ge)) < 1e-5


@pytest.mark.slow
def test_loss_weight_cotangents(params16):
    """dJ/dalpha = J_content and dJ/dbeta = J_style through the custom VJP."""
    C, S, X = rand_image(80, 80, 1), rand_image(64, 64, 2), jnp.asarray(rand_image(80, 80, 3))
    cfg = Config(tile=64).validate("vgg16")
    targets = problem.compute_targets(params16, vgg.CAFFE, C, [S], cfg)

    def j(alpha, beta):
        return problem.objective(X, params16, targets, cfg.replace(alpha=alpha, beta=beta), vgg.CAFFE)[0]

    da, db = jax.grad(j, argnums=(0, 1))(1.0, 1e-4)
    terms = problem.objective(X, params16, targets, cfg, vgg.CAFFE)[1]
    np.testing.assert_allclose([float(da), float(db)], [float(terms["content"]), float(terms["style"])],
                               rtol=1e-6)


def test_twenty_adam_steps_match_the_untiled_run(params16):
    C, S = rand_image(100, 90, 1), rand_image(64, 64, 2)
    cfg = Config(iterations=20, report_every=10)
    a, ha = stylize(C, S, params16, vgg.CAFFE, config=cfg)
    b, hb = stylize(C, S, params16, vgg.CAFFE, config=cfg.replace(tile=64))
    assert float(np.mean(np.abs(a - b))) < 1e-4
    np.testing.assert_allclose(hb["total"], ha["total"], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kw", [
    {"optimizer": "lbfgs", "iterations": 5},
    {"preserve_color": "luminance", "scales": 2, "min_size": 64},
    {"precision": "bf16"},
    # lr 0.001: a descending run (J 220 -> 133). At 0.01 SGD diverged (J 220 -> 1e5,
    # pixels at the box), so any rounding difference grew: tiled and whole agreed on
    # one CPU (Zen 4) and differed by 0.16 on another (Zen 5), and by 0.078 with the
    # first layer as a dot; at 0.001 they agree to 3e-9 on the Zen 5 CPU
    {"optimizer": "sgd", "learning_rate": 0.001, "avg_decay": 0.9},
])
def test_tiled_runs_compose(params16, kw):
    C, S = rand_image(150, 130, 1), rand_image(90, 61, 2)
    cfg = Config(**{"iterations": 12, "report_every": 6, **kw})
    a, ha = stylize(C, [S, S[::-1]], params16, vgg.CAFFE, config=cfg, style_blend=[0.7, 0.3])
    b, hb = stylize(C, [S, S[::-1]], params16, vgg.CAFFE, config=cfg.replace(tile=64),
                    style_blend=[0.7, 0.3])
    # bf16 rounds differently per window. After a coarse-to-fine reset, Adam's first
    # steps move every pixel by ~lr whatever its gradient's size, so where a gradient is
    # ~0 the sign of its rounding decides: the first steps of each scale agree to 1e-6,
    # the images to ~5e-4 (so does the untiled run against itself with other rounding).
    tol = 2e-2 if kw.get("precision") == "bf16" else 2e-3 if "scales" in kw else 1e-4
    assert float(np.mean(np.abs(a - b))) < tol
    first = [0, cfg.iterations] if "scales" in kw else [0]
    np.testing.assert_allclose(hb["total"][first], ha["total"][first], rtol=1e-6)
    assert ha["evals"] == hb["evals"] or kw.get("precision") == "bf16"


@pytest.mark.slow
def test_tiled_grid_matches_untiled_grid(params16):
    from nst_jax.grid import stylize_grid

    C, S = rand_image(100, 90, 1), rand_image(64, 64, 2)
    cfg = Config(iterations=6, report_every=3)
    r0 = stylize_grid(C, S, params16, vgg.CAFFE, config=cfg, alpha=[1.0, 2.0], beta=[1e-4])
    r1 = stylize_grid(C, S, params16, vgg.CAFFE, config=cfg.replace(tile=64), alpha=[1.0, 2.0], beta=[1e-4])
    assert float(np.max(np.abs(np.asarray(r0.images) - np.asarray(r1.images)))) < 1e-4


def test_tiling_only_where_a_scale_exceeds_a_tile():
    cfg = Config(tile=128)
    assert at_scale(cfg, (100, 128)).tile == 0
    assert at_scale(cfg, (100, 129)).tile == 128


def test_tile_smaller_than_the_halo_is_refused():
    with pytest.raises(ValueError, match=r"tile: 48 px is smaller than the 64 px halo that conv5_1 needs"):
        tiling.plan_tiles((300, 300), 48, "vgg16", ["conv4_2", "conv5_1"])
    with pytest.raises(ValueError, match=r"tile: expected an integer >= 0"):
        Config(tile=-1).validate()


def test_plan_geometry():
    plan = tiling.plan_tiles((300, 100), 100, "vgg16", ["conv5_1"])
    # 100 -> 96 (the stride 16); 300 px (304 rounded up): 4 windows with
    # 4 win - 6 * 64 >= 304 -> 176, starts spread over [0, 128] on the stride;
    # 100 px: 2 windows would need 2 * 120 > 112: one window of the whole (no halo)
    assert (plan.win_h, plan.row_starts) == (176, (0, 32, 80, 128))
    assert (plan.win_w, plan.col_starts) == (112, (0,))
    assert plan.canvas == (304, 112) and plan.n_tiles == 4
    big = tiling.plan_tiles((1024, 1024), 512, "vgg19", ["conv5_1"])
    # two 592 px windows inside the image (the old plan: 672 px, half of it past the border)
    assert (big.win_h, big.row_starts, big.canvas) == (592, (0, 432), (1024, 1024))
    assert tiling.plan_tiles((1024, 1024), 768, "vgg19", ["conv5_1"]).window == (592, 592)


@pytest.mark.parametrize(("halo", "align"), [(64, 16), (80, 16), (40, 8), (24, 4), (2, 1)])
def test_windows_cover_the_image_with_exact_tiles(halo, align):
    """Every side and tile: windows inside the image rounded up to the stride, on the
    stride, no larger than the tile plus two halos (or the whole side), and each tile
    owns only cells at least a halo from its window's inner edges."""
    for side in range(1, 700, 11):
        for tile in range(max(halo, align), 600, 37):
            t = tile // align * align
            win, starts = tiling._axis(side, t, halo, align)
            side_a = -(-side // align) * align
            assert starts[0] == 0 and starts[-1] + win == side_a and win % align == 0
            assert all(s % align == 0 for s in starts)
            assert win <= t + 2 * halo or starts == (0,)
            owns = (0, *(s + halo for s in starts[1:]), side_a)
            for k, s in enumerate(starts):
                lo, hi = owns[k], owns[k + 1]
                assert lo < hi  # every tile owns something
                assert (k == 0 or lo >= s + halo) and (k == len(starts) - 1 or hi <= s + win - halo)


@pytest.mark.slow
def test_resume_a_whole_image_run_with_tiles(params16):
    """A checkpoint holds X and the optimizer state only: a run may continue in tiles."""
    from nst_jax.engine import iterate

    C, S = rand_image(100, 90, 1), rand_image(64, 64, 2)
    cfg = Config(iterations=10, report_every=5)
    whole = list(iterate(C, S, params16, vgg.CAFFE, config=cfg, snapshots=True))
    resumed = list(iterate(C, S, params16, vgg.CAFFE, config=cfg.replace(tile=64),
                           resume=whole[0].snapshot))
    assert resumed[-1].step == 10
    assert float(np.mean(np.abs(resumed[-1].image - whole[-1].image))) < 1e-4
    np.testing.assert_allclose(resumed[-1].history, whole[-1].history, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.parametrize(("style_loss", "norm"), [("gram", "lecture"), ("w2", "gatys")])
def test_tiled_equals_untiled_with_the_real_vgg16(real16, style_loss, norm):
    """The bundled example photos, the real ImageNet VGG16: 200 x 150 in 4 x 3 tiles."""
    from nst_jax.image import load_image

    params, spec = real16
    ex = ROOT / "examples"
    C, S = load_image(ex / "content_chelsea.png", 200), load_image(ex / "style_swirls.png", 160)
    X = jnp.asarray(np.clip(C + 0.1 * rand_image(*C.shape[:2], seed=5) - 0.05, 0, 1))
    cfg = Config(style_loss=style_loss, normalization=norm).validate("vgg16")
    out = []
    for tile in (0, 64):
        c = dataclasses.replace(cfg, tile=tile)
        t = problem.compute_targets(params, spec, C, [S], c)
        out.append(jax.jit(jax.value_and_grad(
            lambda x, c=c, t=t: problem.objective(x, params, t, c, spec)[0]))(X))
    (j0, g0), (j1, g1) = out
    assert abs(float(j1 - j0)) <= 1e-5 * abs(float(j0))
    assert float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0)) <= 1e-5


def _guides(h: int, w: int, style_hw: tuple[int, int]):
    """Two soft-edged regions (left/right), a style mask on style 0, a content-strength ramp."""
    from nst_jax.guides import Guides

    soft = np.clip((np.arange(w)[None, :] - w * 0.35) / (w * 0.2), 0, 1) * np.ones((h, 1))
    sm = np.zeros(style_hw, np.float32)
    sm[:, : style_hw[1] * 2 // 3] = 1
    return Guides(regions=np.stack([1 - soft, soft]).astype(np.float32), region_of=(0, 1),
                  style_masks=(sm, None),
                  content=np.linspace(0.2, 1, h * w, dtype=np.float32).reshape(h, w))


@pytest.mark.parametrize("style_loss", ["gram", "meancov", pytest.param("w2", marks=pytest.mark.slow)])
def test_regions_and_content_mask_in_tiles_equal_the_whole(params16, style_loss):
    """Masked sums are sums: two regions, a style mask and a content-strength map, tiled
    (3 x 4 windows), give the whole image's cost and gradient."""
    C, S1, S2, X = (rand_image(150, 200, 1), rand_image(90, 61, 2), rand_image(70, 80, 5),
                    jnp.asarray(rand_image(150, 200, 3)))
    g = _guides(150, 200, (90, 61))
    out = []
    for t in (0, 64):
        cfg = Config(style_loss=style_loss, tv_weight=0.1, tile=t).validate("vgg16")
        targets = problem.compute_targets(params16, vgg.CAFFE, C, [S1, S2], cfg, guides=g)
        assert all(v.shape[0] == 2 for v in jax.tree.leaves(targets["style"]))  # one per region
        f = jax.jit(jax.value_and_grad(
            lambda x, c=cfg, tt=targets: problem.objective(x, params16, tt, c, vgg.CAFFE)[0]))
        out.append(f(X))
    (j0, g0), (j1, g1) = out
    # Another program summing in another order: equal to float rounding (measured 0 and
    # 3e-7 for gram/meancov; w2's tr sqrt amplifies it, as in the unmasked test above:
    # 2.1e-5 on a Zen 5 CPU, under 1e-5 on a Zen 4).
    assert abs(float(j1 - j0)) <= (1e-4 if style_loss == "w2" else 1e-5) * abs(float(j0))
    rel = float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0))
    assert rel <= (1e-4 if style_loss == "w2" else 1e-5), rel


def test_masked_style_moments_in_tiles_equal_the_whole(params16):
    """A style image's own region (its mask), tiled: the guided Gram of the whole image."""
    from nst_jax import losses

    S = rand_image(150, 130, 2)
    mask = np.zeros((150, 130), np.float32)
    mask[20:120, 10:90] = 1.0
    cfg = Config(tile=64).validate("vgg16")
    x = vgg.preprocess(jnp.asarray(S), vgg.CAFFE)
    prob = tiling.problem_for(S.shape, cfg, "vgg16")
    from nst_jax.guides import layer_masks

    lm = layer_masks(jnp.asarray(mask), cfg.style_layers)
    got = tiling.style_moments(prob, tiling.pad_canvas(x, prob.plan), params16, lm)
    whole = vgg.vgg_features(params16, x, cfg.style_layers)
    for k in cfg.style_layers:
        ref = np.asarray(losses.guided_gram_matrix(whole[k], lm[k]))
        # tiled sums vs one product: the same terms in another order (float rounding)
        np.testing.assert_allclose(np.asarray(got[k]["gram"]), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
