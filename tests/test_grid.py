"""Grids of loss weights: equal to separate runs, Adam's scale invariance, sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import ROOT, rand_image

from nst_jax import grid as Gd
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.optimize import stylize

SPEC = vgg.CAFFE
CFG = Config(alpha=1.0, beta=1e-2, iterations=8, report_every=4, learning_rate=0.05)


@pytest.fixture(scope="module")
def images():
    return rand_image(32, 32, 1), rand_image(32, 32, 2)


def test_grid_equals_separate_runs(params16, images):
    C, S = images
    res = Gd.stylize_grid(C, S, params16, SPEC, config=CFG, alphas=[1.0, 2.0], betas=[1e-2, 1e-1],
                          key=jax.random.key(0))
    assert res.images.shape == (4, 32, 32, 3) and res.shape == (2, 2)
    assert res.points == [{"alpha": 1.0, "beta": 1e-2}, {"alpha": 1.0, "beta": 1e-1},
                          {"alpha": 2.0, "beta": 1e-2}, {"alpha": 2.0, "beta": 1e-1}]
    for i, pt in enumerate(res.points):
        img, hist = stylize(C, S, params16, SPEC, config=CFG.replace(**pt), key=jax.random.key(0))
        np.testing.assert_allclose(res.images[i], img, atol=2e-5)
        np.testing.assert_allclose(res.history[i], hist["total"], rtol=1e-4)
        np.testing.assert_allclose(res.costs["total"][i], hist["costs"]["total"], rtol=1e-4)
    assert res.ok.all()


def test_adam_is_scale_invariant_sgd_is_not(params16, images):
    C, S = images
    k = 10.0
    adam = Gd.stylize_grid(C, S, params16, SPEC, config=CFG, alphas=[1.0, k], betas=[1e-2, k * 1e-2])
    # points: (1, b), (1, kb), (k, b), (k, kb): the diagonal pair is 0 and 3.
    np.testing.assert_allclose(adam.images[0], adam.images[3], atol=1e-3)
    assert np.abs(adam.images[0] - adam.images[1]).max() > 1e-2
    sgd_cfg = CFG.replace(optimizer="sgd", learning_rate=4e-7)
    sgd = Gd.stylize_grid(C, S, params16, SPEC, config=sgd_cfg, alphas=[1.0, k], betas=[1e-2, k * 1e-2])
    assert np.abs(sgd.images[0] - sgd.images[3]).max() > 1e-2


def test_other_axes_and_chunking(params16, images):
    C, S = images
    full = Gd.stylize_grid(C, S, params16, SPEC, config=CFG, betas=[1e-2, 1e-1],
                           tv_weight=[0.0, 1.0], style_weights=[(0.2,) * 5, (1, 0, 0, 0, 0)])
    assert full.shape == (1, 2, 2, 2) and len(full.points) == 8
    chunked = Gd.stylize_grid(C, S, params16, SPEC, config=CFG, betas=[1e-2, 1e-1],
                              tv_weight=[0.0, 1.0], style_weights=[(0.2,) * 5, (1, 0, 0, 0, 0)],
                              chunk_points=3)
    np.testing.assert_allclose(chunked.images, full.images, atol=2e-5)


def test_grid_resumes_bitwise_mid_chunk_and_between_chunks(params16, images, tmp_path):
    from nst_jax.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_grid_checkpoint,
        save_grid_checkpoint,
    )

    C, S = images
    kw = {"config": CFG.replace(iterations=6, report_every=2), "alphas": [1.0, 2.0, 3.0],
          "betas": [1e-2], "chunk_points": 2}
    snaps: list = []
    full = Gd.stylize_grid(C, S, params16, SPEC, on_snapshot=snaps.append, **kw)
    assert [(s["chunk"], s["steps"], s["engine"] is None) for s in snaps] == [
        (0, 2, False), (0, 4, False), (1, 6, True), (1, 8, False), (1, 10, False), (2, 12, True)]
    for snap in (snaps[3], snaps[2]):  # in the second chunk, and between the chunks
        save_grid_checkpoint(tmp_path / "g.ckpt", snap, {"beta": 1e-2})
        state, settings = load_grid_checkpoint(tmp_path / "g.ckpt")
        assert settings == {"beta": 1e-2}
        res = Gd.stylize_grid(C, S, params16, SPEC, resume=state, **kw)
        # bitwise: the finished chunk is restored, the rest is the same compiled programs
        # on the same restored state, on the same machine
        np.testing.assert_array_equal(res.images, full.images)
        np.testing.assert_array_equal(res.history, full.history)
    with pytest.raises(CheckpointError, match="a grid checkpoint"):
        load_checkpoint(tmp_path / "g.ckpt")


def test_per_point_seeds(params16, images):
    C, S = images
    cfg = CFG.replace(init="noise")
    same = Gd.stylize_grid(C, S, params16, SPEC, config=cfg, betas=[1e-2, 1e-2])
    diff = Gd.stylize_grid(C, S, params16, SPEC, config=cfg, betas=[1e-2, 1e-2], per_point_seeds=True)
    # Two identical points are one program on one input, but at different offsets of the
    # vmapped arrays, which XLA:CPU may vectorise differently (2e-6 seen on an AVX2 EPYC):
    # equal to float rounding, not bitwise.
    np.testing.assert_allclose(same.images[0], same.images[1], rtol=0, atol=2e-5)
    assert not np.allclose(diff.images[0], diff.images[1], atol=1e-2)


def test_targets_computed_once_outside_the_vmapped_loop(params16, images, monkeypatch):
    """Count feature extractions under tracing, and check which are under vmap."""
    import nst_jax.problem as O

    calls = []
    real = O.vgg_features_rgb

    def counting(params, spec, rgb, layers, *rest, **kw):
        # BatchTracer: the call is traced inside jax.vmap (i.e. once per grid point).
        calls.append((tuple(layers), type(rgb).__name__ == "BatchTracer"))
        return real(params, spec, rgb, layers, *rest, **kw)

    monkeypatch.setattr(O, "vgg_features_rgb", counting)
    O._targets.clear_cache()  # trace the target computation again, with the counter
    C, S = images
    Gd.stylize_grid(C, S, params16, SPEC, config=CFG, alphas=[1.0, 2.0, 3.0], betas=[1e-2, 1e-1])
    style = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    # Targets: one content and one style extraction, not under vmap; then, for the
    # vmapped loop, an abstract trace of the loss (the structure of the cost terms its
    # first evaluation reports: jax.eval_shape, nothing computed), the loss itself
    # (traced once) and an abstract trace of the step (the structure of a skipped step's
    # results, for the step's conditional); then the vmapped final measurement.
    assert calls[:2] == [(("conv4_2",), False), (style, False)]
    assert [c[0] for c in calls[2:]] == [("conv4_2", *style)] * 4
    assert calls[-1][1]  # the measurement is vmapped; the loss call is under vmap+grad


@pytest.mark.parametrize(("axes", "msg"), [
    ({"alpha": []}, "grid axis 'alpha': expected at least one value"),
    ({"gamma": [1.0]}, "grid axis 'gamma': expected one of"),
])
def test_bad_axes(axes, msg):
    with pytest.raises(ValueError, match=msg):
        Gd.grid_points(axes)


def test_negative_weight_rejected(params16, images):
    with pytest.raises(ValueError, match=r"grid axis 'beta': expected values >= 0, got -1\.0"):
        Gd.stylize_grid(*images, params16, SPEC, config=CFG, betas=[-1.0])


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        import jax, numpy as np
        from conftest import rand_image, tiny_params
        from nst_jax import grid as Gd, vgg
        from nst_jax.config import Config
        assert len(jax.devices()) == 4, jax.devices()
        p = tiny_params()
        C, S = rand_image(32, 32, 1), rand_image(32, 32, 2)
        cfg = Config(alpha=1.0, beta=1e-2, iterations=4, report_every=2, learning_rate=0.05)
        kw = dict(config=cfg, alphas=[1.0, 2.0, 3.0], betas=[1e-2, 1e-1])
        many = Gd.stylize_grid(C, S, p, vgg.CAFFE, **kw)
        one = Gd.stylize_grid(C, S, p, vgg.CAFFE, devices=jax.devices()[:1], **kw)
        print(json.dumps({{
            "n_devices": len(many.sharding.device_set),
            "spec": str(many.sharding.spec),
            "max_diff": float(np.abs(many.images - one.images).max()),
            "n": int(many.images.shape[0]),
        }}))
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 4 and "points" in out["spec"]
    assert out["n"] == 6  # 6 points padded to 8 on 4 devices, trimmed back
    assert out["max_diff"] < 1e-4


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_hosts(argv_of, env: dict, cwd) -> None:
    """Run ``argv_of(i)`` as processes 0 and 1 of a ``jax.distributed`` job on 127.0.0.1
    (the coordinator flags appended); skip where gloo CPU collectives are missing."""
    port = _free_port()
    procs = [subprocess.Popen(
        [*argv_of(i), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
         "--process-id", str(i)], env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    if any("gloo" in err.lower() and "not" in err.lower() and p.returncode for p, (_, err)
           in zip(procs, outs, strict=True)):
        pytest.skip(f"no gloo CPU collectives on this platform: {outs[0][1][-300:]}")
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]


@pytest.mark.slow
def test_grid_cli_on_two_hosts_equals_one_host(work, tmp_path):
    """Two processes on 127.0.0.1 (jax.distributed, gloo CPU collectives), 2 devices each:
    the same images as one process; only process 0 writes."""
    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
            "--alphas", "1,2,3", "--betas", "1e-2,1e-1", "--size", "32", "--iters", "4",
            "--report-every", "2", "--quiet"]
    script = [sys.executable, str(ROOT / "scripts" / "grid.py")]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    two_hosts(lambda i: [*script, *argv, "-o", str(tmp_path / f"multi{i}")], env, tmp_path)
    assert not (tmp_path / "multi1").exists()  # process 1 wrote nothing
    one = subprocess.run([*script, *argv, "-o", str(tmp_path / "single")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    from PIL import Image

    names = sorted(p.name for p in (tmp_path / "single").glob("a*.png"))
    assert len(names) == 6 and names == sorted(p.name for p in (tmp_path / "multi0").glob("a*.png"))
    for n in names:
        with Image.open(tmp_path / "single" / n) as a, Image.open(tmp_path / "multi0" / n) as b:
            diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()
        assert diff <= 1, (n, diff)
    multi = json.loads((tmp_path / "multi0" / "costs.json").read_text())["points"]
    single = json.loads((tmp_path / "single" / "costs.json").read_text())["points"]
    np.testing.assert_allclose([p["total"] for p in multi], [p["total"] for p in single], rtol=1e-4)


@pytest.mark.slow
def test_grid_cli_interrupted_and_resumed_equals_uninterrupted(work, tmp_path):
    from test_cli import _interrupt

    argv = [sys.executable, str(ROOT / "scripts" / "grid.py"), str(work / "c.png"), str(work / "s.png"),
            "--weights", str(work / "tiny.h5"), "--alphas", "1,2,3", "--betas", "1e-2", "--size", "32",
            "--iters", "200", "--report-every", "2", "--chunk", "2", "--checkpoint-every", "4",
            "--bit-depth", "16"]
    err = _interrupt([*argv, "-o", str(tmp_path / "g")], "checkpoint:")
    ckpt = tmp_path / "g" / "grid.ckpt"
    assert f"--resume {ckpt}" in err and ckpt.exists()
    assert not list((tmp_path / "g").glob("*.png"))  # images only when the grid is complete
    other = subprocess.run([*argv, "--beta", "0.5", "--betas", "0.5", "--resume", str(ckpt)],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "differ from the checkpoint's: beta" in other.stderr, other.stderr
    done = subprocess.run([*argv, "--resume", str(ckpt), "--overwrite"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert not ckpt.exists()  # complete: the images replace it
    ref = subprocess.run([*argv, "-o", str(tmp_path / "ref")], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    from PIL import Image

    names = sorted(p.name for p in (tmp_path / "ref").glob("a*.png"))
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "g").glob("a*.png"))
    for n in names:
        with Image.open(tmp_path / "ref" / n) as a, Image.open(tmp_path / "g" / n) as b:
            # bitwise: the same compiled programs on the same restored state, one machine
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
