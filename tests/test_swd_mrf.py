"""The sliced Wasserstein (nst_jax.swd) and patch (nst_jax.mrf) style losses against NumPy
loops, their gradients by finite differences, swd's per-step directions and their
determinism, and every refusal (0 directions, a layer too deep for patches, tiles,
regions, uneven mrf blends)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST, rand_image, tiny_params
from PIL import Image

from nst_jax import mrf, problem, swd, vgg
from nst_jax.cli import stylize_main
from nst_jax.config import Config
from nst_jax.engine import stylize


def _hazen(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.quantile(x, p, method="hazen")


def _exact_swd(FG: np.ndarray, FS: np.ndarray, dirs: np.ndarray) -> float:
    """Sliced W2^2 by sorting: along each direction G's sorted projections against the
    style's quantiles at G's rank positions (the style resampled to G's count)."""
    m = FG.shape[0]
    total = 0.0
    for k in range(dirs.shape[1]):
        pg = np.sort(FG @ dirs[:, k])
        ps = _hazen(FS @ dirs[:, k], (np.arange(m) + 0.5) / m)
        total += np.mean((pg - ps) ** 2)
    return total / dirs.shape[1]


def test_quantile_table_is_the_quantile_function_to_a_bin():
    P = np.random.default_rng(0).gamma(2.0, size=(20000, 3))
    got = np.asarray(swd.quantile_table(jnp.asarray(P, jnp.float32), 64))
    ref = np.stack([_hazen(P[:, k], (np.arange(64) + 0.5) / 64) for k in range(3)], axis=1)
    width = (P.max(0) - P.min(0)) / swd.STYLE_BINS
    assert np.all(np.abs(got - ref) < 2 * width)  # the CDF is linear within a bin


def test_swd_cost_is_the_sliced_wasserstein_distance_by_sorting():
    rng = np.random.default_rng(1)
    FS = rng.gamma(2.0, size=(3000, 8)).astype(np.float32)   # a skewed style, unequal counts
    FG = rng.normal(1.0, 0.7, size=(50, 40, 8)).astype(np.float32)
    key = jax.random.key(3)
    target = {"samples": (jnp.asarray(FS),), "w": jnp.ones((1,), jnp.float32)}
    got = float(swd.swd_cost(target, jnp.asarray(FG), key, 16))
    dirs = np.asarray(swd.directions(key, 8, 16), np.float64)
    ref = _exact_swd(FG.reshape(-1, 8).astype(np.float64), FS.astype(np.float64), dirs)
    # the histogram matches are the rank matches up to the bins' widths (a few % of a
    # distance this size; 0 only with infinitely many bins)
    assert got == pytest.approx(ref, rel=0.03)
    own = float(swd.swd_cost(target, jnp.asarray(rng.permutation(FS)[:2000].reshape(40, 50, 8)), key, 16))
    assert own < 0.01 * got  # the style's own distribution: only sampling and bins are left


def test_swd_blend_is_the_blend_of_quantile_functions():
    rng = np.random.default_rng(2)
    A, B = rng.normal(0, 1, (4000, 4)), rng.gamma(3.0, size=(2500, 4))
    dirs = swd.directions(jax.random.key(0), 4, 5)
    got = np.asarray(swd.style_quantiles((jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)),
                                         jnp.asarray([0.3, 0.7]), dirs))
    d = np.asarray(dirs, np.float64)
    p = (np.arange(256) + 0.5) / 256
    ref = np.stack([0.3 * _hazen(A @ d[:, k], p) + 0.7 * _hazen(B @ d[:, k], p) for k in range(5)], 1)
    # within a bin's width, except in the sparse tails, where consecutive order statistics
    # lie several bins apart and Hazen's interpolation between them differs more
    assert np.mean(np.abs(got - ref)) < 0.01 * ref.std()
    assert np.max(np.abs(got - ref)) < 0.1 * ref.std()


def test_swd_gradient_is_finite_differences_with_the_match_frozen():
    rng = np.random.default_rng(4)
    target = {"samples": (jnp.asarray(rng.uniform(0, 2, (500, 3)), jnp.float32),), "w": jnp.ones((1,))}
    key = jax.random.key(1)
    a = jnp.asarray(rng.normal(size=(6, 7, 3)), jnp.float32)
    g = np.asarray(jax.grad(lambda x: swd.swd_cost(target, x, key, 4))(a), np.float64)
    dirs = swd.directions(key, 3, 4)
    P = a.reshape(-1, 3) @ dirs
    from nst_jax import histogram

    R = np.asarray(histogram.remap(swd.style_quantiles(target["samples"], target["w"], dirs), P), np.float64)
    d = np.asarray(dirs, np.float64)
    f = lambda x: float(np.mean((x.reshape(-1, 3) @ d - R) ** 2))  # noqa: E731
    x = np.asarray(a, np.float64)
    for idx in [(0, 0, 0), (3, 2, 1), (5, 6, 2)]:
        e = np.zeros_like(x)
        e[idx] = 1e-4
        assert (f(x + e) - f(x - e)) / 2e-4 == pytest.approx(g[idx], rel=1e-3, abs=1e-7)


def test_swd_directions_follow_the_seed_and_the_step():
    t = {"swd_key": swd.seed_key(jax.random.key(7))}
    k0 = swd.layer_keys(swd.at_step(t, 0), ["a", "b"])
    k0b = swd.layer_keys(swd.at_step(t, 0), ["a", "b"])
    k1 = swd.layer_keys(swd.at_step(t, 1), ["a", "b"])
    data = lambda k: np.asarray(jax.random.key_data(k))  # noqa: E731
    assert np.array_equal(data(k0["a"]), data(k0b["a"]))           # same seed and step
    assert not np.array_equal(data(k0["a"]), data(k1["a"]))        # a new step
    assert not np.array_equal(data(k0["a"]), data(k0["b"]))        # another layer
    other = swd.layer_keys(swd.at_step({"swd_key": swd.seed_key(jax.random.key(8))}, 0), ["a"])
    assert not np.array_equal(data(k0["a"]), data(other["a"]))     # another seed
    assert np.array_equal(data(swd.layer_keys(t, ["a"])["a"]), data(k0["a"]))  # no step: step 0


def test_objective_with_swd_jit_steps_and_a_run_that_lowers_it():
    params = tiny_params()
    C, S = rand_image(40, 48, 1), rand_image(32, 32, 2)
    cfg = Config(style_loss="swd", swd_directions=8, iterations=8, report_every=4).validate("vgg16")
    t = problem.compute_targets(params, vgg.CAFFE, C, [S], cfg)
    X = jnp.asarray(rand_image(40, 48, 4))
    f = lambda x, tt: problem.objective(x, params, tt, cfg, vgg.CAFFE)[1]["style"]  # noqa: E731
    j0 = float(f(X, swd.at_step(t, 0)))
    # jit vs eager: an ulp of difference in a projection can move a value into the next
    # histogram bin, and at this tiny size (6 positions at conv5_1) one such move changes
    # the matched quantile by a visible share: 5e-4 measured, so a bound of 5e-3
    assert float(jax.jit(f)(X, swd.at_step(t, 0))) == pytest.approx(j0, rel=5e-3)
    assert float(f(X, swd.at_step(t, 1))) != j0  # other directions at the next step
    _, hist = stylize(C, S, params, vgg.CAFFE, config=cfg.replace(init="noise"))
    assert np.isfinite(hist["total"]).all() and hist["total"][-1] < hist["total"][0]


def _ncc(G: np.ndarray, P: np.ndarray, i: int, j: int, k: int) -> float:
    g, p = G[i:i + 3, j:j + 3].ravel(), P[k].ravel()
    return float(g @ p / (np.linalg.norm(g) * np.linalg.norm(p)))


def test_mrf_patches_nearest_by_normalised_cross_correlation_and_cost():
    rng = np.random.default_rng(5)
    S = rng.uniform(0, 1, (9, 11, 4)).astype(np.float32)
    G = rng.uniform(0, 1, (7, 8, 4)).astype(np.float32)
    P = np.asarray(mrf.mrf_target(jnp.asarray(S), stride=2))
    ref_p = np.stack([S[i:i + 3, j:j + 3] for i in range(0, 7, 2) for j in range(0, 9, 2)])
    np.testing.assert_array_equal(P, ref_p)  # the same numbers, copied
    # a bright copy of a patch beats a dim exact one under NCC, not under distance
    P = np.concatenate([P, 3.0 * G[None, 2:5, 3:6]])
    idx = np.asarray(mrf.nearest(jnp.asarray(P), jnp.asarray(G)))
    Pd, Gd = P.astype(np.float64), G.astype(np.float64)
    # each match has the highest NCC of all style patches (a loop over every pair, float64;
    # to 1e-5, since a float32 convolution may order a near-tie otherwise)
    for i, j in np.ndindex(*idx.shape):
        best = max(_ncc(Gd, Pd, i, j, k) for k in range(len(P)))
        assert _ncc(Gd, Pd, i, j, idx[i, j]) == pytest.approx(best, abs=1e-5)
    assert idx[2, 3] == len(P) - 1  # NCC 1 exactly, the others far below
    # in bands of rows (bounded memory): another program, so a near-tie could flip by a
    # rounding; each banded match must score what the whole image's match scores (NCC,
    # float64) to 1e-5, which on this random data means the same patch
    for cap in (len(P) * 6, len(P) * 6 * 2, 1):
        banded = np.asarray(mrf.nearest(jnp.asarray(P), jnp.asarray(G), cap))
        for i, j in np.ndindex(*idx.shape):
            assert _ncc(Gd, Pd, i, j, banded[i, j]) == pytest.approx(_ncc(Gd, Pd, i, j, idx[i, j]), abs=1e-5)
    got = float(mrf.mrf_cost(jnp.asarray(P), jnp.asarray(G)))
    ref = np.mean([np.mean((G[i:i + 3, j:j + 3] - P[idx[i, j]]) ** 2)
                   for i in range(5) for j in range(6)])
    assert got == pytest.approx(ref, rel=1e-5)
    g = np.asarray(jax.grad(lambda a: mrf.mrf_cost(jnp.asarray(P), a))(jnp.asarray(G)), np.float64)

    def frozen(a: np.ndarray) -> float:  # the matches of G held fixed, as the loss does
        return float(np.mean([np.mean((a[i:i + 3, j:j + 3] - P[idx[i, j]]) ** 2)
                              for i in range(5) for j in range(6)]))
    for ix in [(0, 0, 0), (3, 4, 2), (6, 7, 3)]:
        e = np.zeros_like(Gd)
        e[ix] = 1e-4
        assert (frozen(Gd + e) - frozen(Gd - e)) / 2e-4 == pytest.approx(g[ix], rel=1e-3, abs=1e-8)


def test_objective_with_mrf_pools_patches_augments_and_refuses():
    params = tiny_params()
    C, S1, S2 = rand_image(48, 48, 1), rand_image(40, 40, 2), rand_image(36, 44, 3)
    cfg = Config(style_loss="mrf", style_layers=("conv2_1", "conv3_1"), style_weights=(0.5, 0.5),
                 iterations=6, report_every=3).validate("vgg16")
    t = problem.compute_targets(params, vgg.CAFFE, C, [S1, S2], cfg)
    n = lambda hw, layer: ((hw[0] // 4 - 2 + 1) // 2) * ((hw[1] // 4 - 2 + 1) // 2)  # noqa: E731
    assert t["style"]["conv3_1"].shape[0] == n((40, 40), 3) + n((36, 44), 3)  # pooled, stride 2
    aug = problem.compute_targets(params, vgg.CAFFE, C, [S1], cfg.replace(mrf_augment=True))
    assert aug["style"]["conv2_1"].shape[0] > 5 * t["style"]["conv2_1"].shape[0] // 2
    X = jnp.asarray(rand_image(48, 48, 4))
    j = problem.objective(X, params, t, cfg, vgg.CAFFE)[0]
    jj = jax.jit(lambda x: problem.objective(x, params, t, cfg, vgg.CAFFE)[0])(X)
    assert float(jj) == pytest.approx(float(j), rel=1e-5)  # jit vs eager: rounding
    _, hist = stylize(C, S1, params, vgg.CAFFE, config=cfg.replace(init="noise"))
    assert hist["total"][-1] < hist["total"][0]
    with pytest.raises(ValueError, match="blend weights are not offered"):
        problem.compute_targets(params, vgg.CAFFE, C, [S1, S2], cfg, style_blend=[0.3, 0.7])
    with pytest.raises(ValueError, match=r"layer conv5_1 of the image is 2x2, too small for 3x3"):
        problem.compute_targets(params, vgg.CAFFE, rand_image(32, 32, 1), [S1],
                                cfg.replace(style_layers=("conv5_1",), style_weights=(1.0,)))


@pytest.mark.parametrize("loss", ["swd", "mrf"])
def test_whole_image_losses_refuse_tiles_and_training(loss):
    from nst_jax.models.train import check_config

    with pytest.raises(ValueError, match=f"style_loss '{loss}': tiled runs need"):
        Config(style_loss=loss, tile=64).validate("vgg16")
    with pytest.raises(ValueError, match=f"style_loss '{loss}': a network is trained with gram"):
        check_config(Config(style_loss=loss))


def test_cli_swd_is_deterministic_per_seed_and_mrf_runs(work, tmp_path):
    base = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "--style-loss", "swd", "--swd-directions", "8", "--init", "noise"]
    outs = [tmp_path / n for n in ("a.png", "b.png", "c.png")]
    for out, seed in zip(outs, ("3", "3", "4"), strict=True):
        assert stylize_main([*base, "--seed", seed, "-o", str(out)]) == 0
    a, b, c = (np.asarray(Image.open(o)) for o in outs)
    assert np.array_equal(a, b)  # the same program on the same input: bitwise (same machine)
    assert not np.array_equal(a, c)  # another seed: other noise and other directions
    assert stylize_main([str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                         *FAST, "--style-loss", "mrf", "--mrf-augment", "-o", str(tmp_path / "m.png")]) == 0


@pytest.mark.parametrize(("args", "msg"), [
    (["--style-loss", "mrf", "--style-layers", "conv5_1"],
     "style_loss 'mrf': layer conv5_1 of the image is 1x2, too small for 3x3 patches"),
    (["--style-loss", "swd", "--tile", "64"], "style_loss 'swd': tiled runs need quantiles"),
    (["--style-loss", "mrf", "--tile", "64"], "style_loss 'mrf': tiled runs need patch matches"),
    (["--style-loss", "swd", "--content-mask", "MASK"],
     "style_loss 'swd': regions and masks are not offered"),
])
def test_cli_refusals_are_one_error_line(work, tmp_path, capsys, args, msg):
    args = [str(work / "s.png") if a == "MASK" else a for a in args]
    extra = ["--mask-resize", "stretch"] if "--content-mask" in args else []
    code = stylize_main([str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                         *FAST, *args, *extra, "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and msg in err[0], err


def test_cli_swd_zero_directions_is_an_argument_error(work, capsys):
    with pytest.raises(SystemExit) as e:
        stylize_main([str(work / "c.png"), str(work / "s.png"), "--style-loss", "swd",
                      "--swd-directions", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --swd-directions: expected" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("loss", ["swd", "mrf"])
def test_texture_with_swd_and_mrf(work, tmp_path, loss):
    from nst_jax.cli import main as cli_main

    out = tmp_path / f"t-{loss}.png"
    assert cli_main(["texture", str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--iters", "4",
                     "--report-every", "2", "--size", "48x32", "--style-loss", loss, "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (48, 32)
