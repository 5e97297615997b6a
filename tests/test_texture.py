"""Padding (zero, reflect, circular) in vgg_features and the TV term, the texture
command, the seam score, and --animate."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST, rand_image, tiny_params
from PIL import Image

from nst_jax import losses, texture, vgg
from nst_jax.cli import main as cli_main
from nst_jax.cli import stylize_main
from nst_jax.config import Config

LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_2", "conv5_1"]


def _np_conv(x: np.ndarray, k: np.ndarray, mode: str) -> np.ndarray:
    """3x3 convolution (cross-correlation, as lax) with a 1 px border of ``np.pad`` ``mode``."""
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode=mode)
    h, w = x.shape[:2]
    out = np.zeros((h, w, k.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[i, j] = np.einsum("abc,abco->o", xp[i:i + 3, j:j + 3], k)
    return out


@pytest.mark.parametrize(("padding", "mode"), [("zero", "constant"), ("reflect", "reflect"),
                                               ("circular", "wrap")])
def test_first_layer_against_numpy(padding, mode):
    params = tiny_params()
    x = np.asarray(vgg.preprocess(jnp.asarray(rand_image(7, 9, 1)), vgg.CAFFE), np.float64)
    got = vgg.vgg_features(params, jnp.asarray(x, jnp.float32), ["conv1_1"], padding=padding)["conv1_1"]
    p = params["conv1_1"]
    ref = np.maximum(_np_conv(x, np.asarray(p["kernel"], np.float64), mode) + np.asarray(p["bias"]), 0)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-3)


def test_circular_features_equal_the_interior_of_a_wrapped_image():
    # x tiled 3x3 and seen with zero padding: the middle copy's features are x's circular
    # ones wherever the zero border is beyond the receptive field (64 px at conv5_1: x is 64)
    params = tiny_params()
    x = vgg.preprocess(jnp.asarray(rand_image(64, 80, 2)), vgg.CAFFE)
    circ = vgg.vgg_features(params, x, LAYERS, padding="circular")
    fast = vgg.vgg_features(vgg.with_backward_kernels(params), x, LAYERS, padding="circular")
    big = vgg.vgg_features(params, jnp.tile(x, (3, 3, 1)), LAYERS)
    for k in LAYERS:
        f = 2 ** (int(k[4]) - 1)
        h, w = 64 // f, 80 // f
        mid = np.asarray(big[k][h: 2 * h, w: 2 * w])
        # other programs (shapes, padding) on the same values: float rounding only
        np.testing.assert_allclose(np.asarray(circ[k]), mid, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(mid).max()))
        # the engine's path (custom-VJP convolutions of the padded map): the same values
        np.testing.assert_allclose(np.asarray(fast[k]), np.asarray(circ[k]), rtol=1e-5,
                                   atol=1e-6 * float(np.abs(mid).max()))


def test_padding_gradients_jit_and_refusals():
    params = tiny_params()
    x = vgg.preprocess(jnp.asarray(rand_image(32, 32, 3)), vgg.CAFFE)
    f = lambda x: jnp.sum(vgg.vgg_features(params, x, ["conv3_1"], padding="reflect")["conv3_1"] ** 2)  # noqa: E731
    g, gj = jax.grad(f)(x), jax.jit(jax.grad(f))(x)
    np.testing.assert_allclose(np.asarray(g), np.asarray(gj), rtol=1e-4, atol=1e-4 * float(jnp.abs(g).max()))
    with pytest.raises(ValueError, match="padding: expected one of"):
        vgg.vgg_features(params, x, ["conv1_1"], padding="mirror")
    with pytest.raises(ValueError, match="tiled runs need zero padding"):
        Config(padding="circular", tile=64).validate("vgg16")


def test_circular_tv_against_a_loop():
    x = rand_image(5, 6, 4)
    ref = sum((x[(i + 1) % 5, j] - x[i, j]) ** 2 + (x[i, (j + 1) % 6] - x[i, j]) ** 2
              for i in range(5) for j in range(6)).sum() / x.size
    assert float(losses.total_variation(jnp.asarray(x), "circular")) == pytest.approx(float(ref), rel=1e-5)
    assert float(losses.total_variation(jnp.asarray(x), "reflect")) == pytest.approx(
        float(losses.total_variation(jnp.asarray(x))), rel=1e-7)


def test_seam_score():
    y, x = np.mgrid[0:32, 0:32] / 32
    assert texture.seam_score(np.stack([x, y, x * y], -1)) > 10  # a ramp: one big step at the seam
    noise = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    assert abs(texture.seam_score(noise) - 1) < 0.1  # no structure: seams like any column
    assert texture.tile(noise).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="at least 3x3"):
        texture.seam_score(np.zeros((2, 5, 3)))


# ----------------------------------------------------------------------------- command line


def _texture(work, *args, out="t.png"):
    return cli_main(["texture", str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                     "--iters", "4", "--report-every", "2", "-o", str(work / out), *args])


def test_texture_command_writes_the_size_asked(work):
    assert _texture(work, "--size", "48x32", "--overwrite") == 0
    with Image.open(work / "t.png") as im:
        assert im.size == (48, 32)
    meta = json.loads((work / "t.png.json").read_text())
    assert meta["settings"]["padding"] == "circular" and meta["settings"]["texture"] == "48x32"
    assert meta["settings"]["alpha"] == 0.0 and meta["settings"]["init"] == "noise"


@pytest.mark.parametrize(("args", "msg"), [
    (["--size", "30x30"], "--size 30x30: with --padding circular the sides must be multiples of 16"),
    (["--size", "3x"], "argument --size: expected WIDTHxHEIGHT"),
    (["--padding", "mirror"], "argument --padding: invalid choice"),
    (["--alpha", "1"], "--alpha 1: a texture has no content"),
    (["--photo"], "--photo: needs a content photo"),
    (["--size", "32", "--tile", "64"], "--padding circular: tiled runs need zero padding"),
    (["--size", "32", "--style-loss", "gram", "--seed", "-1"], "argument --seed"),
])
def test_texture_refusals(work, capsys, args, msg):
    try:
        code = _texture(work, *args, out="refused.png")
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], err
    assert not (work / "refused.png").exists()


def test_animate_gif(work):
    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "--iters", "6", "-o", str(work / "a.png"), "--overwrite", "--animate", str(work / "a.gif"),
            "--animate-every", "2"]
    assert stylize_main(argv) == 0
    with Image.open(work / "a.gif") as im:
        assert im.n_frames == 3  # steps 2 and 4, then the result (step 6), shown 10x as long
        assert im.size == (27, 32)
        im.seek(2)
        assert im.info["duration"] == 1000
    again = [*argv[:4], *FAST, "-o", str(work / "b.png"), "--animate", str(work / "a.gif")]
    (work / "b.png").unlink(missing_ok=True)
    assert stylize_main(again) == 2  # the animation exists: refused before the run
    assert not (work / "b.png").exists()


@pytest.mark.parametrize(("target", "msg"), [("a.bmp", "cannot write .bmp"),
                                              ("a.mp4", "video needs PyAV")])
def test_animate_refusals(work, capsys, monkeypatch, target, msg):
    from nst_jax import videoio

    def no_av():
        raise videoio.VideoError("video needs PyAV: pip install 'nst-jax[video]' (or pip install av)")

    monkeypatch.setattr(videoio, "_av", no_av)
    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "-o", str(work / "refused.png"), "--animate", str(work / target)]
    assert stylize_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
    assert not (work / "refused.png").exists()


def test_animate_mp4(work):
    pytest.importorskip("av")
    from nst_jax import videoio

    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "-o", str(work / "m.png"), "--overwrite", "--animate", str(work / "m.mp4")]
    assert stylize_main(argv) == 0
    # the frame at step 2 (FAST reports every 2 of 4 steps), then the result repeated 10 times
    assert videoio.scan(work / "m.mp4") == 1 + 10
