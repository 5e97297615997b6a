"""The transformation network (nst_jax.models.johnson), its tiled apply, model files and export."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.models import export, johnson, store, tiled
from tests.conftest import rand_image

SMALL = johnson.Arch(width=0.125, n_styles=2, n_residual=1)


def _params(arch: johnson.Arch = SMALL, seed: int = 0) -> dict:
    """Random parameters with non-trivial IN scales/shifts (fresh ones are 1 and 0)."""
    p = johnson.init_params(arch, key=jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: np.asarray(a) + rng.normal(0, 0.1, a.shape).astype(np.float32), p)


# ----------------------------------------------------------------------------- shapes


def test_parameter_count_and_shapes_of_the_paper_network():
    shapes = johnson.param_shapes(johnson.Arch())
    # Johnson et al.'s table (32-64-128 widths, five residual blocks), IN scale+shift per
    # channel: counted by hand, layer by layer.
    conv = lambda k, i, o: k * k * i * o  # noqa: E731  (no bias before IN)
    norm = lambda o: 2 * o  # noqa: E731
    expected = (conv(9, 3, 32) + norm(32) + conv(3, 32, 64) + norm(64) + conv(3, 64, 128) + norm(128)
                + 5 * (2 * conv(3, 128, 128) + norm(128) + 128)  # (no shift after the sum's IN)
                + conv(3, 128, 64) + norm(64)
                + conv(3, 64, 32) + norm(32) + conv(9, 32, 3) + 3)
    assert sum(int(np.prod(s)) for layer in shapes.values() for s in layer.values()) == expected
    assert shapes["c1"]["kernel"] == (9, 9, 3, 32) and shapes["u1"]["scale"] == (1, 64)
    half = johnson.param_shapes(johnson.Arch(width=0.5, n_styles=3))
    assert half["r1a"]["kernel"] == (3, 3, 64, 64) and half["out"]["kernel"] == (9, 9, 16, 3)
    assert half["c2"]["scale"] == (3, 32)


@pytest.mark.parametrize("hw", [(4, 4), (5, 7), (33, 50)])
def test_any_size_in_any_size_out_in_the_unit_box(hw):
    y = johnson.apply(_params(), rand_image(*hw), arch=SMALL)
    assert y.shape == (*hw, 3) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_too_small_and_bad_arch_are_refused():
    with pytest.raises(ValueError, match="expected at least 4 x 4 pixels, got 2 x 9"):
        johnson.apply(_params(), rand_image(2, 9), arch=SMALL)
    with pytest.raises(ValueError, match="width: expected a multiplier"):
        johnson.Arch(width=0.0)
    with pytest.raises(ValueError, match=r"style: expected an index in 0\.\.1, got 2"):
        johnson.style_weights(SMALL, 2)
    with pytest.raises(ValueError, match="expected 2 values, got shape"):
        johnson.style_weights(SMALL, np.ones(3))


def test_receptive_field_is_the_support_of_one_output_pixel(monkeypatch):
    # With the IN statistics held fixed, an output pixel depends on exactly the window the
    # convolutions reach; its side, over the 4 phases of the two 2x upsamplings, is at most
    # receptive_field and reaches it.
    arch = johnson.Arch(width=0.0625, n_residual=2)
    orig = johnson.norm_stats
    monkeypatch.setattr(johnson, "norm_stats", lambda h: jax.lax.stop_gradient(orig(h)))
    p, x = _params(arch), jnp.asarray(rand_image(96, 96))
    sides = []
    for i in range(44, 48):
        g = np.asarray(jax.grad(lambda x, i=i: johnson.forward(p, x, jnp.ones(1), arch)[i, i].sum())(x))
        rows = np.nonzero(np.abs(g).sum(axis=(1, 2)))[0]
        sides.append(rows.max() - rows.min() + 1)
    assert max(sides) == johnson.receptive_field(arch) == 9 + 2 + 4 + 4 * 8 + 4 + 2 + 8 + 2
    assert johnson.receptive_field(johnson.Arch()) == 111


# ----------------------------------------------------------------------------- math


def test_instance_norm_against_numpy_loops():
    h = np.random.default_rng(1).normal(2.0, 3.0, (5, 6, 4)).astype(np.float32)
    p = {"scale": np.array([[1.0, 2.0, 0.5, 1.5], [3.0, 1.0, 1.0, 0.0]], np.float32),
         "shift": np.array([[0.0, 1.0, -1.0, 0.5], [2.0, 0.0, 0.0, 1.0]], np.float32)}
    w = np.array([0.25, 0.75], np.float32)
    ref = np.empty_like(h, dtype=np.float64)
    for c in range(4):  # plain loops, float64
        vals = [float(h[i, j, c]) for i in range(5) for j in range(6)]
        mu = sum(vals) / 30
        var = sum((v - mu) ** 2 for v in vals) / 30
        g = 0.25 * p["scale"][0, c] + 0.75 * p["scale"][1, c]
        b = 0.25 * p["shift"][0, c] + 0.75 * p["shift"][1, c]
        for i in range(5):
            for j in range(6):
                ref[i, j, c] = g * (h[i, j, c] - mu) / np.sqrt(var + 1e-5) + b
    # float32 against float64 on values of size ~5: 1e-5 absolute
    np.testing.assert_allclose(johnson.inorm(p, jnp.asarray(h), jnp.asarray(w)), ref, atol=1e-5)


def test_conditional_styles_select_and_interpolate():
    p, x = _params(), rand_image(20, 24)
    one = [np.asarray(johnson.apply(p, x, johnson.style_weights(SMALL, k), arch=SMALL)) for k in (0, 1)]
    assert np.abs(one[0] - one[1]).max() > 1e-3
    # a single-style network holding style 1's scales and shifts is style 1
    single = johnson.Arch(width=0.125, n_styles=1, n_residual=1)
    p1 = {k: {n: (a[1:2] if n in ("scale", "shift") else a) for n, a in v.items()} for k, v in p.items()}
    # another program (a (1,) @ (1, C) product instead of (2,) @ (2, C)) whose extra terms are
    # exact zeros: equal up to how XLA orders the sums, within float32 rounding of [0, 1] values
    np.testing.assert_allclose(johnson.apply(p1, x, arch=single), one[1], atol=1e-6)
    mid = np.asarray(johnson.apply(p, x, jnp.array([0.5, 0.5]), arch=SMALL))
    assert np.abs(mid - one[0]).max() > 1e-4 and np.abs(mid - one[1]).max() > 1e-4


def test_strength_blends_towards_the_content():
    p, x = _params(), rand_image(12, 12)
    y = np.asarray(johnson.apply(p, x, arch=SMALL))
    np.testing.assert_allclose(johnson.apply(p, x, arch=SMALL, strength=0.0), x, atol=1e-7)
    np.testing.assert_allclose(johnson.apply(p, x, arch=SMALL, strength=0.3), 0.3 * y + 0.7 * x, atol=1e-6)


@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_jit_and_vmap_equal_eager(wrap):
    p, xs = _params(), np.stack([rand_image(16, 20, s) for s in range(3)])
    eager = np.stack([np.asarray(johnson.apply(p, x, arch=SMALL)) for x in xs])
    batched = wrap(jax.vmap(lambda x: johnson.apply(p, x, arch=SMALL)))(xs)
    # another program (batched convolutions): float rounding, outputs in [0, 1]
    np.testing.assert_allclose(batched, eager, atol=2e-6)


# ----------------------------------------------------------------------------- tiled


@pytest.mark.parametrize(("hw", "tile"), [((97, 130), 16), ((97, 130), 40), ((64, 64), 512)])
def test_tiled_apply_equals_whole_apply(hw, tile):
    p, x = _params(), rand_image(*hw, seed=3)
    w = np.array([0.3, 0.7], np.float32)
    whole = np.asarray(johnson.apply(p, x, jnp.asarray(w), arch=SMALL, strength=0.9))
    t = tiled.apply_tiled(p, x, w, arch=SMALL, tile=tile, strength=0.9)
    # the IN statistics are summed in another order (float64 on the host): ~1e-6 seen
    np.testing.assert_allclose(t, whole, atol=1e-5)
    with pytest.raises(ValueError, match="tile: expected at least 16 pixels, got 8"):
        tiled.apply_tiled(p, x, w, arch=SMALL, tile=8)


# ----------------------------------------------------------------------------- files


def test_model_round_trip_and_refusals(tmp_path):
    p = _params()
    path = store.save_model(tmp_path / "m.nstm", p, SMALL, {"style_names": ["a", "b"]})
    q, arch, meta = store.load_model(path)
    assert arch == SMALL and meta["style_names"] == ["a", "b"]
    jax.tree.map(np.testing.assert_array_equal, q, p)
    with pytest.raises(FileExistsError):
        store.save_model(path, p, SMALL, {})
    data = path.read_bytes()
    (tmp_path / "cut.nstm").write_bytes(data[: len(data) // 2])
    with pytest.raises(store.ModelError, match=r"cut.nstm: not a readable model \(truncated or damaged"):
        store.load_model(tmp_path / "cut.nstm")
    with pytest.raises(store.ModelError, match="model not found"):
        store.load_model(tmp_path / "none.nstm")
    (tmp_path / "x.nstm").write_bytes(b"\x80")
    with pytest.raises(store.ModelError, match=r"not an nst_jax model|not a readable model"):
        store.load_model(tmp_path / "x.nstm")


def test_model_of_another_architecture_or_style_count_is_refused(tmp_path):
    from flax import serialization

    p = _params()
    path = store.save_model(tmp_path / "m.nstm", p, SMALL, {})
    state = serialization.msgpack_restore(path.read_bytes())
    other = {**state, "arch": {**state["arch"], "name": "adain2017"}}
    (tmp_path / "a.nstm").write_bytes(serialization.msgpack_serialize(other))
    with pytest.raises(store.ModelError, match="architecture 'adain2017' is not supported"):
        store.load_model(tmp_path / "a.nstm")
    three = {**state, "arch": {**state["arch"], "n_styles": 3}}  # params are for 2 styles
    (tmp_path / "s.nstm").write_bytes(serialization.msgpack_serialize(three))
    with pytest.raises(store.ModelError, match=r"c1/scale: expected \(3, 4\), got \(2, 4\)"):
        store.load_model(tmp_path / "s.nstm")
    old = {**state, "format": "nst_jax-model-0"}
    (tmp_path / "v.nstm").write_bytes(serialization.msgpack_serialize(old))
    with pytest.raises(store.ModelError, match="expected format nst_jax-model-1, got 'nst_jax-model-0'"):
        store.load_model(tmp_path / "v.nstm")


def test_stablehlo_export_reloads_without_the_model_code():
    p, x = _params(), rand_image(24, 28)
    w = johnson.style_weights(SMALL, 1)
    data = export.export_stablehlo(p, SMALL, (24, 28), style_w=w, strength=0.8)
    fn = export.load_stablehlo(data)  # jax.export alone: no nst_jax function is called
    got = np.asarray(fn.call(jnp.asarray(x)))
    want = np.asarray(johnson.apply(p, x, w, arch=SMALL, strength=0.8))
    np.testing.assert_allclose(got, want, atol=1e-6)  # constants folded differently: rounding
    assert "stablehlo.convolution" in export.stablehlo_text(data)


@pytest.mark.skipif(importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime")
                    is None, reason="jax2onnx/onnxruntime absent (pip install jax2onnx onnxruntime)")
def test_onnx_export_runs_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    p, x = _params(), rand_image(24, 28)
    path = export.export_onnx(p, SMALL, (24, 28), tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0][0]
    np.testing.assert_allclose(got, johnson.apply(p, x, arch=SMALL), atol=1e-4)  # the bound
