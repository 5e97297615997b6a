"""[I/O] The nst_jax VGG weights format: load + validate, write atomically.

An HDF5 file with one group per conv layer (``conv1_1`` ... ``conv5_4``) holding
``kernel`` (HWIO) and ``bias``, and root attributes that make it self-describing
(architecture, format version, preprocessing, provenance, dtype); ``weights/README.md``
has the full description.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax import vgg
from nst_jax.files import atomic_path
from nst_jax.weights.errors import WeightsError
from nst_jax.weights.locate import fetch_command, fetch_hint

FORMAT = "nst_jax-vgg"
FORMAT_VERSION = 1

NpParams = dict[str, dict[str, np.ndarray]]


LICENSE = (
    "VGG weights by K. Simonyan and A. Zisserman (Visual Geometry Group, Oxford), "
    "CC BY 4.0, https://www.robots.ox.ac.uk/~vgg/research/very_deep/"
)


def _spec_from_attrs(attrs: Mapping[str, Any], where: str) -> vgg.Preprocessing:
    try:
        order = attrs["preprocess_channel_order"]
        order = order.decode() if isinstance(order, bytes) else str(order)
        return vgg.Preprocessing(
            channel_order=order,
            scale=float(attrs["preprocess_scale"]),
            mean=tuple(float(v) for v in attrs["preprocess_mean"]),
            std=tuple(float(v) for v in attrs["preprocess_std"]),
        )
    except KeyError as e:
        raise WeightsError(f"{where}: missing root attribute {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{where}: invalid preprocessing attributes: {e}") from None


def _str_attr(attrs: Mapping[str, Any], key: str, default: str = "") -> str:
    v = attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a weights file as plain Python values (no validation)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {
            k: (v.decode() if isinstance(v, bytes) else v.tolist() if hasattr(v, "tolist") else v)
            for k, v in f.attrs.items()
        }


def load_weights(
    path: str | os.PathLike, *, dtype: Any = np.float32
) -> tuple[dict[str, dict[str, Any]], vgg.Preprocessing]:
    """Load and validate a weights file.

    Args:
      path: an nst_jax ``.h5`` weights file (``weights/vgg16.h5``, ``weights/vgg19.h5``).
      dtype: compute dtype of the returned arrays; float16 files are upcast to float32
        unless asked otherwise.

    Returns:
      ``(params, spec)``: ``params[layer] = {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}``
      as ``jax.Array`` of ``dtype``, and the :class:`~nst_jax.vgg.Preprocessing` to apply.

    Raises:
      WeightsError: with a message naming what is wrong (missing file, not HDF5,
        truncated, unknown format version, unknown architecture, missing layer,
        wrong shape).
    """
    import h5py
    import jax.numpy as jnp

    p = Path(path)
    if not p.exists():
        raise WeightsError(f"weights file not found: {p}; {fetch_hint()}")
    if p.is_dir():
        raise WeightsError(f"weights path is a directory, expected an .h5 file: {p}")
    if not p.is_file():
        raise WeightsError(f"weights path is not a regular file: {p}")
    if not h5py.is_hdf5(p):
        raise WeightsError(f"not an HDF5 file: {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise WeightsError(f"truncated or corrupt HDF5 file: {p} ({e})") from None
    try:
        with f:
            attrs = f.attrs
            if _str_attr(attrs, "format") != FORMAT:
                raise WeightsError(
                    f"{p}: not an nst_jax weights file (root attribute format="
                    f"{_str_attr(attrs, 'format')!r}, expected {FORMAT!r}); convert it with "
                    f"{fetch_command()} --from-file"
                )
            version = int(attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise WeightsError(
                    f"{p}: unsupported format_version {version} "
                    f"(this nst_jax reads version {FORMAT_VERSION})"
                )
            arch = _str_attr(attrs, "architecture")
            if arch not in vgg.BLOCKS:
                raise WeightsError(
                    f"{p}: unknown architecture {arch!r}, expected one of {sorted(vgg.BLOCKS)}"
                )
            channels = tuple(int(c) for c in attrs.get("channels", vgg.CHANNELS))
            spec = _spec_from_attrs(attrs, str(p))
            params: dict[str, dict[str, Any]] = {}
            for name, (kshape, bshape) in vgg.conv_shapes(arch, channels).items():
                if name not in f:
                    raise WeightsError(
                        f"{p}: layer {name} missing (a {arch} file has "
                        f"{len(vgg.layer_names(arch))} conv layers)"
                    )
                leaf = {}
                for ds, shape in (("kernel", kshape), ("bias", bshape)):
                    if ds not in f[name]:
                        raise WeightsError(f"{p}: dataset {name}/{ds} missing")
                    got = tuple(f[name][ds].shape)
                    if got != shape:
                        raise WeightsError(f"{p}: {name}/{ds}: expected {shape}, got {got}")
                    arr = np.asarray(f[name][ds][()], dtype=np.float32)
                    if not np.all(np.isfinite(arr)):
                        raise WeightsError(f"{p}: {name}/{ds} holds non-finite values")
                    leaf[ds] = jnp.asarray(arr, dtype=dtype)
                params[name] = leaf
    except OSError as e:  # raised by h5py while reading a damaged file
        raise WeightsError(f"truncated or corrupt HDF5 file: {p} ({e})") from None
    return params, spec


def write_weights(
    dest: str | os.PathLike,
    params: Mapping[str, Mapping[str, np.ndarray]],
    arch: str,
    spec: vgg.Preprocessing,
    meta: Mapping[str, str],
    *,
    half: bool = False,
) -> Path:
    """Write ``params`` in the nst_jax format, atomically (temp file then rename).

    ``meta`` keys stored as root attributes: ``source``, ``source_url``, ``source_sha256``.
    ``half`` stores float16 (half the size); :func:`load_weights` upcasts to float32.
    """
    import h5py

    channels = tuple(int(params[f"conv{b}_1"]["bias"].shape[0]) for b in range(1, 6))
    shapes = vgg.conv_shapes(arch, channels)
    if set(params) != set(shapes):
        raise WeightsError(
            f"{arch}: expected layers {sorted(shapes)}, got {sorted(params)}"
        )
    dtype = np.float16 if half else np.float32
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["architecture"] = arch
        f.attrs["channels"] = np.asarray(channels, np.int64)
        f.attrs["preprocess_channel_order"] = spec.channel_order
        f.attrs["preprocess_scale"] = float(spec.scale)
        f.attrs["preprocess_mean"] = np.asarray(spec.mean, np.float64)
        f.attrs["preprocess_std"] = np.asarray(spec.std, np.float64)
        f.attrs["dtype"] = np.dtype(dtype).name
        f.attrs["license"] = LICENSE
        for k in ("source", "source_url", "source_sha256"):
            f.attrs[k] = str(meta.get(k, ""))
        for name, (kshape, bshape) in shapes.items():
            g = f.create_group(name)
            for ds, shape in (("kernel", kshape), ("bias", bshape)):
                arr = np.asarray(params[name][ds])
                if arr.shape != shape:
                    raise WeightsError(f"{name}/{ds}: expected {shape}, got {arr.shape}")
                g.create_dataset(ds, data=arr.astype(dtype))
    return Path(dest)


def file_sha256(path: str | os.PathLike) -> str:
    return _digest(path, "sha256")


def _digest(path: str | os.PathLike, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
