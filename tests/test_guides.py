"""Regions, style masks and content-strength maps (Gatys et al. 2017, section 3):
guided Grams and weighted moments against NumPy loops, derivatives against finite
differences, the algebraic properties the issue names, mask carrying against the
network's own pooling, every refusal, and end to end (stylize, grid, scales)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image

from nst_jax import guides as Gu
from nst_jax import losses as L
from nst_jax import statistics as St
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import stylize
from nst_jax.grid import stylize_grid
from nst_jax.problem import compute_targets, objective

LAYERS = {"conv1_1": 0.5, "conv2_1": 0.5}


def _acts(seed: int, h: int = 5, w: int = 4, c: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 2, (h, w, c)).astype(np.float32)


def _soft_mask(seed: int, h: int = 5, w: int = 4) -> np.ndarray:
    m = np.random.default_rng(seed).uniform(0, 1, (h, w)).astype(np.float32)
    m[0, 0] = 0.0  # a hole
    return m


def _np_guided_gram(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``sum_{h,w} m^2 a_c a_c' / sum m`` by explicit loops (float64)."""
    h, w, c = a.shape
    g = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            g[i, j] = sum(m[y, x] ** 2 * a[y, x, i] * a[y, x, j] for y in range(h) for x in range(w))
    return g / m.astype(np.float64).sum()


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_guided_gram_matches_loops(t):
    a, m = _acts(0), _soft_mask(1)
    got = t(L.guided_gram_matrix)(jnp.asarray(a), jnp.asarray(m))
    np.testing.assert_allclose(got, _np_guided_gram(a, m), rtol=1e-5)


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_weighted_moments_match_loops(t):
    a, m = _acts(2), _soft_mask(3)
    F = a.reshape(-1, 3).astype(np.float64)
    w = m.reshape(-1).astype(np.float64)
    mu = np.array([sum(w[k] * F[k, i] for k in range(len(F))) / w.sum() for i in range(3)])
    cov = np.array([[sum(w[k] * (F[k, i] - mu[i]) * (F[k, j] - mu[j]) for k in range(len(F))) / w.sum()
                     for j in range(3)] for i in range(3)])
    got_mu, got_cov = t(St.feature_stats)(jnp.asarray(a), jnp.asarray(m))
    np.testing.assert_allclose(got_mu, mu, rtol=1e-5)
    np.testing.assert_allclose(got_cov, cov, rtol=1e-4, atol=1e-6)


def test_masked_content_cost_matches_loops():
    aC, aG, m = _acts(4), _acts(5), _soft_mask(6)
    want = sum(m[y, x] * (aC[y, x, c] - aG[y, x, c]) ** 2
               for y in range(5) for x in range(4) for c in range(3)) / (4 * 5 * 4 * 3)
    got = L.content_cost(jnp.asarray(aC), jnp.asarray(aG), mask=jnp.asarray(m))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("loss", ["gram", "meancov", "w2"])
def test_all_ones_masks_give_the_unmasked_cost(loss):
    feats_S = {k: jnp.asarray(_acts(7 + i, 6, 6, 3)) for i, k in enumerate(LAYERS)}
    feats_G = {k: jnp.asarray(_acts(9 + i, 6, 6, 3)) for i, k in enumerate(LAYERS)}
    ones = {k: jnp.ones((6, 6)) for k in LAYERS}
    # 1 * F == F and sum(1) == M exactly in float32, but the masked cost is another program,
    # whose sums XLA may fuse and vectorise differently: equal to float rounding.
    if loss == "gram":
        plain = L.style_cost(feats_S, feats_G, LAYERS)
        np.testing.assert_allclose(
            float(L.style_cost(feats_S, feats_G, LAYERS, masks=ones, style_masks=ones)), float(plain),
            rtol=1e-6)
    targets = {k: (L.style_target(feats_S[k]) if loss == "gram" else St.stats_target(feats_S[k], loss))
               for k in LAYERS}
    plain = L.style_cost_from_targets(targets, feats_G, LAYERS, style_loss=loss)
    stacked = jax.tree.map(lambda x: x[None], targets)
    masked = L.style_cost_from_targets(stacked, feats_G, LAYERS, style_loss=loss,
                                       masks={k: m[None] for k, m in ones.items()})
    np.testing.assert_allclose(float(masked), float(plain), rtol=2e-6)
    aC, aG = feats_S["conv1_1"], feats_G["conv1_1"]
    np.testing.assert_allclose(float(L.content_cost(aC, aG, mask=ones["conv1_1"])),
                               float(L.content_cost(aC, aG)), rtol=1e-6)


@pytest.mark.parametrize("loss", ["gram", "meancov", "w2"])
def test_disjoint_regions_cost_the_sum_and_ignore_each_other(loss):
    feats_G = {k: _acts(11 + i, 6, 6, 3) for i, k in enumerate(LAYERS)}
    top = np.zeros((6, 6), np.float32)
    top[:3] = 1.0
    bottom = 1.0 - top

    def target(seed: int):
        a = jnp.asarray(_acts(seed, 6, 6, 3))
        return {k: L.style_target(a) if loss == "gram" else St.stats_target(a, loss) for k in LAYERS}

    t1, t2 = target(13), target(14)
    both = jax.tree.map(lambda x, y: jnp.stack([x, y]), t1, t2)

    def cost(t, masks, feats):
        return float(L.style_cost_from_targets(t, {k: jnp.asarray(v) for k, v in feats.items()},
                                               LAYERS, style_loss=loss,
                                               masks={k: jnp.asarray(m) for k, m in masks.items()}))

    def one(t, m):
        return cost(jax.tree.map(lambda x: x[None], t), {k: m[None] for k in LAYERS}, feats_G)

    two = cost(both, {k: np.stack([top, bottom]) for k in LAYERS}, feats_G)
    np.testing.assert_allclose(two, one(t1, top) + one(t2, bottom), rtol=1e-5)
    # what lies outside a region does not change that region's cost
    changed = {k: v.copy() for k, v in feats_G.items()}
    for v in changed.values():
        v[3:] *= 3.0
    np.testing.assert_allclose(
        cost(jax.tree.map(lambda x: x[None], t1), {k: top[None] for k in LAYERS}, changed),
        one(t1, top), rtol=1e-6)


@pytest.mark.parametrize("loss", ["gram", "meancov", "w2"])
def test_guided_style_cost_gradient_is_finite_differences(loss):
    aS = jnp.asarray(_acts(15, 6, 6, 3))
    t = L.style_target(aS) if loss == "gram" else St.stats_target(aS, loss)
    t = jax.tree.map(lambda x: x[None], t)
    m = jnp.asarray(_soft_mask(16, 6, 6))[None]

    def f(a):
        return L.style_cost_from_targets({"conv1_1": t}, {"conv1_1": a}, {"conv1_1": 1.0},
                                         style_loss=loss, masks={"conv1_1": m})

    aG = _acts(17, 6, 6, 3).astype(np.float64)
    g = np.asarray(jax.grad(f)(jnp.asarray(aG, jnp.float32)), np.float64)
    v = np.random.default_rng(18).standard_normal(aG.shape)
    v /= np.linalg.norm(v)
    eps = 1e-2
    fj = jax.jit(f)
    fd = (float(fj(jnp.asarray(aG + eps * v, jnp.float32)))
          - float(fj(jnp.asarray(aG - eps * v, jnp.float32)))) / (2 * eps)
    np.testing.assert_allclose(np.vdot(g, v), fd, rtol=2e-2)


def test_contract_jit_vmap_grad_of_guided_gram():
    a, m = jnp.asarray(_acts(19)), jnp.asarray(_soft_mask(20))
    g = L.guided_gram_matrix(a, m)
    np.testing.assert_allclose(jax.jit(L.guided_gram_matrix)(a, m), g, rtol=1e-6)
    batch = jax.vmap(L.guided_gram_matrix, in_axes=(None, 0))(a, jnp.stack([m, 1.0 - m]))
    np.testing.assert_allclose(batch[0], g, rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(L.guided_gram_matrix(x, m) ** 2))(a)
    assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_array_equal(np.asarray(grad)[0, 0], 0.0)  # the hole gets no gradient


def test_masks_are_carried_like_the_features(params16):
    """pool_mask gives each layer's exact grid (odd sizes included) and averages as the
    network's average pooling does."""
    x = rand_image(45, 37, 21)
    feats = vgg.vgg_features(params16, vgg.preprocess(jnp.asarray(x), vgg.CAFFE),
                             ["conv1_1", "conv2_1", "conv3_1", "conv4_2", "conv5_1"])
    m = np.random.default_rng(22).uniform(0, 1, (45, 37)).astype(np.float32)
    for layer, mm in Gu.layer_masks(jnp.asarray(m), list(feats)).items():
        assert mm.shape == feats[layer].shape[:2], layer
    pooled = vgg.pool2x2(vgg.pool2x2(jnp.asarray(m)[..., None], "avg"), "avg")[..., 0]
    np.testing.assert_allclose(Gu.pool_mask(m, 2), pooled, rtol=1e-6)


def _two_regions(h: int, w: int) -> np.ndarray:
    m = np.zeros((2, h, w), np.float32)
    m[0, : h // 2] = 1.0
    m[1, h // 2:] = 1.0
    return m


def test_targets_blend_within_a_region_and_full_region_is_unguided(params16):
    cfg = Config().validate("vgg16")
    C, S1, S2 = rand_image(32, 32, 23), rand_image(32, 32, 24), rand_image(32, 32, 25)
    plain = compute_targets(params16, vgg.CAFFE, C, [S1, S2], cfg, [0.3, 0.7])
    one = compute_targets(params16, vgg.CAFFE, C, [S1, S2], cfg, [0.3, 0.7],
                          guides=Gu.Guides(regions=np.ones((1, 32, 32)), region_of=(0, 0)))
    for k in cfg.style_layers:
        np.testing.assert_allclose(one["style"][k][0], plain["style"][k], rtol=1e-5, atol=1e-6)
    X = jnp.asarray(rand_image(32, 32, 26))
    np.testing.assert_allclose(float(objective(X, params16, one, cfg, vgg.CAFFE)[0]),
                               float(objective(X, params16, plain, cfg, vgg.CAFFE)[0]), rtol=1e-5)
    # three styles, two regions: styles 0 and 2 share region 0, weights renormalised there
    three = compute_targets(params16, vgg.CAFFE, C, [S1, S2, S1], cfg, [1.0, 1.0, 3.0],
                            guides=Gu.Guides(regions=_two_regions(32, 32), region_of=(0, 1, 0)))
    solo1 = compute_targets(params16, vgg.CAFFE, C, [S1], cfg)
    solo2 = compute_targets(params16, vgg.CAFFE, C, [S2], cfg)
    for k in cfg.style_layers:
        np.testing.assert_allclose(three["style"][k][0], solo1["style"][k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(three["style"][k][1], solo2["style"][k], rtol=1e-5, atol=1e-6)


def test_style_mask_learns_from_its_region_only(params16):
    cfg = Config(style_layers=("conv1_1",), style_weights=(1.0,)).validate("vgg16")
    C, S = rand_image(32, 32, 27), rand_image(32, 64, 28)
    left = np.zeros((32, 64), np.float32)
    left[:, :32] = 1.0
    masked = compute_targets(params16, vgg.CAFFE, C, [S], cfg,
                             guides=Gu.Guides(style_masks=(left,)))
    # the left half's Gram away from the cut equals a crop's (conv1_1 sees 1 px around)
    crop = compute_targets(params16, vgg.CAFFE, C, [S[:, :32]], cfg)
    np.testing.assert_allclose(masked["style"]["conv1_1"], crop["style"]["conv1_1"], rtol=0.05)
    other = S.copy()
    other[:, 34:] = 0.0  # change only what the mask (and the 3x3 border) does not see
    again = compute_targets(params16, vgg.CAFFE, C, [other], cfg, guides=Gu.Guides(style_masks=(left,)))
    np.testing.assert_allclose(again["style"]["conv1_1"], masked["style"]["conv1_1"], rtol=1e-6)


# w2 runs the same plumbing with eigendecompositions (21 s): the slow suite. Its masked
# math is tested by finite differences above, its vmap by test_statistics' deadlock test.
@pytest.mark.parametrize("loss", ["gram", pytest.param("w2", marks=pytest.mark.slow)])
def test_stylize_two_regions_scales_and_grid(params16, loss):
    cfg = Config(iterations=4, report_every=2, beta=1e-2, style_loss=loss)
    C, S1, S2 = rand_image(64, 64, 29), rand_image(64, 64, 30), rand_image(64, 64, 31)
    g = Gu.Guides(regions=_two_regions(64, 64), content=np.linspace(0, 1, 64 * 64).reshape(64, 64))
    img, hist = stylize(C, [S1, S2], params16, vgg.CAFFE, config=cfg, guides=g)
    assert img.shape == (64, 64, 3) and np.isfinite(hist["total"]).all()
    assert hist["total"][-1] < hist["total"][0]
    img2, _ = stylize(C, [S1, S2], params16, vgg.CAFFE, config=cfg.replace(scales=2, min_size=48),
                      guides=g)
    assert img2.shape == (64, 64, 3)
    r = stylize_grid(C, [S1, S2], params16, vgg.CAFFE, config=cfg, betas=[1e-2, 1e-1], guides=g)
    if loss == "gram":  # the grid's point is the single run
        np.testing.assert_allclose(r.images[0], img, atol=1e-5)
    else:  # batched eigh rounds differently and Adam's sign-like first steps amplify it
        np.testing.assert_allclose(r.costs["total"][0], hist["costs"]["total"], rtol=5e-2)


def test_content_mask_weighs_the_content_layer(params16):
    cfg = Config().validate("vgg16")
    C, X = rand_image(32, 32, 32), jnp.asarray(rand_image(32, 32, 33))
    strength = np.ones((32, 32), np.float32)
    strength[:, 16:] = 0.0  # free the right half
    t = compute_targets(params16, vgg.CAFFE, C, [C], cfg, guides=Gu.Guides(content=strength))
    _, terms = objective(X, params16, t, cfg, vgg.CAFFE)
    layer = cfg.content_layer
    aC = np.asarray(vgg.vgg_features(params16, vgg.preprocess(jnp.asarray(C), vgg.CAFFE), [layer])[layer])
    aG = np.asarray(vgg.vgg_features(params16, vgg.preprocess(X, vgg.CAFFE), [layer])[layer])
    m = np.zeros(aC.shape[:2])
    m[:, : aC.shape[1] // 2] = 1.0  # 8 px cells: the left half of conv4_2's 4x4 grid
    want = np.sum(m[..., None] * (aC - aG) ** 2) / (4 * aC.size)
    np.testing.assert_allclose(float(terms["content"]), want, rtol=1e-4)


def test_refusals():
    cfg = Config().validate("vgg16")
    w2 = Config(style_loss="w2").validate("vgg16")
    ok = _two_regions(64, 64)
    with pytest.raises(ValueError, match=r"region masks: 32x64 has aspect ratio 0.500.*--mask-resize"):
        Gu.at_layers(Gu.Guides(regions=ok[:, :, :32]), (64, 64), [(64, 64)] * 2, cfg)
    Gu.at_layers(Gu.Guides(regions=ok[:, :, :32], stretch=True), (64, 64), [(64, 64)] * 2, cfg)
    sliver = ok.copy()
    sliver[1] = 0.0
    sliver[1, 63, 63] = 1.0  # one pixel: one position of conv1_1
    with pytest.raises(ValueError, match=r"region 2 \(b\): covers 1 position\(s\) of conv1_1.*'w2'"):
        Gu.at_layers(Gu.Guides(regions=sliver), (64, 64), [(64, 64)] * 2, w2, names=["a", "b"])
    Gu.at_layers(Gu.Guides(regions=sliver), (64, 64), [(64, 64)] * 2, cfg)  # a Gram needs one
    odd = np.zeros((2, 65, 65), np.float32)
    odd[0] = 1.0
    odd[1, 64, :] = 1.0  # the last row, which the network's VALID pooling drops
    with pytest.raises(ValueError, match=r"region 2 \(style 1\): empty at conv2_1 .*32x32 grid"):
        Gu.at_layers(Gu.Guides(regions=odd), (65, 65), [(64, 64)] * 2, cfg)
    with pytest.raises(ValueError, match=r"regions: region\(s\) \[1\] have no style image"):
        Gu.at_layers(Gu.Guides(regions=ok, region_of=(0, 0)), (64, 64), [(64, 64)] * 2, cfg)
    with pytest.raises(ValueError, match="regions: 2 regions for 3 style images"):
        Gu.at_layers(Gu.Guides(regions=ok), (64, 64), [(64, 64)] * 3, cfg)
    with pytest.raises(ValueError, match="style region of style 0: empty at conv1_1"):
        Gu.at_layers(Gu.Guides(style_masks=(np.zeros((8, 8)),)), (64, 64), [(64, 64)], cfg)
    with pytest.raises(ValueError, match=r"mask: expected shape \(5, 4\)"):
        L.guided_gram_matrix(jnp.asarray(_acts(0)), jnp.ones((4, 5)))


def test_regions_from_labels_orders_by_first_appearance_and_absorbs_noise():
    rng = np.random.default_rng(34)
    lab = np.zeros((100, 100, 3), np.uint8)
    lab[:, :] = (0, 0, 255)        # blue everywhere...
    lab[:30] = (255, 0, 0)         # ...red on top: red appears first from the top left
    lab[60:, 50:] = (0, 200, 0)    # a green block
    noisy = np.clip(lab.astype(int) + rng.integers(-12, 13, lab.shape), 0, 255).astype(np.uint8)
    noisy[80, 70] = (128, 128, 128)  # one stray grey pixel (0.01%): joins the nearest, green
    masks, colours = Gu.regions_from_labels(noisy)
    assert len(colours) == 3
    np.testing.assert_array_equal(masks[0], (np.arange(100) < 30)[:, None] * np.ones((1, 100)))
    assert colours[0][0] > 200 and colours[1][2] > 200 and colours[2][1] > 150
    assert masks[2][60:, 50:].all() and masks[2].sum() == 40 * 50
    np.testing.assert_array_equal(masks.sum(0), 1.0)  # a partition
