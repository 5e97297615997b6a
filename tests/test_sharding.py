"""One image split by rows over several devices (Layout.by_rows, --devices), and over
several hosts. Virtual CPU devices need XLA_FLAGS before JAX starts, so these run in
subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_grid import two_hosts

SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, jax.numpy as jnp, numpy as np
from conftest import rand_image, tiny_params
from nst_jax import problem, vgg
from nst_jax.config import Config
from nst_jax.engine import iterate, stylize
from nst_jax.layout import Layout

params = tiny_params()
out = {"n_devices": len(jax.devices())}
# one step's value and gradient, one device against X sharded by rows (66: padded to 68)
H = 66
C, S, X = rand_image(H, 50, 1), rand_image(64, 64, 2), jnp.asarray(rand_image(H, 50, 3))
cfg = Config().validate("vgg16")
lay = Layout.by_rows()
t = problem.compute_targets(params, vgg.CAFFE, C, [S], cfg)
from nst_jax.layout import trimmed
obj = trimmed(problem.objective, H)
f = jax.jit(jax.value_and_grad(lambda x: obj(x, params, t, cfg, vgg.CAFFE)[0]))
j0, g0 = f(jnp.pad(X, ((0, 2), (0, 0), (0, 0)), mode="edge"))
Xs = lay.split(jnp.pad(X, ((0, 2), (0, 0), (0, 0)), mode="edge"))
out["spec"] = str(Xs.sharding.spec)
j1, g1 = f(Xs)
out["rel_j"] = abs(float(j1 - j0)) / abs(float(j0))
out["rel_g"] = float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0))
out["pad_grad"] = float(jnp.max(jnp.abs(g1[H:])))
# whole runs: Adam and L-BFGS, with scales
for name, kw in {"adam": {}, "lbfgs": {"optimizer": "lbfgs", "iterations": 4},
                 "scales": {"scales": 2, "min_size": 64}}.items():
    C2 = rand_image(130, 90, 4)
    c = Config(**{"iterations": 8, "report_every": 4, **kw})
    a, ha = stylize(C2, S, params, vgg.CAFFE, config=c)
    b, hb = stylize(C2, S, params, vgg.CAFFE, config=c, devices=jax.devices())
    rel = np.abs(ha["total"] - hb["total"]) / ha["total"]
    out[name] = [float(np.mean(np.abs(a - b))), float(np.max(rel))]
    out[name + "_shape"] = list(b.shape)
print(json.dumps(out))
"""


def _env(n: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
            "JAX_PLATFORMS": "cpu"}


@pytest.mark.slow
def test_rows_sharded_step_and_runs_match_one_device():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       env=_env(4), timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 4 and "rows" in out["spec"]
    assert out["rel_j"] < 1e-5 and out["rel_g"] < 1e-5, out
    assert out["pad_grad"] == 0.0  # the padding rows never move
    for name in ("adam", "lbfgs"):
        assert out[name][0] < 1e-5 and out[name][1] < 1e-5, (name, out[name])
    # coarse-to-fine: the same up to Adam's amplified rounding after a reset (see test_tiling)
    assert out["scales"][0] < 2e-3, out["scales"]
    assert out["adam_shape"] == [130, 90, 3]


def _cli(work, *extra, n_dev=4, out="o.png", cwd=None):
    argv = [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(work / "c.png"),
            str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--iters", "4",
            "--report-every", "2", "--beta", "1e-2", "--quiet", "--bit-depth", "16", *extra]
    if out:
        argv += ["-o", str(out)]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(n_dev), timeout=600,
                          cwd=cwd or work)


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "8", "--size", "96"], "--devices 8: only 4 cpu device(s) are available"),
    (["--devices", "4", "--size", "48"],
     "--devices 4: the image is 48 px high, but splitting it over 4 devices by rows needs at "
     "least 64"),
])
def test_devices_refusals(work, tmp_path, args, message):
    r = _cli(work, *args, out=tmp_path / "x.png")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "x.png").exists()


def _read16(path) -> np.ndarray:
    from test_image import _read_png16

    return _read_png16(path.read_bytes())[0].astype(np.float64) / 65535


@pytest.mark.slow
def test_stylize_cli_on_two_hosts_equals_one_process(work, tmp_path):
    """Two processes on 127.0.0.1 (gloo collectives), 2 virtual devices each, one image
    split by rows over the 4: the same image as one process on one device."""
    size = ["--size", "96"]
    two_hosts(lambda i: [
        sys.executable, str(ROOT / "scripts" / "stylize.py"), str(work / "c.png"), str(work / "s.png"),
        "--weights", str(work / "tiny.h5"), "--iters", "4", "--report-every", "2", "--beta", "1e-2",
        "--quiet", "--bit-depth", "16", *size, "--devices", "all", "-o", str(tmp_path / f"multi{i}.png")],
        _env(2), tmp_path)
    assert not (tmp_path / "multi1.png").exists()  # process 1 wrote nothing
    one = _cli(work, *size, n_dev=1, out=tmp_path / "single.png", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    meta = json.loads((tmp_path / "multi0.png.json").read_text())
    assert meta["devices"] == 4
    a, b = _read16(tmp_path / "single.png"), _read16(tmp_path / "multi0.png")
    assert a.shape == b.shape and float(np.mean(np.abs(a - b))) < 1e-4


REGIONS = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, numpy as np
from conftest import rand_image, tiny_params
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import stylize
from nst_jax.guides import Guides

params = tiny_params()
C, S1, S2 = rand_image(130, 90, 4), rand_image(64, 64, 2), rand_image(64, 64, 5)
m = np.zeros((2, 130, 90), np.float32)
m[0, :70], m[1, 70:] = 1.0, 1.0
g = Guides(regions=m, content=np.linspace(0, 1, 130 * 90).reshape(130, 90))
c = Config(iterations=8, report_every=4, beta=1e-2)
a, ha = stylize(C, [S1, S2], params, vgg.CAFFE, config=c, guides=g)
b, hb = stylize(C, [S1, S2], params, vgg.CAFFE, config=c, guides=g, devices=jax.devices())
rel = np.abs(ha["total"] - hb["total"]) / ha["total"]
print(json.dumps([float(np.mean(np.abs(a - b))), float(np.max(rel))]))
"""


@pytest.mark.slow
def test_regions_split_over_devices_match_one_device():
    r = subprocess.run([sys.executable, "-c", REGIONS], capture_output=True, text=True,
                       env=_env(4), timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    diff, rel = json.loads(r.stdout.strip().splitlines()[-1])
    assert diff < 1e-5 and rel < 1e-5, (diff, rel)
