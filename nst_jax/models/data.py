"""[I/O] Training photos: a folder of the user's images, random crops and flips, prefetched.

Every sample is a pure function of ``(seed, step, j)``: sample ``j`` of step ``t``'s
global batch draws its photo, crop and flip from ``numpy.random.default_rng((seed, t, j))``.
So a resumed run sees exactly the batches the uninterrupted one would, whatever the
number of hosts (each process decodes only its slice ``j in [lo, hi)`` of the batch),
and there is no loader state to checkpoint.

Decoding runs on a thread pool ``prefetch`` steps ahead (Pillow releases the GIL while
it decodes and resizes); :attr:`Batches.wait_s` is the time the training loop spent
waiting for data, the figure to watch.

``grain`` (Google's data loader) was judged for this: it offers the same
deterministic, resumable indexing plus multi-process workers, but a folder of photos
cut into crops needs none of its sources or transformations, the measured wait
here is already ~0 (see benchmarks/README.md), and it would be one more dependency
with its own process model. A file Pillow cannot read (corrupt, zero bytes, not an
image) is skipped and counted, at the scan or when it fails to decode later.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: The suffixes a data folder contributes (case-insensitive).
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm")


class DataError(ValueError):
    """The data folder has no usable photo."""


def scan(root: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(readable, skipped)``: the images under ``root`` (recursive, sorted), split by
    whether Pillow can read their header. Raises :class:`DataError` when none is readable."""
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"data folder not found: {r}")
    found = sorted(p for p in r.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    ok, bad = [], []
    for p in found:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018 (the header parsed)
            ok.append(p)
        except (OSError, ValueError, Image.DecompressionBombError):
            bad.append(p)
    if not ok:
        why = f"{len(bad)} unreadable file(s)" if bad else f"no images ({', '.join(SUFFIXES)})"
        raise DataError(f"data folder {r}: no usable photos ({why})")
    return ok, bad


def load_crop(path: Path, crop: int, rng: np.random.Generator, resize: int | None = None) -> np.ndarray:
    """A random ``crop x crop`` square of the photo resized so its short side is
    ``resize * U(1, 1.25)`` (``resize`` default: ``crop``; at least ``crop``), flipped
    left-right with probability 1/2: float32 RGB in [0, 1]."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        short = max(crop, resize or crop) * rng.uniform(1.0, 1.25)
        if im.format == "JPEG":
            im.draft("RGB", (int(im.width * short / min(im.size)) + 1,
                             int(im.height * short / min(im.size)) + 1))
        im = im.convert("RGB")
        s = short / min(im.size)
        w, h = max(crop, round(im.width * s)), max(crop, round(im.height * s))
        im = im.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
        x0, y0 = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
        a = np.asarray(im.crop((x0, y0, x0 + crop, y0 + crop)), np.float32) / 255.0
    return a[:, ::-1] if rng.random() < 0.5 else a


class Batches:
    """Batches of ``(photos (hi - lo, crop, crop, 3), style indices (hi - lo,))`` for steps
    ``start, start + 1, ...``; this process decodes samples ``lo..hi`` of each global batch.

    Style indices are drawn uniformly from ``range(n_styles)`` (a conditional network
    learns every style from every photo)."""

    def __init__(self, paths: list[Path], *, batch: int, crop: int, seed: int, n_styles: int = 1,
                 start: int = 0, lo: int = 0, hi: int | None = None, prefetch: int = 4,
                 workers: int = 4, resize: int | None = None) -> None:
        if not paths:
            raise DataError("no photos to train on")
        self.paths, self.batch, self.crop, self.seed, self.n_styles = paths, batch, crop, seed, n_styles
        self.resize = resize
        self.lo, self.hi = lo, batch if hi is None else hi
        self.next_step = start
        self.wait_s = 0.0
        self.bad: set[Path] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="nst-data")
        self._ahead: collections.deque[Future] = collections.deque()
        self._prefetch = max(1, prefetch)

    def sample(self, step: int, j: int) -> tuple[np.ndarray, int]:
        """Sample ``j`` of step ``step``'s global batch; a photo that fails to decode is
        recorded in :attr:`bad` and the next photo (in file order) is taken instead."""
        rng = np.random.default_rng((self.seed, step, j))
        i = int(rng.integers(len(self.paths)))
        style = int(rng.integers(self.n_styles))
        for k in range(len(self.paths)):
            p = self.paths[(i + k) % len(self.paths)]
            if p in self.bad:
                continue
            try:
                rng = np.random.default_rng((self.seed, step, j, k))
                return load_crop(p, self.crop, rng, self.resize), style
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                with self._lock:
                    self.bad.add(p)
        raise DataError(f"none of the {len(self.paths)} photos can be decoded")

    def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's slice of step ``step``'s global batch (decoded now)."""
        got = [self.sample(step, j) for j in range(self.lo, self.hi)]
        return np.stack([g[0] for g in got]), np.asarray([g[1] for g in got], np.int32)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        while len(self._ahead) < self._prefetch:
            self._ahead.append(self._pool.submit(self.batch_at, self.next_step + len(self._ahead)))
        t0 = time.perf_counter()
        out = self._ahead.popleft().result()
        self.wait_s += time.perf_counter() - t0
        self.next_step += 1
        self._ahead.append(self._pool.submit(self.batch_at, self.next_step + len(self._ahead)))
        return out

    def close(self) -> None:
        for f in self._ahead:
            f.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["SUFFIXES", "Batches", "DataError", "load_crop", "scan"]
