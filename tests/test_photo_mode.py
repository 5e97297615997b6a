"""Photo mode: the photorealism term in the objective (whole, banded, tiled, jit),
k-means regions (nst_jax.autoregions), smoothing, and the command line's flags and
refusals (each one ``error:`` line, exit 2)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST, rand_image, tiny_params
from PIL import Image

from nst_jax import autoregions, photo, problem, vgg
from nst_jax.cli import stylize_main
from nst_jax.config import Config


def _photo_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (gradients and a disc): flat and edged windows both."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    disc = ((y - 0.5) ** 2 + (x - 0.4) ** 2 < 0.08).astype(np.float64)
    rng = np.random.default_rng(seed)
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * disc], -1) + rng.normal(0, 0.02, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.mark.parametrize("band", [1, 7, 16])
def test_banded_energy_and_gradient_equal_the_whole(band):
    img, V = _photo_image(23, 19), jnp.asarray(rand_image(23, 19, 4))
    stats = photo.matting_stats(img, 1e-3)
    whole = jax.value_and_grad(lambda v: photo.matting_energy(v, stats))(V)
    banded = jax.value_and_grad(lambda v: photo.matting_energy(v, stats, band=band))(V)
    # the same sum in another order (bands of window rows): float rounding only
    assert abs(float(banded[0] - whole[0])) <= 1e-5 * abs(float(whole[0]))
    np.testing.assert_allclose(np.asarray(banded[1]), np.asarray(whole[1]), rtol=1e-4, atol=1e-5)


def test_photo_cost_is_the_energy_per_pixel_and_channel():
    img, V = _photo_image(12, 10), jnp.asarray(rand_image(12, 10, 1))
    stats = photo.matting_stats(img)
    assert float(photo.photo_cost(V, stats)) == pytest.approx(
        float(photo.matting_energy(V, stats)) / V.size, rel=1e-6)


def _setup(shape=(40, 48), **kw):
    params = tiny_params()
    C, S = _photo_image(*shape), rand_image(36, 30, 2)
    X = jnp.asarray(rand_image(*shape, 3))
    cfg = Config(photo_weight=7.0, tv_weight=0.1, **kw).validate("vgg16")
    t = problem.photo_targets(problem.compute_targets(params, vgg.CAFFE, C, [S], cfg), C, cfg)
    return params, C, S, X, cfg, t


def test_objective_adds_the_weighted_term_jit_and_eager():
    params, _C, _S, X, cfg, t = _setup()
    j, terms = problem.objective(X, params, t, cfg, vgg.CAFFE)
    off = {k: v for k, v in t.items() if k != "matting"}
    j0, terms0 = problem.objective(X, params, off, cfg, vgg.CAFFE)
    assert "photo" not in terms0
    ref = float(photo.photo_cost(X, t["matting"]))
    assert float(terms["photo"]) == pytest.approx(ref, rel=1e-6)
    assert float(j) == pytest.approx(float(j0) + 7.0 * ref, rel=1e-6)
    jj, _tj = jax.jit(lambda x: problem.objective(x, params, t, cfg, vgg.CAFFE))(X)
    # jit against eager: another program (fusions), float rounding
    assert float(jj) == pytest.approx(float(j), rel=1e-5)
    # the gradient of the term alone (VGG's terms off: their gradients are ~1e3x larger and
    # a difference of the two totals would measure their rounding)
    c0 = cfg.replace(alpha=0.0, beta=0.0)
    g = jax.grad(lambda x: problem.objective(x, params, t, c0, vgg.CAFFE)[0])(X)
    g0 = jax.grad(lambda x: problem.objective(x, params, off, c0, vgg.CAFFE)[0])(X)
    gp = jax.grad(lambda x: photo.photo_cost(x, t["matting"]))(X)
    np.testing.assert_allclose(np.asarray(g - g0), 7.0 * np.asarray(gp), rtol=1e-4,
                               atol=1e-5 * float(jnp.max(jnp.abs(gp))) * 7.0)


def test_no_matting_statistics_when_the_weight_is_zero():
    cfg = Config().validate("vgg16")
    assert not problem.uses_photo(cfg)
    assert problem.uses_photo(cfg.replace(photo_weight=jnp.asarray([0.0, 1.0])))
    assert "matting" not in problem.photo_targets({"content": 1}, _photo_image(5, 5), cfg)


def test_luminance_mode_puts_the_term_on_the_luminance():
    params, C, S, X, cfg, _ = _setup()
    cfg = cfg.replace(preserve_color="luminance")
    t = problem.photo_targets(problem.compute_targets(params, vgg.CAFFE, C, [S], cfg), C, cfg)
    Y = problem.to_variable(X, cfg)
    _, terms = problem.objective(Y, params, t, cfg, vgg.CAFFE)
    assert float(terms["photo"]) == pytest.approx(float(photo.photo_cost(Y, t["matting"])), rel=1e-6)


def test_tiled_objective_with_the_photo_term_equals_the_whole():
    params, C, S, X, cfg, _ = _setup((150, 200))
    out = []
    for tile in (0, 64):
        c = dataclasses.replace(cfg, tile=tile)
        t = problem.photo_targets(problem.compute_targets(params, vgg.CAFFE, C, [S], c), C, c)
        out.append(jax.jit(jax.value_and_grad(
            lambda x, c=c, t=t: problem.objective(x, params, t, c, vgg.CAFFE)[0]))(X))
    (j0, g0), (j1, g1) = out
    # the tiled sums (VGG tiles, photo bands of 64 window rows) in another order: rounding
    assert abs(float(j1 - j0)) <= 1e-5 * abs(float(j0))
    assert float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0)) < 1e-5


def test_smoothing_in_bands_equals_the_whole():
    img, Y = _photo_image(30, 26), jnp.asarray(rand_image(30, 26, 5))
    stats = photo.matting_stats(img)
    a = photo.smooth(Y, stats, 1e-2, tol=1e-7)
    b = photo.smooth(Y, stats, 1e-2, tol=1e-7, band=8)
    # the same linear system, the same operator summed in bands: CG rounding only
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


# ----------------------------------------------------------------------------- k-means regions


def test_lab_of_known_colours():
    lab = autoregions.srgb_to_lab(np.array([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65
    np.testing.assert_allclose(lab[2], [0, 0, 0], atol=1e-9)


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0], [5, 5], [0, 9]])
    x = np.concatenate([c + rng.normal(0, 0.3, (40, 2)) for c in centres])
    truth = np.repeat(np.arange(3), 40)
    c, labels = autoregions.kmeans(x, 3, seed=1)
    # a perfect partition up to the order of the clusters
    assert len({(a, b) for a, b in zip(truth, labels, strict=True)}) == 3
    for j in range(3):
        np.testing.assert_allclose(c[j], x[labels == j].mean(0), atol=1e-12)
    assert np.array_equal(autoregions.kmeans(x, 3, seed=1)[1], labels)  # same seed, same inputs
    with pytest.raises(ValueError, match="k: expected 1 <= k <= 120"):
        autoregions.kmeans(x, 121)


def _two_halves(top, bottom, h=32, w=32):
    img = np.zeros((h, w, 3), np.float32)
    img[: h // 2], img[h // 2:] = top, bottom
    return img


def test_regions_pair_by_relative_colour_and_report_failures():
    # features that say nothing (constant): the regions come from the colours, each photo
    # standardised, so a bright top pairs with a (differently coloured) bright top
    feats = np.ones((8, 8, 4), np.float32)
    C = _two_halves([0.6, 0.8, 1.0], [0.1, 0.4, 0.1])
    S = _two_halves([0.2, 0.2, 0.5], [0.05, 0.05, 0.1])
    p = autoregions.auto_regions(feats, feats, C, S, 2)
    assert len(p.content) == 2 and p.failed == []
    for r in range(2):
        top_c = p.content[r][:16].mean() > 0.5
        assert (p.style[r][:16].mean() > 0.5) == top_c
    np.testing.assert_allclose(p.content.sum(0), 1.0)
    # a style with one kind of thing only: the content's other region has no partner
    fc = np.zeros((8, 8, 2), np.float32)
    fc[:4, :, 0], fc[4:, :, 1] = 1.0, 1.0
    q = autoregions.auto_regions(fc, np.ones((8, 8, 2), np.float32), C, S, 2, colour_weight=0.0)
    assert len(q.content) == 2 and len(q.failed) == 1 and q.style[q.failed[0]] is None
    assert q.shares[q.failed[0], 1] == 0.0


def test_too_many_regions_for_the_image():
    feats = np.ones((8, 6, 4), np.float32)
    with pytest.raises(ValueError, match="at most 3"):
        autoregions.auto_regions(feats, feats, _photo_image(32, 24), _photo_image(32, 24), 4)


# ----------------------------------------------------------------------------- command line


def _argv(work, *args, out="p.png"):
    return [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "-o", str(work / out), *args]


def test_photo_auto_regions_and_smooth_write_result_and_masks(work, capsys):
    assert stylize_main(_argv(work, "--photo", "--auto-regions", "2", "--smooth", "--overwrite")) == 0
    err = capsys.readouterr().err
    assert "--auto-regions 2:" in err and "rerun with:" in err
    meta = json.loads((work / "p.png.json").read_text())
    assert meta["smooth"] == 1.0 and meta["settings"]["photo"] is True
    labels = np.asarray(Image.open(work / "p.regions.png").convert("RGB"))
    assert labels.shape[:2] == (32, 27) and len(np.unique(labels.reshape(-1, 3), axis=0)) >= 1
    assert (work / "p.pairs.png").exists()
    # the written masks are refused next time without --overwrite (nothing is replaced)
    before = (work / "p.regions.png").read_bytes()
    assert stylize_main(_argv(work, "--photo", "--auto-regions", "2")) == 2
    assert "p.png" in capsys.readouterr().err
    assert (work / "p.regions.png").read_bytes() == before


def test_photo_starts_from_the_content_unless_init_is_given(work):
    from nst_jax.cli.photo import photo_fields
    from nst_jax.config import PHOTO_WEIGHT

    class A:
        photo, photo_weight, init, argv = True, None, "content+noise", ["x"]

    assert photo_fields(A()) == {"photo_weight": PHOTO_WEIGHT, "init": "content"}
    A.argv, A.photo_weight = ["--init", "content+noise"], 5.0
    assert photo_fields(A()) == {"photo_weight": 5.0}


@pytest.mark.parametrize(("args", "msg"), [
    (["--auto-regions", "0"], "argument --auto-regions: expected at least 1"),
    (["--auto-regions", "4"], "--auto-regions 4: 4 regions, but the content supports at most 3"),
    (["--smooth", "0"], "argument --smooth: expected a weight > 0"),
    (["--smooth", "-1"], "argument --smooth: expected a weight > 0"),
    (["--photo-weight", "-2"], "argument --photo-weight: expected a finite number >= 0"),
    (["--auto-regions", "2", "--mask-colors", "m.png"], "--auto-regions with --mask-colors"),
])
def test_refusals(work, capsys, args, msg):
    try:
        code = stylize_main(_argv(work, *args, out="refused.png"))
    except SystemExit as e:  # argparse's own exit, with the same one line
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], err
    assert not (work / "refused.png").exists()


def test_refuses_a_grey_content_and_two_styles(work, tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), np.uint8)).save(grey)
    argv = _argv(work, "--photo", out="refused.png")
    argv[0] = str(grey)
    assert stylize_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--photo: grey.png is grayscale" in err[0]
    argv = _argv(work, "--auto-regions", "2", out="refused.png")
    argv.insert(2, str(work / "s.png"))
    assert stylize_main(argv) == 2
    assert "--auto-regions 2: expected one style image, got 2" in capsys.readouterr().err


# ----------------------------------------------------------------------------- devices

DEVICES_SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, numpy as np
from conftest import rand_image, tiny_params
from test_photo_mode import _photo_image
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import stylize

params = tiny_params()
C, S = _photo_image(130, 90), rand_image(64, 64, 2)
out = {"n_devices": len(jax.devices())}
# rows over 4 devices (the image split by height; XLA exchanges the 1 px halo of the
# matting windows), and 12 tiles spread over 4 devices, each against one device whole
for name, kw in {"rows": {}, "tiles": {"tile": 64}}.items():
    c = Config(iterations=8, report_every=4, photo_weight=50.0, init="content")
    a, ha = stylize(C, S, params, vgg.CAFFE, config=c)
    b, hb = stylize(C, S, params, vgg.CAFFE, config=c.replace(**kw), devices=jax.devices())
    rel = np.abs(ha["total"] - hb["total"]) / ha["total"]
    out[name] = [float(np.mean(np.abs(a - b))), float(np.max(rel)), float(hb["costs"]["photo"])]
print(json.dumps(out))
"""


def test_photo_term_over_devices_equals_one_device():
    import subprocess
    import sys

    from conftest import ROOT
    from test_sharding import _env

    r = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT], capture_output=True, text=True,
                       env=_env(4), timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 4
    for name in ("rows", "tiles"):
        # other programs summing in other orders: equal to float rounding, 8 Adam steps
        assert out[name][0] < 1e-4 and out[name][1] < 1e-5, (name, out[name])
        assert out[name][2] > 0  # the term was there


def test_batch_photo_mode_smooths_each_photo_and_skips_a_grey_one(work, tmp_path, capsys):
    from nst_jax.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((_photo_image(40, 48, i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 48), np.uint8)).convert("RGB").save(folder / "grey.png")
    out = tmp_path / "out"
    code = main(["batch", str(folder), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
                 "--photo", "--smooth", "0.5", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "grey.png is grayscale" in err and "(skipped)" in err  # counted as failed
    metas = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(metas) == 2 and all(m["smooth"] == 0.5 and m["settings"]["photo"] for m in metas)
    assert all("photo" in m["final_costs"] for m in metas)
    assert main(["batch", str(folder), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
                 "--auto-regions", "2", "-o", str(tmp_path / "o2")]) == 2
    assert "--auto-regions 2 finds one photo's regions" in capsys.readouterr().err


def test_grid_sweeps_the_photo_weight_with_auto_regions(work, tmp_path):
    from nst_jax.cli import main

    out = tmp_path / "g"
    assert main(["grid", str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
                 "--photo", "--auto-regions", "2", "--photo-weights", "0,1e3", "-o", str(out),
                 "--quiet"]) == 0
    rows = json.loads((out / "costs.json").read_text())
    rows = rows if isinstance(rows, list) else rows["points"]
    assert sorted(r["photo_weight"] for r in rows) == [0.0, 1e3]
    assert (out / "auto.regions.png").exists() and (out / "auto.pairs.png").exists()
