"""A tiled image with its tiles spread over devices (Layout.over_tiles, --tile with
--devices) and hosts. Virtual CPU devices need XLA_FLAGS before JAX starts, so these
run in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_grid import two_hosts
from test_sharding import _cli, _env, _read16

SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, jax.numpy as jnp, numpy as np
from conftest import rand_image, tiny_params
from test_tiling import _guides
from nst_jax import problem, vgg
from nst_jax.config import Config
from nst_jax.engine import stylize
from nst_jax.layout import Layout, spread_tiles

params = tiny_params()
full = sys.argv[1] == "full"
out = {"n_devices": len(jax.devices())}
C, S1, S2 = rand_image(150, 200, 1), rand_image(90, 61, 2), rand_image(70, 80, 5)
X = jnp.asarray(rand_image(150, 200, 3))
lay = Layout.over_tiles()
cases = [("gram", {}, None), ("regions", {}, _guides(150, 200, (90, 61)))]
for name, kw, g in cases + ([("meancov", {"style_loss": "meancov"}, None)] if full else []):
    res = []
    # one device whole (tile 0), then 12 tiles (3 x 4) spread over the 4 devices
    for tile, obj in ((0, problem.objective), (64, spread_tiles(problem.objective, lay.devices))):
        cfg = Config(tile=tile, tv_weight=0.1, **kw).validate("vgg16")
        t = problem.compute_targets(params, vgg.CAFFE, C, [S1, S2], cfg, guides=g)
        x = X if tile == 0 else lay.share(X)
        f = jax.jit(jax.value_and_grad(lambda x, c=cfg, t=t, o=obj: o(x, params, t, c, vgg.CAFFE)[0]))
        res.append(f(x))
    (j0, g0), (j1, g1) = res
    out[name] = [abs(float(j1 - j0)) / abs(float(j0)), float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0))]
out["sharding"] = str(lay.share(X).sharding.spec)
# whole runs: Adam, L-BFGS and coarse-to-fine, tiled on one device vs spread over four
runs = {"adam": {}, "lbfgs": {"optimizer": "lbfgs", "iterations": 4},
        "scales": {"scales": 2, "min_size": 64}}
for name, kw in runs.items() if full else [("adam", {})]:
    c = Config(**{"iterations": 8, "report_every": 4, "tile": 64, **kw})
    a, ha = stylize(C, S1, params, vgg.CAFFE, config=c)
    b, hb = stylize(C, S1, params, vgg.CAFFE, config=c, devices=jax.devices())
    rel = np.abs(ha["total"] - hb["total"]) / ha["total"]
    out[name] = [float(np.mean(np.abs(a - b))), float(np.max(rel))]
print(json.dumps(out))
"""


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_tiles_over_four_devices_equal_one_device(full):
    r = subprocess.run([sys.executable, "-c", SCRIPT, "full" if full else "short"], capture_output=True,
                       text=True, env=_env(4), timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 4 and out["sharding"] in ("P()", "PartitionSpec()")
    # 4 devices with tiles against 1 device whole: another program summing in another
    # order, equal to float rounding (measured <= 5e-7).
    for name in ("gram", "regions", "adam") + (("meancov", "lbfgs") if full else ()):
        assert out[name][0] < 1e-5 and out[name][1] < 1e-5, (name, out[name])
    if full:  # coarse-to-fine: equal up to Adam's amplified rounding after a reset (see test_tiling)
        assert out["scales"][0] < 2e-3, out["scales"]


def test_tile_refusals_name_the_pair():
    from nst_jax.config import Config
    from nst_jax.engine import _check_layout
    from nst_jax.layout import Layout

    cfg = Config().validate("vgg16")
    with pytest.raises(ValueError, match=r"Layout\.over_tiles spreads the tiles of a tiled run"):
        _check_layout(Layout(0, ("d0", "d1"), tiles=True), None, [(64, 64)], "vgg16", cfg)


@pytest.mark.slow
def test_masked_tiles_cli_on_two_hosts_equals_one_process(work, tmp_path):
    """Two processes on 127.0.0.1 (gloo collectives), 2 virtual devices each, a two-region
    image in 64 px tiles spread over the 4 devices: the same image as one process on one
    device with the same tiles."""
    from test_cli_regions import _mask

    mask = _mask(tmp_path / "m.png")
    common = [str(work / "c.png"), f"{work / 's.png'}:{mask}", str(work / "s.png"),
              "--weights", str(work / "tiny.h5"), "--iters", "4", "--report-every", "2",
              "--beta", "1e-2", "--quiet", "--bit-depth", "16", "--size", "128", "--tile", "64"]
    two_hosts(lambda i: [sys.executable, str(ROOT / "scripts" / "stylize.py"), *common,
                         "--devices", "all", "-o", str(tmp_path / f"multi{i}.png")], _env(2), tmp_path)
    assert not (tmp_path / "multi1.png").exists()  # process 1 wrote nothing
    one = subprocess.run([sys.executable, str(ROOT / "scripts" / "stylize.py"), *common,
                          "-o", str(tmp_path / "single.png")], capture_output=True, text=True,
                         env=_env(1), timeout=600, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    meta = json.loads((tmp_path / "multi0.png.json").read_text())
    assert meta["settings"]["tile"] == 64 and meta["devices"] == 4
    a, b = _read16(tmp_path / "single.png"), _read16(tmp_path / "multi0.png")
    assert a.shape == b.shape and float(np.mean(np.abs(a - b))) < 1e-4


@pytest.mark.slow
def test_tile_with_devices_cli(work, tmp_path):
    r = _cli(work, "--devices", "4", "--size", "128", "--tile", "64", out=tmp_path / "x.png")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "x.png.json").read_text())
    assert meta["devices"] == 4 and meta["settings"]["tile"] == 64
