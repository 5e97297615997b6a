"""Training a transformation network: the pure step, the data, resume, devices, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from nst_jax import problem, vgg
from nst_jax.config import Config
from nst_jax.layout import Layout
from nst_jax.models import data, johnson, store
from nst_jax.models import train as T
from tests.conftest import rand_image, tiny_params

ARCH = johnson.Arch(width=0.125, n_styles=2, n_residual=1)
CFG = Config(style_layers=("conv1_1", "conv2_1", "conv3_1"), style_weights=(1.0, 1.0, 1.0),
             content_layer="conv3_1", beta=1e-2, tv_weight=1e-3).validate("vgg16")
SPEC = vgg.Preprocessing()
ROOT = Path(__file__).resolve().parents[1]


def _setup(seed: int = 0):
    vp = tiny_params()
    targets = T.style_targets(vp, SPEC, [rand_image(24, 24, 5), rand_image(20, 28, 6)], CFG)
    params = johnson.init_params(ARCH, key=jax.random.key(seed))
    photos = np.stack([rand_image(16, 16, s) for s in range(4)])
    return vp, targets, params, photos, np.array([0, 1, 1, 0], np.int32)


def test_style_targets_stack_each_style():
    vp, targets, *_ = _setup()
    one = problem.compute_targets(vp, SPEC, rand_image(20, 28, 6), [rand_image(20, 28, 6)], CFG)["style"]
    for layer in CFG.style_layers:
        assert targets[layer].shape[0] == 2
        np.testing.assert_array_equal(targets[layer][1], one[layer])  # same program, same input


def test_train_step_equals_a_hand_written_one():
    vp, targets, params, photos, styles = _setup()
    # SGD: Adam's first step is lr * g / |g|, the sign of g: no tolerance bounds it
    tx = optax.sgd(1e-3)
    state0 = T.init_state(jax.tree.map(jnp.copy, params), tx)  # the step donates it
    state, terms = T.make_train_step(tx, SPEC, ARCH)(state0, jnp.asarray(photos),
                                                    jnp.asarray(styles), vp, targets, CFG)

    # by hand: a Python loop of per-photo objectives (no vmap), their mean, p - lr * grad
    def loss(p):
        total = 0.0
        for x, s in zip(photos, styles, strict=True):
            y = johnson.forward(p, jnp.asarray(x), jax.nn.one_hot(s, 2), ARCH)
            ct = problem.content_target(vp, SPEC, jnp.asarray(x), CFG)
            st = {k: v[s] for k, v in targets.items()}
            total = total + problem.objective(y, vp, {"content": ct, "style": st}, CFG, SPEC)[0]
        return total / len(photos)

    j, g = jax.value_and_grad(loss)(params)
    step = jax.tree.map(lambda g: -1e-3 * g, g)
    assert int(state.step) == 1
    # another program (vmap, one jit): float rounding of a cost of ~1e2
    np.testing.assert_allclose(terms["total"], j, rtol=1e-5)
    # the gradients are sums over pixels in another order: within 1e-5 of each leaf's largest step
    jax.tree.map(lambda new, p, d: np.testing.assert_allclose(
        new - p, d, atol=1e-5 * float(np.abs(d).max())), state.params, params, step)


def test_training_lowers_the_loss_and_resume_is_exact(tmp_path):
    vp, targets, params, *_ = _setup()
    tx = optax.adam(3e-3)
    paths = sorted(_photo_folder(tmp_path / "d").rglob("*.png"))

    def run(state, start, steps):
        b = data.Batches(paths, batch=4, crop=16, seed=7, n_styles=2, start=start, workers=2)
        try:
            out = list(T.iterate_training(state, b, tx=tx, vgg_params=vp, spec=SPEC, targets=targets,
                                          config=CFG, arch=ARCH, layout=Layout(), steps=steps,
                                          report_every=3))
        finally:
            b.close()
        return out[-1][0], [t["total"] for _, t in out]

    straight, losses = run(T.init_state(params, tx), 0, 12)
    assert losses[-1] < losses[0]
    half, _ = run(T.init_state(params, tx), 0, 6)
    store.save_checkpoint(tmp_path / "c.ckpt", half, ARCH, {"steps": 6})
    loaded, arch, meta = store.load_checkpoint(tmp_path / "c.ckpt", tx)
    assert arch == ARCH and int(loaded.step) == 6 and meta == {"steps": 6}
    resumed, _ = run(loaded, 6, 12)
    # the same compiled step on the same inputs (the batches are a function of the step)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, straight.opt_state)
    with pytest.raises(store.ModelError, match="does not match this optimizer"):
        store.load_checkpoint(tmp_path / "c.ckpt", optax.sgd(1e-3))


def test_config_a_network_cannot_learn_is_refused():
    with pytest.raises(ValueError, match="preserve_color: a trained network learns RGB"):
        T.check_config(Config(preserve_color="luminance"))
    with pytest.raises(ValueError, match="tile: training runs on whole crops"):
        T.check_config(Config(tile=64))


# ----------------------------------------------------------------------------- data


def _photo_folder(d: Path, n: int = 5) -> Path:
    (d / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        where = d if i % 2 else d / "sub" / "deeper"
        size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(where / f"p{i}.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), np.uint8)).save(d / "grey.jpg")
    return d


def test_scan_is_recursive_and_skips_unreadable_files(tmp_path):
    d = _photo_folder(tmp_path)
    (d / "zero.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    ok, bad = data.scan(d)
    assert len(ok) == 6 and sorted(p.name for p in bad) == ["text.jpg", "zero.png"]
    assert any("deeper" in str(p) for p in ok)


def test_empty_or_unreadable_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no usable photos"):
        data.scan(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    with pytest.raises(data.DataError, match=r"no usable photos \(1 unreadable file"):
        data.scan(tmp_path / "bad")
    with pytest.raises(data.DataError, match="data folder not found"):
        data.scan(tmp_path / "nowhere")


def test_batches_are_a_function_of_the_step_and_skip_bad_photos(tmp_path):
    d = _photo_folder(tmp_path)
    ok, _ = data.scan(d)
    good = data.Batches(ok, batch=3, crop=16, seed=1, n_styles=3, workers=2)
    first = [next(good) for _ in range(3)]
    good.close()
    later = data.Batches(ok, batch=3, crop=16, seed=1, n_styles=3, start=2, workers=2)
    np.testing.assert_array_equal(next(later)[0], first[2][0])  # a restart at step 2
    later.close()
    x, s = first[0]
    assert x.shape == (3, 16, 16, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert s.dtype == np.int32 and set(s.tolist()) <= {0, 1, 2}
    zoom = data.load_crop(ok[0], 16, np.random.default_rng(0), resize=64)  # crops of a larger photo
    assert zoom.shape == (16, 16, 3)
    part = data.Batches(ok, batch=3, crop=16, seed=1, lo=1, hi=3, workers=1)  # a host's slice
    np.testing.assert_array_equal(part.batch_at(0)[0], first[0][0][1:3])
    # a file whose header reads but whose pixels do not decode: skipped and counted later
    png = ok[0].read_bytes()
    ok[0].write_bytes(png[: len(png) // 2])
    b = data.Batches(ok, batch=8, crop=16, seed=1, workers=1)
    for t in range(6):
        b.batch_at(t)
    assert b.bad == {ok[0]}


# ----------------------------------------------------------------------------- devices


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np, optax
from nst_jax.layout import Layout
from nst_jax.models import train as T
from tests.test_train import ARCH, CFG, SPEC, _setup
assert jax.device_count() == 4
vp, targets, params, photos, styles = _setup()
tx = optax.sgd(1e-7)  # (Adam's g / |g| would amplify rounding; see the two-host test)
def steps(layout):
    batches = iter([(photos, styles)] * 3)
    return list(T.iterate_training(T.init_state(params, tx), batches, tx=tx, vgg_params=vp, spec=SPEC,
                                   targets=targets, config=CFG, arch=ARCH, layout=layout, steps=3,
                                   report_every=3))[-1]
one, t1 = steps(Layout())
four, t4 = steps(Layout.of(4, jax.devices(), per_point=True))
assert len(four.params["c1"]["kernel"].sharding.device_set) == 4
# the gradient's mean is reduced across devices in another order: the updates agree to
# float rounding of their size
for p, a, b in zip(jax.tree.leaves(params), jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
    da, db = np.asarray(a) - np.asarray(p), np.asarray(b) - np.asarray(p)
    assert np.abs(da).max() > 0
    np.testing.assert_allclose(db, da, atol=1e-3 * float(np.abs(da).max()))
assert abs(t1["total"] - t4["total"]) <= 1e-5 * abs(t1["total"])
print("ok")
"""


@pytest.mark.slow
def test_training_sharded_over_4_devices_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"


@pytest.mark.slow
def test_train_cli_on_two_hosts_equals_one_process(work, tmp_path):
    """Two processes on 127.0.0.1 (jax.distributed, gloo), one device each, each decoding
    its half of every batch: the same model as one process with the whole batch."""
    from test_grid import two_hosts

    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(d / f"p{i}.png")
    argv = [sys.executable, "-m", "nst_jax", "train", "--data", str(d), "--style", str(work / "s.png"),
            "--weights", str(work / "tiny.h5"), "--crop", "32", "--batch", "2", "--width", "0.125",
            "--style-size", "32", "--steps", "3", "--beta", "1e-2", "--quiet", "--optimizer", "sgd",
            "--lr", "1e-7"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    two_hosts(lambda i: [*argv, "-o", str(tmp_path / f"multi{i}.nstm"), "--devices", "all"], env, tmp_path)
    assert not (tmp_path / "multi1.nstm").exists()  # process 1 wrote nothing
    one = subprocess.run([*argv, "-o", str(tmp_path / "one.nstm")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    (a, arch, _), b = store.load_model(tmp_path / "one.nstm"), store.load_model(tmp_path / "multi0.nstm")[0]
    init = johnson.init_params(arch, key=jax.random.key(0))  # --seed 0
    # SGD (Adam's g / |g| would amplify rounding): the gradient mean is reduced across the
    # processes in another order, so the updates agree to float rounding of their size
    for layer in a:
        for name in a[layer]:
            da, db = a[layer][name] - init[layer][name], b[layer][name] - init[layer][name]
            assert np.abs(da).max() > 0
            np.testing.assert_allclose(db, da, atol=1e-3 * float(np.abs(da).max()))


@pytest.mark.parametrize("style_loss", ["meancov", "w2"])
def test_training_takes_every_style_statistic(style_loss):
    vp = tiny_params()
    cfg = CFG.replace(style_loss=style_loss)
    targets = T.style_targets(vp, SPEC, [rand_image(24, 24, 5), rand_image(20, 28, 6)], cfg)
    params = johnson.init_params(ARCH, key=jax.random.key(0))
    photos, styles = np.stack([rand_image(16, 16, s) for s in range(2)]), np.array([0, 1], np.int32)
    tx = optax.adam(1e-3)
    step = T.make_train_step(tx, SPEC, ARCH)
    state, first = step(T.init_state(params, tx), photos, styles, vp, targets, cfg)
    for _ in range(3):
        state, terms = step(state, photos, styles, vp, targets, cfg)
    assert np.isfinite(float(terms["total"])) and float(terms["total"]) < float(first["total"])
